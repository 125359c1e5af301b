/*
 * The fine-tune form (templates/jobs/finetune_new.html): picking a strategy fills in
 * that strategy's published defaults, except where the user typed a value, and shows
 * the fields that only apply to it; picking the split shows the test file or the
 * test fraction. The defaults come from the json_script element that the form's
 * data-strategy-defaults attribute names.
 */
(function () {
  "use strict";

  function setUp(form) {
    var source = document.getElementById(form.dataset.strategyDefaults);
    var defaults = source ? JSON.parse(source.textContent) : {};
    var edited = {};
    var lora = document.getElementById("lora-fields");
    var unfreeze = form.querySelector(".field-unfreeze_layers");
    var testFile = form.querySelector(".field-test_dataset_version");
    var testFraction = form.querySelector(".field-test_fraction");

    form.addEventListener("input", function (event) {
      if (event.target.name) { edited[event.target.name] = true; }
    });

    function show(strategy) {
      if (lora) { lora.hidden = strategy !== "lora"; }
      if (unfreeze) { unfreeze.hidden = strategy !== "partial"; }
    }

    function showTestFile() {
      var chosen = form.querySelector("input[name=split]:checked");
      var fromFile = !!chosen && chosen.value === "test_file";
      if (testFile) { testFile.hidden = !fromFile; }
      if (testFraction) { testFraction.hidden = fromFile; }
    }

    form.querySelectorAll("input[name=strategy]").forEach(function (radio) {
      radio.addEventListener("change", function () {
        var values = defaults[radio.value] || {};
        Object.keys(values).forEach(function (name) {
          var field = form.elements[name];
          if (!field || edited[name] || name === "strategy") { return; }
          if (field.type === "checkbox") { field.checked = !!values[name]; }
          else { field.value = values[name] === null ? "" : values[name]; }
        });
        show(radio.value);
      });
    });
    form.querySelectorAll("input[name=split]").forEach(function (radio) {
      radio.addEventListener("change", showTestFile);
    });
    showTestFile();
  }

  function init() {
    document.querySelectorAll("form[data-strategy-defaults]").forEach(setUp);
  }

  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", init); }
  else { init(); }
})();

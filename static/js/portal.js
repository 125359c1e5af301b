/*
 * Small behaviours any page may ask for through data attributes, so that no page
 * needs inline script:
 *   <select data-autosubmit>             submits its form when it changes
 *   <input data-select-on-focus>         selects its text when it gets the focus
 *   <button data-copy="ID" data-copy-status="ID2">
 *                                        copies the value (or the text) of element
 *                                        ID to the clipboard and says how it went in ID2
 *   <div data-show-when="NAME=v1,v2">    shown only while the form's field NAME has
 *                                        one of those values (radio buttons or select)
 * Listeners sit on the document, so content that htmx swaps in works too.
 */
(function () {
  "use strict";

  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field.matches && field.matches("[data-autosubmit]") && field.form) {
      field.form.submit();
    }
  });

  document.addEventListener("focusin", function (event) {
    var field = event.target;
    if (field.matches && field.matches("[data-select-on-focus]") && field.select) { field.select(); }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("[data-copy]") : null;
    if (!button) { return; }
    var field = document.getElementById(button.dataset.copy);
    var status = document.getElementById(button.dataset.copyStatus || "");
    if (!field) { return; }
    function say(text) { if (status) { status.textContent = text; } }
    var text = "value" in field ? field.value : field.textContent.trim();
    if (field.select) { field.select(); }
    else if (!field.hidden) {
      var range = document.createRange();
      range.selectNodeContents(field);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
    }
    var copied = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(text)
      : Promise.resolve(document.execCommand("copy"));
    copied.then(function () { say("Copied."); },
                function () { say("Select the text and copy it."); });
  });

  function fieldValue(form, name) {
    var checked = form.querySelector("[name='" + name + "']:checked");
    if (checked) { return checked.value; }
    var field = form.querySelector("select[name='" + name + "']");
    return field ? field.value : "";
  }

  function applyShowWhen(root) {
    var parts = root.querySelectorAll ? root.querySelectorAll("[data-show-when]") : [];
    Array.prototype.forEach.call(parts, function (part) {
      var rule = part.getAttribute("data-show-when").split("=");
      var form = part.closest("form");
      if (!form || rule.length !== 2) { return; }
      part.hidden = rule[1].split(",").indexOf(fieldValue(form, rule[0])) === -1;
    });
  }

  document.addEventListener("change", function (event) {
    if (event.target.form) { applyShowWhen(event.target.form); }
  });
  document.addEventListener("DOMContentLoaded", function () { applyShowWhen(document); });
  document.addEventListener("htmx:afterSwap", function (event) { applyShowWhen(event.target); });
})();

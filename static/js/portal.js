/*
 * Small behaviours any page may ask for through data attributes, so that no page
 * needs inline script:
 *   <select data-autosubmit>             submits its form when it changes
 *   <input data-select-on-focus>         selects its text when it gets the focus
 *   <button data-copy="ID" data-copy-status="ID2">
 *                                        copies the value of element ID to the
 *                                        clipboard and says how it went in ID2
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
    if (field.select) { field.select(); }
    var copied = navigator.clipboard && window.isSecureContext
      ? navigator.clipboard.writeText(field.value)
      : Promise.resolve(document.execCommand("copy"));
    copied.then(function () { say("Copied."); },
                function () { say("Select the text and copy it."); });
  });
})();

// Small page behaviours, loaded on every page. No inline scripts: the CSP allows only files
// from this origin (and nonced tags).
(function () {
  "use strict";

  function textOf(target) {
    if ("value" in target && typeof target.value === "string") {
      return target.value;
    }
    return target.textContent;
  }

  function copyFallback(text) {
    // navigator.clipboard needs a secure context; plain-HTTP deployments still get a copy.
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.className = "copy-buffer";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy failed"));
  }

  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () {
        return copyFallback(text);
      });
    }
    return copyFallback(text);
  }

  // <button data-copy="#selector">: copies the value (inputs) or text (anything else) of the target.
  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    var target = document.querySelector(button.dataset.copy);
    if (!target) {
      return;
    }
    var label = button.querySelector("[data-copy-label]") || button;
    var original = label.dataset.copyOriginal || label.textContent;
    label.dataset.copyOriginal = original;
    copy(textOf(target).trim()).then(
      function () {
        label.textContent = "Copied";
        button.classList.add("is-copied");
      },
      function () {
        label.textContent = "Press Ctrl+C";
        if (target.select) {
          target.select();
        }
      }
    );
    window.setTimeout(function () {
      label.textContent = original;
      button.classList.remove("is-copied");
    }, 2000);
  });

  // <input data-select-on-focus>: one click selects a secret for copying by hand.
  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) {
      event.target.select();
    }
  });
})();

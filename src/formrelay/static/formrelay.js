/* Conveniences only: every page works without this script. */
"use strict";
document.addEventListener("click", function (event) {
  var back = event.target.closest("[data-history-back]");
  if (back && history.length > 1) {
    history.back();
    event.preventDefault();
  }
});
document.addEventListener("submit", function (event) {
  var button = event.submitter || event.target.querySelector("[data-confirm]");
  var question = button && button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
/* Copy buttons (data-clipboard-target="#id") through the vendored clipboard.js; without
   script the text stays selectable. */
document.addEventListener("DOMContentLoaded", function () {
  if (!window.ClipboardJS || !document.querySelector("[data-clipboard-target]")) {
    return;
  }
  var clipboard = new window.ClipboardJS("[data-clipboard-target]");
  clipboard.on("success", function (event) {
    var button = event.trigger;
    var label = button.textContent;
    button.textContent = "Copied";
    setTimeout(function () { button.textContent = label; }, 1500);
    event.clearSelection();
  });
});
document.addEventListener("change", function (event) {
  /* A "select all" checkbox (data-select-all="name") ticks every checkbox of that name. */
  var all = event.target.closest("[data-select-all]");
  if (!all) {
    return;
  }
  var name = all.getAttribute("data-select-all");
  document.querySelectorAll('input[type=checkbox][name="' + name + '"]').forEach(function (box) {
    box.checked = all.checked;
  });
});

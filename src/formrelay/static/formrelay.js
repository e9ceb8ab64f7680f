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

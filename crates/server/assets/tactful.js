// Tactful's pages work without this file (every action is a plain form); it only keeps a form from
// being sent twice by an impatient double click.
"use strict";
document.addEventListener("submit", function (event) {
  var form = event.target;
  if (form.dataset.sent === "1") {
    event.preventDefault();
    return;
  }
  form.dataset.sent = "1";
});
// Coming back with the browser's Back button must leave the forms usable.
window.addEventListener("pageshow", function () {
  document.querySelectorAll("form[data-sent]").forEach(function (form) {
    delete form.dataset.sent;
  });
});

// graphgate console: the little the pages need beyond HTML (everything
// works without it; it only saves reloading by hand).
"use strict";
// The end of "Sign in with Microsoft" arrives as /?code=…&state=…: the
// code is redeemed already, but it has no business in the history.
if (/[?&]code=/.test(location.search) && /[?&]state=/.test(location.search)) {
  history.replaceState(null, "", location.pathname);
}
document.addEventListener("DOMContentLoaded", function () {
  // Device-code countdown: mm:ss, ticking.
  document.querySelectorAll(".countdown[data-seconds]").forEach(function (el) {
    var left = parseInt(el.getAttribute("data-seconds"), 10) || 0;
    setInterval(function () {
      left = Math.max(0, left - 1);
      var s = left % 60;
      el.textContent = Math.floor(left / 60) + ":" + (s < 10 ? "0" : "") + s;
    }, 1000);
  });
  // "Sign in with Microsoft" opens a new tab: reload this page now and
  // then until the account's state changes.
  document.querySelectorAll("form[data-reload]").forEach(function (form) {
    form.addEventListener("submit", function () {
      var every = (parseInt(form.getAttribute("data-reload"), 10) || 3) * 1000;
      setTimeout(function () { setInterval(function () { location.reload(); }, every); }, every);
    });
  });
});

"use strict";
(function () {
  const next = new URLSearchParams(location.search).get("next");
  if (next && /^\/(?!\/)[A-Za-z0-9_\/-]*$/.test(next)) document.getElementById("next").value = next;
})();
(function () {
  const err = new URLSearchParams(location.search).get("error");
  if (!err) return;
  const p = document.getElementById("error");
  p.textContent = err === "locked"
    ? "Too many failed attempts: wait 5 minutes, then try again."
    : err === "busy"
    ? "Too many failed logins on this gateway: wait 5 minutes, or log in from a browser you used before."
    : "Wrong user name or password.";
  p.hidden = false;
})();

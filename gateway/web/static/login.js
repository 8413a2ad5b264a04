"use strict";
(function () {
  const err = new URLSearchParams(location.search).get("error");
  if (!err) return;
  const p = document.getElementById("error");
  p.textContent = err === "locked"
    ? "Too many failed attempts: wait 5 minutes, then try again."
    : "Wrong user name or password.";
  p.hidden = false;
})();

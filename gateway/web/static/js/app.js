// perimon nurse view: device list, CTG strip, TcB nomogram, alerts. Plain JS modules, no CDN.
// Data: /api/* (what the gateway published, api.js) and /api/events (server-sent events,
// live.js). This module wires the page's controls to the rest.

import { getMe } from "./api.js";
import { renderDevices } from "./devices.js";
import { $, el } from "./dom.js";
import { connect } from "./live.js";
import { saveSettings } from "./settings.js";
import { state } from "./state.js";
import { loadWindow, queueRedraw, refresh, renderDetail, select, visibleSeconds } from "./view.js";

function fillWhen() {
  const s = $("when");
  s.replaceChildren(el("option", { value: "live", text: "live" }));
  for (let h = 1; h <= 24; h++) s.append(el("option", { value: String(h), text: `${h} h ago` }));
}

async function main() {
  fillWhen();
  state.me = await getMe();
  $("user").textContent = state.me.user;
  $("gateway-id").textContent = `gateway ${state.me.gateway_id}`;
  $("normal-band").textContent = `${state.me.fhr_normal_bpm.join("–")} bpm`;
  $("speed").addEventListener("change", (e) => { state.speed = Number(e.target.value); loadWindow().then(renderDetail); });
  $("when").addEventListener("change", async (e) => {
    state.live = e.target.value === "live";
    state.until = state.live ? null : Date.now() / 1000 - Number(e.target.value) * 3600 + visibleSeconds() / 2;
    await loadWindow(); renderDetail();
  });
  $("settings").addEventListener("submit", (ev) => saveSettings(ev, () => { renderDevices(); renderDetail(); }));
  // the lists are redrawn often: one listener each, on the list
  const device = (e) => e.target.closest("li.dev");
  $("device-list").addEventListener("click", (e) => { const li = device(e); if (li) select(li.dataset.device); });
  $("device-list").addEventListener("keydown", (e) => { const li = device(e); if (li && e.key === "Enter") select(li.dataset.device); });
  $("alert-list").addEventListener("click", (e) => {
    const li = e.target.closest("li.alert"), a = li && state.alerts.get(li.dataset.alert);
    if (a && e.target.tagName !== "BUTTON") select(a.device_id);
  });
  window.addEventListener("resize", queueRedraw);
  setInterval(() => { if (state.live) queueRedraw(); renderDevices(); }, 5000); // ages, staleness, scrolling
  await refresh();
  connect({ onOpen: refresh, redraw: queueRedraw });
}

main();

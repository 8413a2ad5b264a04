// perimon nurse view: device list, CTG strip, TcB nomogram, alerts. Plain JS modules, no CDN.
// Data: /api/* (what the gateway published, api.js) and /api/events (server-sent events,
// live.js). This module wires the page's controls to the rest.

import { getMe } from "./api.js";
import { renderAlerts, wireAlertBanner } from "./alerts.js";
import { renderDevices } from "./devices.js";
import { $, el } from "./dom.js";
import { refreshGatewayWarnings, renderGatewayBanner } from "./gatewaybanner.js";
import { initialLang, lang, onLanguage, setLang, tr } from "./i18n.js";
import { connect, relabelLive } from "./live.js";
import { saveSettings } from "./settings.js";
import { state } from "./state.js";
import { loadWindow, queueRedraw, refresh, refreshRecordings, renderDetail, select, visibleSeconds } from "./view.js";

const REFRESH_MS = 5000; // ages, staleness, schedules and sessions, the live strip's scrolling

function fillWhen() {
  const s = $("when"), chosen = s.value || "live";
  s.replaceChildren(el("option", { value: "live", text: tr("when_live") }));
  for (let h = 1; h <= 24; h++) s.append(el("option", { value: String(h), text: tr("when_ago", h) }));
  s.value = chosen;
}

// Everything the page wrote is written again in the new language.
function relabel() {
  $("lang-toggle").lang = lang() === "zh" ? "en" : "zh-CN"; // the language the button names
  fillWhen();
  relabelLive();
  if (state.me) $("gateway-id").textContent = tr("gateway", state.me.gateway_id);
  renderDevices(); renderAlerts(); renderDetail(); renderGatewayBanner();
}

async function main() {
  wireAlertBanner();
  onLanguage(relabel);
  setLang(initialLang(), false); // the page's words, and the banner's "no alerts waiting"
  $("lang-toggle").addEventListener("click", () => setLang(lang() === "zh" ? "en" : "zh"));
  state.me = await getMe();
  $("user").textContent = state.me.user;
  $("gateway-id").textContent = tr("gateway", state.me.gateway_id);
  $("normal-band").textContent = `${state.me.fhr_normal_bpm.join("–")} bpm`;
  refreshGatewayWarnings(); // the link to the hospital: the gateway banner (gatewaybanner.js)
  $("no-help-phone").hidden = !!(state.me.help_phone || "").trim(); // the mother's page has no number to call
  $("speed").addEventListener("change", (e) => { state.speed = Number(e.target.value); loadWindow().then(renderDetail); });
  // the strip moves when the window it asks for has come (view.js loadWindow), never before
  $("when").addEventListener("change", async (e) => {
    const live = e.target.value === "live";
    const until = live ? null : Date.now() / 1000 - Number(e.target.value) * 3600 + visibleSeconds() / 2;
    if (await loadWindow({ live, until }).catch(() => false)) renderDetail();
  });
  $("settings").addEventListener("submit", (ev) => saveSettings(ev, () => { renderDevices(); renderDetail(); }));
  // the lists are redrawn often: one listener each, on the list
  const device = (e) => e.target.closest("li.dev");
  $("device-list").addEventListener("click", (e) => { const li = device(e); if (li) select(li.dataset.device); });
  $("device-list").addEventListener("keydown", (e) => {
    const li = device(e);
    if (li && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); select(li.dataset.device); }
  });
  $("alert-list").addEventListener("click", (e) => {
    const li = e.target.closest("li.alert"), a = li && state.alerts.get(li.dataset.alert);
    if (a && (e.target.tagName !== "BUTTON" || e.target.classList.contains("open"))) select(a.device_id);
  });
  window.addEventListener("resize", queueRedraw);
  setInterval(async () => {
    if (state.live) queueRedraw();
    try { await refreshRecordings(); } catch { /* not reachable now: the live state says so */ }
    renderDevices(); renderAlerts();
    refreshGatewayWarnings();
  }, REFRESH_MS);
  await refresh();
  connect({ onOpen: refresh, redraw: queueRedraw });
}

main();

// Which device is shown and what of its trace: selecting a device, loading its window (live:
// the last 45 minutes; history: what the strip shows), drawing its detail.

import { getAlerts, getDevices, getRejected, getWindow } from "./api.js";
import { renderAlerts } from "./alerts.js";
import { renderDevices } from "./devices.js";
import { $ } from "./dom.js";
import { loadSessions, renderFetal } from "./fetal.js";
import { renderJaundice } from "./jaundice.js";
import { fillSettings } from "./settings.js";
import { LIVE_KEEP_S, state } from "./state.js";
import { rejectedPoints, stripSeconds } from "./strip.js";

export async function select(id) {
  state.selected = id;
  state.live = true;
  $("when").value = "live";
  renderDevices();
  await loadWindow();
  renderDetail();
  loadSessions(id);
}

export function visibleSeconds() {
  return stripSeconds($("strip"), state.speed);
}

export async function loadWindow() {
  const id = state.selected;
  if (!id) return;
  const until = state.live ? Date.now() / 1000 : state.until;
  const span = state.live ? LIVE_KEEP_S : visibleSeconds();
  const w = await getWindow(id, until - span, until);
  if (id !== state.selected) return;
  state.trace = { fhr: w.fhr, mhr: w.mhr, ctg: w.ctg, tcb: w.tcb, rejected: rejectedPoints(w.fhr_rejected) };
}

// The live strip's rejected points again (each minute, with the CTG findings): a rejection
// needs the trace after a point, so the newest points are judged only then.
export async function loadRejected() {
  const id = state.selected;
  if (!id || !state.live) return;
  const now = Date.now() / 1000;
  const r = await getRejected(id, now - LIVE_KEEP_S, now);
  if (id === state.selected && state.live) state.trace.rejected = rejectedPoints(r.fhr_rejected);
}

export function renderDetail() {
  const d = state.devices.get(state.selected);
  $("pick").hidden = !!d;
  $("fetal").hidden = !d || d.device_type !== "fetal_heart";
  $("jaundice").hidden = !d || d.device_type !== "jaundice";
  $("settings").hidden = !d;
  if (!d) return;
  fillSettings(d);
  if (d.device_type === "fetal_heart") renderFetal(d); else if (d.device_type === "jaundice") renderJaundice(d);
}

let redrawQueued = false;
// Redraws the detail at the next frame, once however many updates arrive before it.
export function queueRedraw() {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => { redrawQueued = false; renderDetail(); });
}

// Everything from the gateway again (at start and after the live connection comes back).
export async function refresh() {
  const [devices, alerts] = await Promise.all([getDevices(), getAlerts()]);
  state.devices = new Map(devices.map((d) => [d.device_id, d]));
  state.alerts = new Map(alerts.map((a) => [a.id, a]));
  if (!state.selected && devices.length) state.selected = devices[0].device_id;
  renderDevices(); renderAlerts();
  if (state.selected) { await loadWindow(); renderDetail(); }
}

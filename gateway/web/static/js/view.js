// Which device is shown and what of its trace: selecting a device, loading its window (live:
// the last 45 minutes; history: what the strip shows), drawing its detail, and a text summary
// of each chart for those who cannot see it.

import { getAlerts, getDevices, getRejected, getWindow } from "./api.js";
import { renderAlerts } from "./alerts.js";
import { deviceName, renderDevices, sortedDevices } from "./devices.js";
import { $ } from "./dom.js";
import { bili } from "./format.js";
import { loadSessions, renderFetal } from "./fetal.js";
import { addStrings, clock, tr } from "./i18n.js";
import { renderJaundice } from "./jaundice.js";
import { fillSettings } from "./settings.js";
import { LIVE_KEEP_S, state } from "./state.js";
import { rejectedPoints, stripSeconds } from "./strip.js";

addStrings({
  en: {
    strip_summary: (who, from, to, n, last, lo, hi) => `CTG strip of ${who}, ${from} to ${to}: ` +
      (n ? `${n} fetal heart rate points, ${lo}–${hi} bpm, last ${last} bpm` : "no fetal heart rate"),
    strip_mhr: (n) => `; maternal rate ${n} bpm`,
    nomogram_summary: (who, n, last, zone) => `TcB nomogram of ${who}: ` +
      (n ? `${n} reading${n > 1 ? "s" : ""}, last ${last}` + (zone ? `, ${zone} risk zone` : "") : "no reading"),
  },
  zh: {
    strip_summary: (who, from, to, n, last, lo, hi) => `${who} 的胎心监护曲线，${from} 至 ${to}：` +
      (n ? `${n} 个胎心率点，${lo}–${hi} 次/分，最近 ${last} 次/分` : "没有胎心率"),
    strip_mhr: (n) => `；母体心率 ${n} 次/分`,
    nomogram_summary: (who, n, last, zone) => `${who} 的经皮胆红素列线图：` +
      (n ? `${n} 个读数，最近 ${last}` + (zone ? `，${zone} 风险区` : "") : "没有读数"),
  },
});

export async function select(id) {
  state.selected = id;
  state.live = true;
  $("when").value = "live";
  renderDevices();
  await loadWindow();
  renderDetail();
  loadSessions(id);
  showMotherQr(state.devices.get(id));
}

// The mother's link as a QR code beside it (mother.py serves it; hidden if it cannot be had).
function showMotherQr(d) {
  const img = $("mother-qr");
  if (!d || d.device_type !== "fetal_heart") { img.hidden = true; img.removeAttribute("src"); return; }
  img.alt = tr("mother_qr");
  img.onload = () => { img.hidden = false; };
  img.onerror = () => { img.hidden = true; };
  img.src = `/api/devices/${encodeURIComponent(d.device_id)}/mother-link.svg`;
}

export function visibleSeconds() {
  return stripSeconds($("strip"), state.speed);
}

// Which window request is the newest: only its answer is kept. A request still under way when
// a newer one is made is abandoned (its AbortController), and an answer that arrives anyway
// is dropped by its number: a slow answer for where the strip was never replaces the one for
// where it is now.
// `arrived`: the live messages of the selected device that came while the window was fetched
const windowRequest = { n: 0, abort: null, arrived: [] };

// A live message (kind, payload) the page took while a window may be on its way: the window's
// answer, read before it, would otherwise drop it from the strip until the next load.
export function noteArrived(kind, data) {
  if (windowRequest.abort) windowRequest.arrived.push([kind, data]); // a window is on its way
}

// The trace of the window `to` ({live, until}: the page's as it stands unless given) for the
// selected device. When its answer is the newest, the window becomes the page's (state.live,
// state.until, state.trace at once, so the strip never draws one window with another's
// trace) and this resolves true; an answer overtaken by a newer request resolves false.
export async function loadWindow(to = { live: state.live, until: state.until }) {
  const id = state.selected;
  if (!id) return false;
  const n = ++windowRequest.n;
  if (windowRequest.abort) windowRequest.abort.abort();
  const abort = windowRequest.abort = new AbortController();
  windowRequest.arrived = [];
  const until = to.live ? Date.now() / 1000 : to.until;
  const span = to.live ? LIVE_KEEP_S : visibleSeconds();
  let w;
  try {
    w = await getWindow(id, until - span, until, abort.signal);
  } catch (e) {
    if (n !== windowRequest.n) return false; // abandoned for a newer one
    windowRequest.abort = null;
    throw e;
  }
  if (n !== windowRequest.n || id !== state.selected) return false;
  windowRequest.abort = null;
  state.live = to.live; state.until = to.live ? null : to.until;
  const trace = { fhr: w.fhr, mhr: w.mhr, ctg: w.ctg, tcb: w.tcb, movement: w.movement || [], rejected: rejectedPoints(w.fhr_rejected) };
  if (to.live) { // what came live while this was fetched, unless the answer has it already
    const key = (m) => m.msg_id ?? `${m.t_start ?? m.t}`;
    for (const [kind, m] of windowRequest.arrived) {
      const q = trace[kind];
      if (q && !q.some((x) => key(x) === key(m))) q.push(m);
    }
  }
  windowRequest.arrived = [];
  state.trace = trace;
  return true;
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
  describeCharts(d);
  $("mother-qr").alt = tr("mother_qr");
}

// Each chart's text alternative (its aria-label): the one its drawing module leaves in the
// canvas's data-summary if it does, else a summary of what the page holds.
function describeCharts(d) {
  const strip = $("strip"), nomo = $("nomogram");
  if (d.device_type === "fetal_heart") strip.setAttribute("aria-label", strip.dataset.summary || stripSummary(d));
  if (d.device_type === "jaundice") nomo.setAttribute("aria-label", nomo.dataset.summary || nomogramSummary(d));
}

function rates(msgs, key) {
  const out = [];
  for (const m of msgs) for (const v of m[key] || []) if (v != null) out.push(v);
  return out;
}

function stripSummary(d) {
  const fhr = rates(state.trace.fhr, "fhr_bpm"), mhr = rates(state.trace.mhr, "mhr_bpm");
  const end = state.live ? Date.now() / 1000 : state.until, start = end - visibleSeconds();
  const lo = fhr.length ? Math.round(Math.min(...fhr)) : 0, hi = fhr.length ? Math.round(Math.max(...fhr)) : 0;
  return tr("strip_summary", deviceName(d), clock(start), clock(end), fhr.length,
    fhr.length ? Math.round(fhr[fhr.length - 1]) : 0, lo, hi) + (mhr.length ? tr("strip_mhr", Math.round(mhr[mhr.length - 1])) : "");
}

function nomogramSummary(d) {
  const readings = state.trace.tcb.filter((r) => r.tcb_mg_dl != null);
  const last = readings[readings.length - 1];
  const zone = last && last.assessment ? String(last.assessment.bhutani_zone).replace(/_/g, "-") : "";
  return tr("nomogram_summary", deviceName(d), readings.length, last ? bili(last.tcb_mg_dl) : "", zone);
}

let redrawQueued = false;
// Redraws the detail at the next frame, once however many updates arrive before it.
export function queueRedraw() {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => { redrawQueued = false; renderDetail(); });
}

// Everything from the gateway again (at start and after the live connection comes back). The
// first device of the list is shown when none is chosen, loaded as a choice would load it.
export async function refresh() {
  const [devices, alerts] = await Promise.all([getDevices(), getAlerts()]);
  state.devices = new Map(devices.map((d) => [d.device_id, d]));
  state.alerts = new Map(alerts.map((a) => [a.id, a]));
  renderDevices(); renderAlerts();
  if (!state.selected && devices.length) return select(sortedDevices()[0].device_id);
  if (state.selected) { await loadWindow(); renderDetail(); }
}

// What the live stream does not carry (each fetal monitor's schedule and session progress),
// fetched with the page's periodic redraw and merged into the devices the page holds.
export async function refreshRecordings() {
  const devices = await getDevices();
  for (const d of devices) {
    const cur = state.devices.get(d.device_id);
    if (cur) cur.recording = d.recording; else state.devices.set(d.device_id, d);
  }
}

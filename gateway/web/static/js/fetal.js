// A fetal monitor's detail: current FHR and maternal rate, the CTG findings (headed by the
// Dawes-Redman criteria or the FIGO class, as the device's CTG mode says), the CTG strip and
// the recording sessions.

import { getSessions } from "./api.js";
import { deviceName } from "./devices.js";
import { $, el } from "./dom.js";
import { ago, hhmm, hhmmss, t } from "./format.js";
import { state } from "./state.js";
import { drawStrip } from "./strip.js";

const NOW_MAX_AGE_S = 10; // a "current" value older than this is not shown as current
// Dawes-Redman status (dsp/dawes_redman.py) -> [headline, the colour class it is shown in]
const DAWES_REDMAN = {
  met: ["criteria met", "normal"], not_met: ["criteria not met", "suspicious"],
  not_yet_met: ["criteria not yet met", "indeterminate"], too_short: ["too short to assess", "indeterminate"],
  signal_loss: ["not assessable: signal loss", "indeterminate"],
};

// The last non-null rate in trace messages (key "fhr_bpm" or "mhr_bpm"): {bpm, t} or null.
export function lastValid(msgs, key) {
  for (let i = msgs.length - 1; i >= 0; i--) {
    const m = msgs[i], vals = m[key];
    for (let j = vals.length - 1; j >= 0; j--) {
      if (vals[j] != null) return { bpm: vals[j], t: t(m.t_start) + j * m.interval_s };
    }
  }
  return null;
}

function showNow(valueEl, noteEl, last, d) {
  const now = Date.now() / 1000;
  if (d.link !== "connected" && state.live) {
    valueEl.textContent = "—"; valueEl.className = "now-value nodata";
    noteEl.textContent = "device disconnected";
  } else if (last && now - last.t <= NOW_MAX_AGE_S) {
    valueEl.replaceChildren(String(Math.round(last.bpm)), el("small", { text: " bpm" }));
    valueEl.className = "now-value";
    noteEl.textContent = hhmmss(last.t);
  } else {
    valueEl.textContent = "no signal"; valueEl.className = "now-value nodata";
    noteEl.textContent = last ? `last ${Math.round(last.bpm)} bpm, ${ago(last.t)}` : "no trustworthy rate yet";
  }
}

export function renderFetal(d) {
  $("fetal-title").textContent = deviceName(d);
  $("fetal-sub").textContent = `Fetal monitor ${d.device_id} · ${d.link}` +
    (d.battery_pct != null ? ` · battery ${d.battery_pct}%` : "") +
    (d.signal_quality != null ? ` · signal ${Math.round(d.signal_quality * 100)}%` : "");
  if (state.live) {
    showNow($("fhr-now"), $("fhr-note"), lastValid(state.trace.fhr, "fhr_bpm"), d);
    showNow($("mhr-now"), $("mhr-note"), lastValid(state.trace.mhr, "mhr_bpm"), d);
  } else {
    for (const k of ["fhr", "mhr"]) { $(`${k}-now`).textContent = "—"; $(`${k}-now`).className = "now-value nodata"; $(`${k}-note`).textContent = "history"; }
  }
  const ctg = state.trace.ctg[state.trace.ctg.length - 1];
  const cls = $("figo-class"), reasons = $("figo-reasons");
  reasons.replaceChildren();
  const li = (text) => reasons.append(el("li", { text }));
  if (ctg && ctg.ctg_mode === "antenatal" && ctg.dawes_redman) {
    // antenatal: the Dawes-Redman criteria head, FIGO follows for reference (docs/fhr.md)
    const dr = ctg.dawes_redman, [text, kind] = DAWES_REDMAN[dr.status] || [dr.status, "indeterminate"];
    $("ctg-label").textContent = "CTG (Dawes-Redman, antenatal)";
    cls.textContent = dr.status === "met" ? `${text} at ${dr.time_to_met_min} min`
      : dr.status === "signal_loss" ? `${text} ${dr.signal_loss_pct}%` : text;
    cls.className = `figo-class ${kind}`;
    const stv = dr.stv_ms == null ? "STV —" : `STV ${dr.stv_ms} ms`;
    li(`${stv}, ${dr.accelerations} accelerations, ${dr.analysed_min} min ` +
      (ctg.dawes_redman_session_id ? "of the session" : "of the last trace") + ` to ${hhmm(t(ctg.t))}`);
    for (const r of dr.reasons_not_met || []) li(r);
    li(`FIGO 2015 (intrapartum, for reference): ${ctg.figo_class}`);
  } else if (ctg) {
    $("ctg-label").textContent = "CTG (FIGO 2015)";
    cls.textContent = ctg.figo_class; cls.className = `figo-class ${ctg.figo_class}`;
    const base = ctg.baseline_bpm == null ? "baseline —" : `baseline ${Math.round(ctg.baseline_bpm)} bpm`;
    const vari = ctg.variability_bpm == null ? "" : `, variability ${ctg.variability_bpm} bpm`;
    li(`${base}${vari} (${Math.round(ctg.window_s / 60)} min to ${hhmm(t(ctg.t))})`);
    for (const r of ctg.reasons || []) li(r);
  } else {
    $("ctg-label").textContent = "CTG";
    cls.textContent = "not yet"; cls.className = "figo-class indeterminate";
    li("needs at least 1 minute of trace; updated every minute");
  }
  drawStrip($("strip"), state.trace, state);
}

// Recording sessions with their report (PDF) and the mother's page link (docs/home.md).
export async function loadSessions(id) {
  const d = state.devices.get(id);
  if (!d || d.device_type !== "fetal_heart") return;
  const s = await getSessions(id);
  if (id !== state.selected) return;
  const link = new URL(s.mother_link, location.href).href;
  $("mother-link").textContent = link;
  $("mother-link").href = link;
  $("session-list").replaceChildren(...s.sessions.map((x) => el("li", { class: `session ${x.status}`, "data-session": x.session_id },
    `${x.start ? new Date(x.start).toLocaleString() : "due " + new Date(x.due).toLocaleString()} · ${x.status} · ` +
    `${x.recorded_min} min, ${x.good_signal_min} min with a fetal rate · ${x.delivered ? "delivered" : "not yet delivered"} `,
    x.report_url ? el("a", { class: "report", href: x.report_url, target: "_blank", text: "report (PDF)" }) : null)));
}

// A fetal monitor's detail: current FHR and maternal rate, the CTG findings (headed by the
// Dawes-Redman criteria or the FIGO class, as the device's CTG mode says), the CTG strip with
// its event marks and the controls that move it through the last 24 hours (drag, scroll bar,
// earlier/later, jump to a session), and the recording sessions.

import { getSessions } from "./api.js";
import { deviceName } from "./devices.js";
import { $, el } from "./dom.js";
import { ago, hhmm, hhmmss, t } from "./format.js";
import { HISTORY_S, PX_PER_CM, SCALES_BPM_PER_CM, clock24 } from "./ctgpaper.js";
import { addStrings, locale, tr } from "./i18n.js";
import { state } from "./state.js";
import { drawStrip } from "./strip.js";
import { loadWindow, renderDetail, visibleSeconds } from "./view.js";

// What the strip shows besides the trace: its scale, and the selected monitor's sessions (for
// the marks and "jump to session").
const strip = { scale: SCALES_BPM_PER_CM[0], sessionsOf: null, sessions: [], recording: null, drag: null, load: null };
const LOAD_DELAY_MS = 150; // a window is fetched once the strip stops moving this long

addStrings({
  en: {
    strip_scale: "Scale", strip_earlier: "◀ earlier", strip_earlier_label: "show earlier trace",
    strip_later: "later ▶", strip_later_label: "show later trace", strip_now: "now",
    strip_now_label: "back to the live trace", strip_scroll_label: "position in the last 24 hours",
    strip_jump: "Jump to session", strip_choose: "choose…", strip_none: "none in 24 h",
    strip_on: "on the strip", mark_start: "session start", mark_stop: "session stop",
    mark_signal_loss: "signal loss", mark_bradycardia: "bradycardia", mark_tachycardia: "tachycardia",
    mark_ctg_pathological: "CTG pathological", mark_maternal_coincidence: "maternal pulse",
  },
  zh: {
    strip_scale: "纵轴刻度", strip_earlier: "◀ 更早", strip_earlier_label: "显示更早的曲线",
    strip_later: "更晚 ▶", strip_later_label: "显示更晚的曲线", strip_now: "现在",
    strip_now_label: "回到实时曲线", strip_scroll_label: "在过去 24 小时中的位置",
    strip_jump: "跳到监护记录", strip_choose: "请选择…", strip_none: "24 小时内没有",
    strip_on: "在曲线上查看", mark_start: "监护开始", mark_stop: "监护结束",
    mark_signal_loss: "信号丢失", mark_bradycardia: "胎儿心动过缓", mark_tachycardia: "胎儿心动过速",
    mark_ctg_pathological: "CTG 病理性", mark_maternal_coincidence: "母体脉搏",
  },
});

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
  stripNav();
  drawStrip($("strip"), state.trace, state, { scale: strip.scale, marks: stripMarks(d.device_id) });
  showPosition();
}

// ---- the strip's marks and its way through the last 24 hours ----

// Event marks of a monitor: its sessions' starts and stops and the alerts it raised.
export function stripMarks(id) {
  const out = [];
  if (strip.sessionsOf === id) {
    for (const s of strip.sessions) {
      if (s.start) out.push({ t: t(s.start), kind: "start", label: `${tr("mark_start")} ${clock24(t(s.start))}` });
      if (s.end) out.push({ t: t(s.end), kind: "stop", label: `${tr("mark_stop")} ${clock24(t(s.end))}` });
    }
    const r = strip.recording;
    if (r && r.start && !strip.sessions.some((s) => s.start === r.start)) {
      out.push({ t: t(r.start), kind: "start", label: `${tr("mark_start")} ${clock24(t(r.start))}` });
    }
  }
  for (const a of state.alerts.values()) {
    if (a.device_id === id && a.raised_at) {
      const key = `mark_${a.alert}`, name = tr(key);
      out.push({ t: t(a.raised_at), kind: "alert", label: name === key ? a.alert.replace(/_/g, " ") : name });
    }
  }
  return out.sort((a, b) => a.t - b.t);
}

// The strip ending at `until` (seconds), or live from now; within what the gateway keeps.
function showUntil(until) {
  const now = Date.now() / 1000, vis = visibleSeconds();
  if (until >= now - 1) {
    state.live = true; state.until = null; $("when").value = "live";
  } else {
    state.live = false;
    state.until = Math.max(now - HISTORY_S + vis, until);
    const hours = Math.round((now - state.until + vis / 2) / 3600);
    $("when").value = String(Math.min(24, Math.max(1, hours)));
  }
  renderDetail(); // at once, with the trace at hand; the window follows
  clearTimeout(strip.load);
  strip.load = setTimeout(() => loadWindow().then(renderDetail, () => {}), LOAD_DELAY_MS);
}

const stripEnd = () => (state.live ? Date.now() / 1000 : state.until);

// The controls under the strip, made once: scale, earlier/later, a scroll bar over the last
// 24 hours, now, jump to a session; and dragging the strip itself.
function stripNav() {
  if ($("strip-nav")) return;
  const c = $("strip");
  // texts carry their i18n keys: the page's language switch relabels them (i18n.js applyStatic)
  const button = (id, key) => el("button", { type: "button", id, class: "secondary", text: tr(key),
    "data-i18n": key, "aria-label": tr(`${key}_label`), "data-i18n-label": `${key}_label` });
  const text = (key) => el("span", { text: tr(key), "data-i18n": key });
  const scale = el("select", { id: "strip-scale" },
    ...SCALES_BPM_PER_CM.map((v) => el("option", { value: String(v), text: `${v} bpm/cm` })));
  const nav = el("div", { class: "strip-tools strip-nav", id: "strip-nav" },
    el("label", {}, text("strip_scale"), " ", scale),
    button("strip-earlier", "strip_earlier"),
    el("input", { type: "range", id: "strip-scroll", step: "60", "aria-label": tr("strip_scroll_label"),
      "data-i18n-label": "strip_scroll_label" }),
    button("strip-later", "strip_later"),
    button("strip-now", "strip_now"),
    el("label", {}, text("strip_jump"), " ", el("select", { id: "strip-session" })),
    el("span", { id: "strip-span", class: "small muted" }));
  c.parentElement.after(nav);
  scale.addEventListener("change", () => { strip.scale = Number(scale.value); renderDetail(); });
  const page = () => visibleSeconds() * 0.8;
  $("strip-earlier").addEventListener("click", () => showUntil(stripEnd() - page()));
  $("strip-later").addEventListener("click", () => showUntil(stripEnd() + page()));
  $("strip-now").addEventListener("click", () => showUntil(Infinity));
  $("strip-scroll").addEventListener("input", (e) => showUntil(Date.now() / 1000 + Number(e.target.value)));
  $("strip-session").addEventListener("change", (e) => {
    const start = Number(e.target.value);
    if (start) showUntil(start - 60 / state.speed + visibleSeconds()); // its start 1 cm from the left
  });
  // drag: the paper follows the finger or the mouse
  c.style.touchAction = "pan-y";
  c.style.cursor = "grab";
  c.addEventListener("pointerdown", (e) => {
    strip.drag = { x: e.clientX, end: stripEnd() };
    c.setPointerCapture(e.pointerId);
  });
  c.addEventListener("pointermove", (e) => {
    if (!strip.drag) return;
    const dx = e.clientX - strip.drag.x;
    if (Math.abs(dx) >= 2) showUntil(strip.drag.end - dx / (PX_PER_CM * state.speed / 60));
  });
  const drop = () => { strip.drag = null; };
  c.addEventListener("pointerup", drop);
  c.addEventListener("pointercancel", drop);
}

// The scroll bar, the period shown and the sessions to jump to, as the strip now stands.
function showPosition() {
  const now = Date.now() / 1000, vis = visibleSeconds(), end = stripEnd();
  const bar = $("strip-scroll");
  bar.min = String(-Math.round(HISTORY_S - vis)); bar.max = "0";
  if (document.activeElement !== bar) bar.value = String(Math.round(end - now));
  $("strip-span").textContent = `${clock24(end - vis)}–${clock24(end)}` + (state.live ? ` (${tr("when_live")})` : "");
  const sel = $("strip-session");
  const starts = stripMarks(state.selected).filter((m) => m.kind === "start" && m.t >= now - HISTORY_S);
  const key = `${locale()}:${starts.map((m) => m.t).join(",")}`;
  if (sel.dataset.key !== key) {
    sel.dataset.key = key;
    const day = (sec) => new Date(sec * 1000).toLocaleDateString(locale(), { weekday: "short" });
    sel.replaceChildren(el("option", { value: "", text: tr(starts.length ? "strip_choose" : "strip_none") }),
      ...starts.reverse().map((m) => el("option", { value: String(m.t), text: `${day(m.t)} ${clock24(m.t)}` })));
  }
  sel.value = "";
}

// Recording sessions with their report (PDF) and the mother's page link (docs/home.md).
export async function loadSessions(id) {
  const d = state.devices.get(id);
  if (!d || d.device_type !== "fetal_heart") return;
  const s = await getSessions(id);
  if (id !== state.selected) return;
  Object.assign(strip, { sessionsOf: id, sessions: s.sessions, recording: s.recording });
  const link = new URL(s.mother_link, location.href).href;
  $("mother-link").textContent = link;
  $("mother-link").href = link;
  $("session-list").replaceChildren(...s.sessions.map((x) => el("li", { class: `session ${x.status}`, "data-session": x.session_id },
    `${x.start ? new Date(x.start).toLocaleString() : "due " + new Date(x.due).toLocaleString()} · ${x.status} · ` +
    `${x.recorded_min} min, ${x.good_signal_min} min with a fetal rate · ${x.delivered ? "delivered" : "not yet delivered"} `,
    x.report_url ? el("a", { class: "report", href: x.report_url, target: "_blank", text: "report (PDF)" }) : null,
    x.start && t(x.start) >= Date.now() / 1000 - HISTORY_S ? showButton(t(x.start)) : null)));
  renderDetail(); // the strip's marks and sessions to jump to
}

// "on the strip": the session's start 1 cm from the strip's left edge.
function showButton(start) {
  const b = el("button", { type: "button", class: "secondary show-session", text: tr("strip_on") });
  b.addEventListener("click", () => showUntil(start - 60 / state.speed + visibleSeconds()));
  return b;
}

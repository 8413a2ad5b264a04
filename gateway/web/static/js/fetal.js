// A fetal monitor's detail: current FHR and maternal rate, the CTG findings (headed by the
// Dawes-Redman criteria or the FIGO class, as the device's CTG mode says), the CTG strip with
// its event marks and the controls that move it through the last 24 hours (drag, scroll bar,
// earlier/later, jump to a session), and the recording sessions.

import { getSessions } from "./api.js";
import { deviceName } from "./devices.js";
import { $, el } from "./dom.js";
import { hhmm, hhmmss, t } from "./format.js";
import { HISTORY_S, PX_PER_CM, SCALES_BPM_PER_CM, clock24 } from "./ctgpaper.js";
import { addStrings, ago, lang, locale, onLanguage, tr } from "./i18n.js";
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
    mark_maternal_unmonitored: "mother's pulse not monitored",
    device_disconnected: "device disconnected", no_signal: "no signal", history: "history",
    last_rate: (bpm, when) => `last ${bpm} bpm, ${when}`, no_rate_yet: "no trustworthy rate yet",
    link_connected: "connected", link_disconnected: "disconnected",
    ctg_dr: "CTG (Dawes-Redman, antenatal)", ctg_figo: "CTG (FIGO 2015)", ctg: "CTG", ctg_not_yet: "not yet",
    ctg_needs: "needs at least 1 minute of trace; updated every minute",
    dr_met: "criteria met", dr_not_met: "criteria not met", dr_not_yet_met: "criteria not yet met",
    dr_too_short: "too short to assess", dr_signal_loss: "not assessable: signal loss",
    dr_met_at: (text, min) => `${text} at ${min} min`,
    dr_line: (stv, acc, min, of, at) => `${stv}, ${acc} accelerations, ${min} min ${of ? "of the session" : "of the last trace"} to ${at}`,
    stv_none: "STV —", stv: (ms) => `STV ${ms} ms`,
    figo_reference: (c) => `FIGO 2015 (intrapartum, for reference): ${c}`,
    figo_normal: "normal", figo_suspicious: "suspicious", figo_pathological: "pathological", figo_indeterminate: "indeterminate",
    baseline_none: "baseline —", baseline: (b) => `baseline ${b} bpm`, variability: (v) => `variability ${v} bpm`,
    ctg_window: (what, min, at) => `${what} (${min} min to ${at})`,
    session_due: (at) => `due ${at}`,
    session_complete: "complete", session_short: "short", session_missed: "missed", session_recording: "recording",
    session_minutes: (rec, hr) => `${rec} min, ${hr} min with a heart rate`,
    delivered: "delivered", not_delivered: "not yet delivered", report_pdf: "report (PDF)",
    fetal_summary: (who, now, ctg, moves) => `CTG strip of ${who}: ${now}${ctg ? `; ${ctg}` : ""}; ${moves}`,
    fetal_summary_moves: (n) => (n ? `${n} fetal movement${n === 1 ? "" : "s"} marked by the mother` : "no fetal movement marked"),
    mark_movement: "fetal movement", movement_key: "↑ fetal movement (mother's mark)",
    fetal_summary_now: (bpm, at) => `latest FHR ${bpm} bpm at ${at}`,
    fetal_summary_none: "no fetal heart rate in this period",
    fetal_summary_ctg: (cls, base, vari) => `CTG ${cls}, ${base}${vari ? `, ${vari}` : ""}`,
  },
  zh: {
    strip_scale: "纵轴刻度", strip_earlier: "◀ 更早", strip_earlier_label: "显示更早的曲线",
    strip_later: "更晚 ▶", strip_later_label: "显示更晚的曲线", strip_now: "现在",
    strip_now_label: "回到实时曲线", strip_scroll_label: "在过去 24 小时中的位置",
    strip_jump: "跳到监护记录", strip_choose: "请选择…", strip_none: "24 小时内没有",
    strip_on: "在曲线上查看", mark_start: "监护开始", mark_stop: "监护结束",
    mark_signal_loss: "信号丢失", mark_bradycardia: "胎儿心动过缓", mark_tachycardia: "胎儿心动过速",
    mark_ctg_pathological: "CTG 病理性", mark_maternal_coincidence: "母体脉搏",
    mark_maternal_unmonitored: "未监测母亲脉搏",
    device_disconnected: "设备未连接", no_signal: "无信号", history: "历史记录",
    last_rate: (bpm, when) => `最近 ${bpm} bpm，${when}`, no_rate_yet: "还没有可信的心率",
    link_connected: "已连接", link_disconnected: "未连接",
    ctg_dr: "CTG（Dawes-Redman，产前）", ctg_figo: "CTG（FIGO 2015）", ctg: "CTG", ctg_not_yet: "暂无结果",
    ctg_needs: "至少需要 1 分钟曲线；每分钟更新",
    dr_met: "符合标准", dr_not_met: "不符合标准", dr_not_yet_met: "尚未符合标准",
    dr_too_short: "记录太短，无法评估", dr_signal_loss: "无法评估：信号丢失",
    dr_met_at: (text, min) => `${text}（第 ${min} 分钟）`,
    dr_line: (stv, acc, min, of, at) => `${stv}，${acc} 次加速，${of ? "本次监护" : "最近曲线"}共 ${min} 分钟，至 ${at}`,
    stv_none: "短变异 —", stv: (ms) => `短变异 ${ms} ms`,
    figo_reference: (c) => `FIGO 2015（产时标准，仅供参考）：${c}`,
    figo_normal: "正常", figo_suspicious: "可疑", figo_pathological: "病理性", figo_indeterminate: "无法判断",
    baseline_none: "基线 —", baseline: (b) => `基线 ${b} bpm`, variability: (v) => `变异 ${v} bpm`,
    ctg_window: (what, min, at) => `${what}（${min} 分钟，至 ${at}）`,
    session_due: (at) => `应于 ${at}`,
    session_complete: "已完成", session_short: "时间不足", session_missed: "已错过", session_recording: "正在记录",
    session_minutes: (rec, hr) => `${rec} 分钟，其中 ${hr} 分钟有胎心率`,
    delivered: "已送达医院", not_delivered: "尚未送达医院", report_pdf: "报告（PDF）",
    fetal_summary: (who, now, ctg, moves) => `${who} 的胎心监护曲线：${now}${ctg ? `；${ctg}` : ""}；${moves}`,
    fetal_summary_moves: (n) => (n ? `孕妇标记胎动 ${n} 次` : "没有标记胎动"),
    mark_movement: "胎动", movement_key: "↑ 胎动（孕妇标记）",
    fetal_summary_now: (bpm, at) => `最近胎心率 ${bpm} bpm（${at}）`,
    fetal_summary_none: "这段时间没有胎心率",
    fetal_summary_ctg: (cls, base, vari) => `CTG ${cls}，${base}${vari ? `，${vari}` : ""}`,
  },
});

const NOW_MAX_AGE_S = 10; // a "current" value older than this is not shown as current
// Dawes-Redman status (dsp/dawes_redman.py) -> the colour class its headline (dr_<status>) is shown in
const DAWES_REDMAN = { met: "normal", not_met: "suspicious", not_yet_met: "indeterminate", too_short: "indeterminate",
  signal_loss: "indeterminate" };
// The CTG analyses' reasons (dsp/ctg.py, dsp/dawes_redman.py) in Chinese, by the patterns they
// are written in; one not listed here stays in the gateway's words.
const REASONS_ZH = [
  [/^baseline (\d+) bpm < (\d+)$/, (b, lim) => `基线 ${b} bpm < ${lim}`],
  [/^baseline (\d+) bpm outside (\d+)-(\d+)$/, (b, lo, hi) => `基线 ${b} bpm，不在 ${lo}–${hi} 之内`],
  [/^reduced variability \(<5 bpm\) for (\d+) min$/, (m) => `变异减小（<5 bpm）持续 ${m} 分钟`],
  [/^increased variability \(>25 bpm\) for (\d+) min$/, (m) => `变异增大（>25 bpm）持续 ${m} 分钟`],
  [/^variability ([\d.]+) bpm outside (\d+)-(\d+)$/, (v, lo, hi) => `变异 ${v} bpm，不在 ${lo}–${hi} 之内`],
  [/^sinusoidal pattern for more than 30 min$/, () => "正弦波形超过 30 分钟"],
  [/^prolonged deceleration of ([\d.]+) min at (\d+) s$/, (m, at) => `延长减速 ${m} 分钟（第 ${at} 秒起）`],
  [/^repetitive late or prolonged decelerations for (\d+) min$/, (m) => `反复晚期或延长减速持续 ${m} 分钟`],
  [/^repetitive decelerations$/, () => "反复减速"],
  [/^note: signal loss (\d+)%$/, (p) => `注：信号丢失 ${p}%`],
  [/^signal loss (\d+)% > (\d+)%$/, (p, lim) => `信号丢失 ${p}% > ${lim}%`],
  [/^no episode of high variation$/, () => "没有高变异期"],
  [/^deceleration of (\d+) lost beats \(> (\d+)\)$/, (n, lim) => `减速丢失 ${n} 次心搏（> ${lim}）`],
  [/^basal heart rate (\d+) bpm outside (\d+)-(\d+)$/, (b, lo, hi) => `基础心率 ${b} bpm，不在 ${lo}–${hi} 之内`],
  [/^no fetal movement and fewer than (\d+) accelerations$/, (n) => `无胎动且加速少于 ${n} 次`],
  [/^sinusoidal rhythm$/, () => "正弦心律"],
  [/^short-term variation cannot be measured$/, () => "无法测量短变异"],
  [/^short-term variation ([\d.]+) ms < ([\d.]+) ms$/, (v, lim) => `短变异 ${v} ms < ${lim} ms`],
  [/^no acceleration$/, () => "没有加速"],
  [/^signal loss at the end of the record$/, () => "记录末尾信号丢失"],
  [/^deceleration at the end of the record$/, () => "记录末尾有减速"],
];
const reasonText = (x) => {
  if (lang() === "en") return x;
  for (const [re, zh] of REASONS_ZH) { const m = String(x).match(re); if (m) return zh(...m.slice(1)); }
  return x;
};

// A FIGO class (normal, suspicious, pathological) in the page's language.
const figoText = (c) => (tr(`figo_${c}`) === `figo_${c}` ? c : tr(`figo_${c}`));
const drText = (status) => (DAWES_REDMAN[status] ? tr(`dr_${status}`) : String(status).replace(/_/g, " "));

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
    noteEl.textContent = tr("device_disconnected");
  } else if (last && now - last.t <= NOW_MAX_AGE_S) {
    valueEl.replaceChildren(String(Math.round(last.bpm)), el("small", { text: " bpm" }));
    valueEl.className = "now-value";
    noteEl.textContent = hhmmss(last.t);
  } else {
    valueEl.textContent = tr("no_signal"); valueEl.className = "now-value nodata";
    noteEl.textContent = last ? tr("last_rate", Math.round(last.bpm), ago(last.t)) : tr("no_rate_yet");
  }
}

// The CTG box: headed by the Dawes-Redman criteria (antenatal) or the FIGO class.
function renderCtg(ctg) {
  const cls = $("figo-class"), reasons = $("figo-reasons");
  reasons.replaceChildren();
  const li = (text) => reasons.append(el("li", { text }));
  if (ctg && ctg.ctg_mode === "antenatal" && ctg.dawes_redman) {
    // antenatal: the Dawes-Redman criteria head, FIGO follows for reference (docs/fhr.md)
    const dr = ctg.dawes_redman, text = drText(dr.status), kind = DAWES_REDMAN[dr.status] || "indeterminate";
    $("ctg-label").textContent = tr("ctg_dr");
    cls.textContent = dr.status === "met" ? tr("dr_met_at", text, dr.time_to_met_min)
      : dr.status === "signal_loss" ? `${text} ${dr.signal_loss_pct}%` : text;
    cls.className = `figo-class ${kind}`;
    const stv = dr.stv_ms == null ? tr("stv_none") : tr("stv", dr.stv_ms);
    li(tr("dr_line", stv, dr.accelerations, dr.analysed_min, !!ctg.dawes_redman_session_id, hhmm(t(ctg.t))));
    for (const r of dr.reasons_not_met || []) li(reasonText(r)); // dsp/dawes_redman.py
    li(tr("figo_reference", figoText(ctg.figo_class)));
  } else if (ctg) {
    $("ctg-label").textContent = tr("ctg_figo");
    cls.textContent = figoText(ctg.figo_class); cls.className = `figo-class ${ctg.figo_class}`;
    li(tr("ctg_window", ctgFigures(ctg).join(", "), Math.round(ctg.window_s / 60), hhmm(t(ctg.t))));
    for (const r of ctg.reasons || []) li(reasonText(r)); // dsp/ctg.py
  } else {
    $("ctg-label").textContent = tr("ctg");
    cls.textContent = tr("ctg_not_yet"); cls.className = "figo-class indeterminate";
    li(tr("ctg_needs"));
  }
}

// "baseline 140 bpm", "variability 8 bpm" (the second only when measured).
function ctgFigures(ctg) {
  const base = ctg.baseline_bpm == null ? tr("baseline_none") : tr("baseline", Math.round(ctg.baseline_bpm));
  return ctg.variability_bpm == null ? [base] : [base, tr("variability", ctg.variability_bpm)];
}

// The strip's text alternative (view.js makes it its aria-label): the latest FHR in view, the
// latest CTG findings (class, baseline, variability) and how many fetal movements the mother
// marked in the period shown, in the page's language.
function stripSummary(d, moves) {
  const last = lastValid(state.trace.fhr, "fhr_bpm");
  const ctg = state.trace.ctg[state.trace.ctg.length - 1];
  const now = last ? tr("fetal_summary_now", Math.round(last.bpm), clock24(last.t)) : tr("fetal_summary_none");
  let findings = "";
  if (ctg) {
    const dr = ctg.ctg_mode === "antenatal" && ctg.dawes_redman;
    const [base, vari] = ctgFigures(ctg);
    findings = tr("fetal_summary_ctg", dr ? `Dawes-Redman: ${drText(dr.status)}` : `FIGO 2015: ${figoText(ctg.figo_class)}`, base, vari);
  }
  return tr("fetal_summary", deviceName(d), now, findings, tr("fetal_summary_moves", moves));
}

export function renderFetal(d) {
  $("fetal-title").textContent = deviceName(d);
  $("fetal-sub").textContent = `${tr("fetal_monitor")} ${d.device_id} · ${tr(d.link === "connected" ? "link_connected" : "link_disconnected")}` +
    (d.battery_pct != null ? ` · ${tr("battery", d.battery_pct)}` : "") +
    (d.signal_quality != null ? ` · ${tr("signal", Math.round(d.signal_quality * 100))}` : "");
  if (state.live) {
    showNow($("fhr-now"), $("fhr-note"), lastValid(state.trace.fhr, "fhr_bpm"), d);
    showNow($("mhr-now"), $("mhr-note"), lastValid(state.trace.mhr, "mhr_bpm"), d);
  } else {
    for (const k of ["fhr", "mhr"]) { $(`${k}-now`).textContent = "—"; $(`${k}-now`).className = "now-value nodata"; $(`${k}-note`).textContent = tr("history"); }
  }
  renderCtg(state.trace.ctg[state.trace.ctg.length - 1]);
  stripNav();
  const c = $("strip");
  drawStrip(c, state.trace, state, { scale: strip.scale, marks: stripMarks(d.device_id) });
  const shown = JSON.parse(c.dataset.marks || "[]").filter((m) => m.kind === "movement").length;
  c.dataset.summary = stripSummary(d, shown);
  showPosition();
}

// ---- the strip's marks and its way through the last 24 hours ----

// Event marks of a monitor: its sessions' starts and stops, the alerts it raised and, on the
// selected one's strip, the fetal movements the mother marked on its button.
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
  if (id === state.selected) {
    for (const m of state.trace.movement || []) out.push({ t: t(m.t), kind: "movement", label: tr("mark_movement") });
  }
  return out.sort((a, b) => a.t - b.t);
}

// The window ending at `until` (seconds), or live from now; within what the gateway keeps.
function windowAt(until) {
  const now = Date.now() / 1000;
  if (until >= now - 1) return { live: true, until: null };
  return { live: false, until: Math.max(now - HISTORY_S + visibleSeconds(), until) };
}

// The "showing" choice as the strip stands: live, or about how many hours ago.
function showWhen() {
  if (state.live) { $("when").value = "live"; return; }
  const hours = Math.round((Date.now() / 1000 - state.until + visibleSeconds() / 2) / 3600);
  $("when").value = String(Math.min(24, Math.max(1, hours)));
}

const drawLoaded = (kept) => { if (kept) { showWhen(); renderDetail(); } };

// Moves the strip with the pointer or the scroll bar: the paper follows at once with the trace
// at hand, the window is fetched once the strip stops moving.
function moveTo(until) {
  const to = windowAt(until);
  state.live = to.live; state.until = to.until;
  showWhen();
  renderDetail();
  clearTimeout(strip.load);
  strip.load = setTimeout(() => loadWindow().then(drawLoaded, () => {}), LOAD_DELAY_MS);
}

// Jumps the strip (to a session, now, a page earlier or later): it stays where it is until
// the window it jumps to has arrived, then shows that window whole (never part of it drawn
// from the trace of where it was).
function jumpTo(until) {
  clearTimeout(strip.load);
  loadWindow(windowAt(until)).then(drawLoaded, () => {});
}

const stripEnd = () => (state.live ? Date.now() / 1000 : state.until);

// The controls under the strip, made once: scale, earlier/later, a scroll bar over the last
// 24 hours, now, jump to a session; and dragging the strip itself.
function stripNav() {
  if ($("strip-nav")) return;
  const c = $("strip");
  // the legend's key to the mother's movement marks (strip.js draws them in this colour)
  document.querySelector(".legend").append(el("span", { class: "movement-key", style: "color: #8a4b00",
    text: tr("movement_key"), "data-i18n": "movement_key" }));
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
  $("strip-earlier").addEventListener("click", () => jumpTo(stripEnd() - page()));
  $("strip-later").addEventListener("click", () => jumpTo(stripEnd() + page()));
  $("strip-now").addEventListener("click", () => jumpTo(Infinity));
  $("strip-scroll").addEventListener("input", (e) => moveTo(Date.now() / 1000 + Number(e.target.value)));
  $("strip-session").addEventListener("change", (e) => {
    const start = Number(e.target.value);
    if (start) jumpTo(start - 60 / state.speed + visibleSeconds()); // its start 1 cm from the left
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
    if (Math.abs(dx) >= 2) moveTo(strip.drag.end - dx / (PX_PER_CM * state.speed / 60));
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
  // the link on an address her phone reaches (the QR code's), else on the nurse's
  const link = s.mother_link_url || new URL(s.mother_link, location.href).href;
  $("mother-link").textContent = link;
  $("mother-link").href = link;
  $("mother-link").hidden = false; // an empty link until now: hidden, not an unnamed link
  renderSessionList();
  renderDetail(); // the strip's marks and sessions to jump to
}

// The sessions of the selected monitor with their report, in the page's language (drawn again
// when it changes).
function renderSessionList() {
  const stamp = (iso) => new Date(iso).toLocaleString(locale(), { hour12: false });
  const status = (x) => (tr(`session_${x.status}`) === `session_${x.status}` ? x.status : tr(`session_${x.status}`));
  $("session-list").replaceChildren(...strip.sessions.map((x) => el("li", { class: `session ${x.status}`, "data-session": x.session_id },
    `${x.start ? stamp(x.start) : tr("session_due", stamp(x.due))} · ${status(x)} · ` +
    `${tr("session_minutes", x.recorded_min ?? 0, x.heart_rate_min ?? 0)} · ${tr(x.delivered ? "delivered" : "not_delivered")} `,
    x.report_url ? el("a", { class: "report", href: x.report_url, target: "_blank", text: tr("report_pdf") }) : null,
    x.start && t(x.start) >= Date.now() / 1000 - HISTORY_S ? showButton(t(x.start)) : null)));
}
onLanguage(() => { if (strip.sessionsOf === state.selected) renderSessionList(); });

// "on the strip": the session's start 1 cm from the strip's left edge.
function showButton(start) {
  const b = el("button", { type: "button", class: "secondary show-session", text: tr("strip_on"), "data-i18n": "strip_on" });
  b.addEventListener("click", () => jumpTo(start - 60 / state.speed + visibleSeconds()));
  return b;
}

// The device list: each device's label, link, last reading, battery, signal, open alerts and,
// for a fetal monitor, its prescribed schedule (due, done, missed) and the session being
// recorded; for a jaundice meter, when the hospital's measurement interval asks for the next
// reading.

import { $, el } from "./dom.js";
import { bili, t } from "./format.js";
import { addStrings, ago, clock, lang, tr } from "./i18n.js";
import { state } from "./state.js";

addStrings({
  en: {
    no_bed: (id) => `${id} (no bed assigned)`,
    flag_needs_calibration: "meter needs calibration: no readings",
    flag_self_check_needed: "restart the meter in its holder (start-up check)",
    flag_check_phantom: "weekly check on the check phantom",
    not_a_reading: (flag) => `not a reading: ${flag}`,
    check_failed: "weekly check failed", check_due: "weekly check due",
    no_fhr: "no FHR yet", no_tcb: "no TcB yet", no_reading: "no reading yet",
    connected: "connected", disconnected: "disconnected",
    fetal_monitor: "Fetal monitor", jaundice_meter: "Jaundice meter", device: "Device",
    battery: (p) => (p == null ? "battery ?" : `battery ${p}%`), signal: (p) => `signal ${p}%`,
    off_skin: "off skin",
    n_alerts: (n) => `${n} alert${n > 1 ? "s" : ""}`,
    risk: (c) => `risk ${tr(`colour_${c}`)}`,
    colour_green: "green", colour_yellow: "yellow", colour_orange: "orange", colour_red: "red", colour_purple: "purple",
    last_seen: (when, why) => `last seen ${when}${why ? ` (${why})` : ""}`,
    per_day: (n, m) => `${n}× a day` + (m ? `, ${m} min` : ""), per_week: (n, m) => `${n}× a week` + (m ? `, ${m} min` : ""),
    not_a_reading_bare: "not a reading",
    tflag_no_contact: "no skin contact", tflag_ambient_light: "too much light", tflag_saturated: "signal saturated",
    tflag_flashes_disagree: "probe moved", tflag_needs_calibration: "meter needs calibration",
    tflag_self_check_needed: "restart the meter in its holder", tflag_check_phantom: "weekly check on the check phantom",
    no_schedule: "no schedule set",
    st_recording: "recording", st_due: "due", st_done: "done", st_missed: "missed", st_scheduled: "scheduled",
    due_at: (at) => `due ${at}`, done_at: (at) => `done ${at}`, missed_at: (at) => `missed ${at}`,
    next_at: (at) => `next ${at}`, missed_week: (n) => `${n} missed this week`,
    progress: (a, b) => (b ? `${a} of ${b} minutes with a heart rate` : `${a} minutes with a heart rate`),
    recorded: (n) => `${n} min recorded`,
    session_progress: "session progress",
    tcb_next: (at) => `next TcB ${at}`, tcb_overdue: (at) => `TcB overdue since ${at}`,
  },
  zh: {
    no_bed: (id) => `${id}（未分配床位）`,
    flag_needs_calibration: "测量仪需要校准：无读数",
    flag_self_check_needed: "请把测量仪放回支架重新启动（开机自检）",
    flag_check_phantom: "请用校验块做每周检查",
    not_a_reading: (flag) => `不是有效读数：${flag}`,
    check_failed: "每周检查未通过", check_due: "该做每周检查了",
    no_fhr: "还没有胎心率", no_tcb: "还没有经皮胆红素读数", no_reading: "还没有读数",
    connected: "已连接", disconnected: "未连接",
    fetal_monitor: "胎心监护仪", jaundice_meter: "黄疸测量仪", device: "设备",
    battery: (p) => (p == null ? "电量 ?" : `电量 ${p}%`), signal: (p) => `信号 ${p}%`,
    off_skin: "未贴在皮肤上",
    n_alerts: (n) => `${n} 条警报`,
    risk: (c) => `风险 ${tr(`colour_${c}`)}`,
    colour_green: "绿色", colour_yellow: "黄色", colour_orange: "橙色", colour_red: "红色", colour_purple: "紫色",
    last_seen: (when, why) => `最后在线 ${when}${why ? `（${why}）` : ""}`,
    per_day: (n, m) => `每天 ${n} 次` + (m ? `，每次 ${m} 分钟` : ""), per_week: (n, m) => `每周 ${n} 次` + (m ? `，每次 ${m} 分钟` : ""),
    not_a_reading_bare: "不是有效读数",
    tflag_no_contact: "探头未接触皮肤", tflag_ambient_light: "环境光太强", tflag_saturated: "信号饱和",
    tflag_flashes_disagree: "探头移动", tflag_needs_calibration: "测量仪需要校准",
    tflag_self_check_needed: "请把测量仪放回支架重新启动", tflag_check_phantom: "请用校验块做每周检查",
    no_schedule: "未设置监护计划",
    st_recording: "正在记录", st_due: "该做了", st_done: "已完成", st_missed: "已错过", st_scheduled: "已安排",
    due_at: (at) => `${at} 该做`, done_at: (at) => `${at} 已完成`, missed_at: (at) => `${at} 的已错过`,
    next_at: (at) => `下一次 ${at}`, missed_week: (n) => `本周错过 ${n} 次`,
    progress: (a, b) => (b ? `有胎心率 ${a} / ${b} 分钟` : `有胎心率 ${a} 分钟`),
    recorded: (n) => `已记录 ${n} 分钟`,
    session_progress: "本次监护进度",
    tcb_next: (at) => `下一次测量 ${at}`, tcb_overdue: (at) => `自 ${at} 起该测量了`,
  },
});

export function deviceName(d) {
  return (d.settings && d.settings.label) || tr("no_bed", d.device_id);
}

const kindName = (d) => tr(d.device_type === "fetal_heart" ? "fetal_monitor" : d.device_type === "jaundice" ? "jaundice_meter" : "device");

// Why a press of the jaundice meter gave no reading (its flag, or several joined by commas), in
// the page's language; a flag not listed here is shown as the gateway names it.
const READING_FLAGS = ["no_contact", "ambient_light", "saturated", "flashes_disagree", "needs_calibration",
  "self_check_needed", "check_phantom"];
export const readingFlagText = (flag) => String(flag || "").split(",").filter(Boolean)
  .map((f) => (READING_FLAGS.includes(f) ? tr(`tflag_${f}`) : f.replace(/_/g, " "))).join(", ") || "?";

// Flags that say the meter itself must not be used (docs/jaundice.md, "Self-check").
const flagText = (flag) => (["needs_calibration", "self_check_needed", "check_phantom"].includes(flag)
  ? tr(`flag_${flag}`) : flag ? tr("not_a_reading", readingFlagText(flag)) : tr("not_a_reading_bare"));

// Fields of a card are whatever the gateway knows so far: a part it lacks is left out, never
// written as "null", "undefined" or "NaN".
const known = (v) => typeof v === "number" && Number.isFinite(v);
const STATUSES = ["recording", "due", "done", "missed", "scheduled"];

// The jaundice meter's weekly check on its check phantom, from the device status.
function checkBadge(d) {
  const st = d.status;
  if (d.device_type !== "jaundice" || !st) return null;
  if (st.tcb_check && st.tcb_check.passed === false) return el("span", { class: "badge danger", text: tr("check_failed") });
  return st.tcb_check_due ? el("span", { class: "badge low", text: tr("check_due") }) : null;
}

// How long ago a reading was taken, when its time is known.
const when = (iso) => (known(t(iso)) ? el("span", { class: "stale", text: ago(t(iso)) }) : null);

function lastReading(d) {
  if (d.device_type === "fetal_heart") {
    const f = d.last_fhr;
    if (!f || !known(f.bpm)) return el("span", { class: "stale", text: tr("no_fhr") });
    return el("span", {}, `${tr("fhr")} ${Math.round(f.bpm)} bpm `, when(f.t));
  }
  const r = d.last_tcb;
  if (d.device_type !== "jaundice" && !r) return el("span", { class: "stale", text: tr("no_reading") }); // kind not known yet
  if (!r) return el("span", { class: "stale", text: tr("no_tcb") });
  if (!known(r.tcb_mg_dl)) return el("span", { class: "stale", text: flagText(r.flag) });
  return el("span", {}, `TcB ${bili(r.tcb_mg_dl)} `, when(r.t));
}

// A fetal monitor's prescription: the schedule, where its latest slot stands, the session
// being recorded with a progress bar (from /api/devices: `recording`).
function schedule(d) {
  const r = d.recording;
  if (d.device_type !== "fetal_heart" || !r) return null;
  const s = r.schedule, n = s && (s.sessions_per_day || s.sessions_per_week);
  const plan = n ? tr(s.sessions_per_day ? "per_day" : "per_week", n, known(s.duration_min) ? s.duration_min : null) : tr("no_schedule");
  const at = (iso) => clock(t(iso));
  const status = !STATUSES.includes(r.status) ? null
    : r.status === "done" && r.done_at ? tr("done_at", at(r.done_at))
    : r.status === "due" && r.slot_due ? tr("due_at", at(r.slot_due))
    : r.status === "missed" && r.slot_due ? tr("missed_at", at(r.slot_due)) : tr(`st_${r.status}`);
  const box = el("div", { class: "schedule" },
    el("div", { class: "row" }, el("span", { text: plan }),
      status ? el("span", { class: `badge st-${r.status}`, "data-status": r.status, text: status }) : null),
    el("div", { class: "meta" },
      r.next_due && r.status !== "recording" ? el("span", { text: tr("next_at", at(r.next_due)) }) : null,
      known(r.missed_7d) && r.missed_7d > 0 ? el("span", { class: "missed", text: tr("missed_week", r.missed_7d) }) : null));
  const p = r.progress;
  if (p) {
    // what completes a session is minutes with a heart rate (docs/home.md, "Sessions"): the
    // bar counts those, the minutes recorded (signal or not) follow in small
    const of = known(p.prescribed_min) && p.prescribed_min > 0 ? Math.ceil(p.prescribed_min - 1e-9) : null;
    const got = Math.max(0, Number(p.heart_rate_min) || 0);
    box.append(el("div", { class: "progress" },
      el("progress", { max: String(of || Math.max(got, 1)), value: String(Math.min(got, of || got)), "aria-label": tr("session_progress") }),
      el("span", { text: tr("progress", got, of) + (known(p.recorded_min) ? ` · ${tr("recorded", p.recorded_min)}` : "") })));
  }
  return box;
}

// A jaundice meter under the hospital's measurement interval: when the next reading is due.
function nextTcb(d) {
  const every = d.settings && d.settings.measurement_interval_min;
  if (d.device_type !== "jaundice" || !known(every) || every <= 0 || !d.last_tcb || !known(t(d.last_tcb.t))) return null;
  const due = t(d.last_tcb.t) + every * 60;
  const late = due < Date.now() / 1000;
  return el("div", { class: `meta${late ? " overdue" : ""}`, text: tr(late ? "tcb_overdue" : "tcb_next", clock(due)) });
}

function fillCard(li, d) {
  const colour = d.settings && d.settings.risk_colour;
  const open = [...state.alerts.values()].filter((a) => a.device_id === d.device_id && a.state === "raised").length;
  li.className = `dev${colour ? " risk-" + colour : ""}`;
  li.setAttribute("aria-current", String(d.device_id === state.selected));
  li.replaceChildren(...[
    el("div", { class: "row" }, el("span", { class: "label", text: deviceName(d) }),
      el("span", { class: `badge ${d.link === "connected" ? "connected" : "disconnected"}`, text: tr(d.link === "connected" ? "connected" : "disconnected") })),
    el("div", { class: "id", text: `${kindName(d)} · ${d.device_id}` }),
    el("div", { class: "reading" }, lastReading(d)),
    el("div", { class: "meta" },
      el("span", { class: d.battery_low ? "badge low" : "", text: tr("battery", d.battery_pct) }),
      d.signal_quality == null ? null : el("span", { text: tr("signal", Math.round(d.signal_quality * 100)) }),
      // a jaundice meter touches the skin only during a press: between presses its card shows
      // the last reading, and a press without contact is a flagged reading, shown as such
      d.on_skin === false && d.device_type !== "jaundice" ? el("span", { class: "badge low", text: tr("off_skin") }) : null,
      checkBadge(d),
      open ? el("span", { class: "badge danger", text: tr("n_alerts", open) }) : null,
      colour ? el("span", { text: tr("risk", colour) }) : null),
    schedule(d),
    nextTcb(d),
    d.link !== "connected" && d.last_seen ? el("div", { class: "meta", text: tr("last_seen", ago(t(d.last_seen)), d.link_reason) }) : null,
  ].filter(Boolean));
}

export function sortedDevices() {
  return [...state.devices.values()].sort((a, b) => deviceName(a).localeCompare(deviceName(b), lang()) || a.device_id.localeCompare(b.device_id));
}

// Each item is an li.dev with data-device; choosing one is wired by the page (app.js). Items
// are kept (their contents redrawn): keyboard focus on a device survives every redraw.
export function renderDevices() {
  const ul = $("device-list");
  $("no-devices").hidden = state.devices.size > 0;
  const kept = new Map([...ul.children].map((li) => [li.dataset.device, li]));
  sortedDevices().forEach((d, i) => {
    let li = kept.get(d.device_id);
    kept.delete(d.device_id);
    if (!li) li = el("li", { "data-device": d.device_id, tabindex: "0" });
    fillCard(li, d);
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
  });
  for (const li of kept.values()) li.remove();
}

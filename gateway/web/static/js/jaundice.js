// A jaundice meter's detail: the last TcB with where it stands against the AAP 2022 lines
// (phototherapy and exchange, in the ward's unit) and when to measure again, the nomogram and
// the readings table, a page at a time.
//
// The readings come from the gateway's view of them (/api/devices/{id}/tcb): every reading it
// keeps, once each, assessed for the baby's details as set now. They are fetched again when a
// reading arrives live (a msg_id not seen yet) or the birth time, gestation or risk factors
// change, so a corrected birth time moves the readings instead of adding points beside them.

import { api } from "./api.js";
import { deviceName, readingFlagText } from "./devices.js";
import { $, el } from "./dom.js";
import { bili, biliNumber, biliUnitShown, hhmm, t, when } from "./format.js";
import { addStrings, ago, lang, locale, tr } from "./i18n.js";
import { drawNomogram, nomogramFor } from "./nomogram.js";
import { state } from "./state.js";

export const PAGE_ROWS = 10; // readings per page of the table
const HEADS = ["th_time", "th_age", "th_tcb", "th_bhutani", "th_phototherapy", "th_exchange", "th_next", "th_advice"];

addStrings({
  en: {
    th_bhutani: "Bhutani zone", th_phototherapy: "Phototherapy", th_exchange: "Exchange", th_next: "Next measurement",
    tcb_readings: "TcB readings", readings_pages: "readings pages", newer: "‹ Newer", older: "Older ›",
    readings_n: (a, b, n) => `readings ${a}–${b} of ${n}`, no_readings: "no readings",
    reassessed: "re-assessed", reassessed_sent: (h) => `re-assessed (sent as ${h} h)`,
    reassessed_note: (n) => `${n} reading${n > 1 ? "s" : ""} re-assessed with the birth time, gestation or risk ` +
      "factors now set (circled on the chart); the hospital received them assessed with the earlier details.",
    age_h: (h) => `${h} h`, not_a_tcb: (flags) => `not a reading: ${flags}`, measure_again: "measure again",
    set_baby_short: "set birth time and gestation", set_baby: "set the birth time and gestation to assess it",
    not_assessed: (why) => `not assessed: ${why}`,
    flagged_latest: (at, flags) => `${at}: not a reading (${flags}); measure again`, no_reading_yet: "no reading yet",
    latest_not_reading: (at, flags) => ` · latest press ${at} was not a reading (${flags})`,
    ci95: (ci) => ` · 95% ${ci}`, line_at: (v) => `line ${v}`,
    photo_head: (phrase, line) => `${phrase} (line ${line})`, exchange_head: (phrase, line) => `to exchange: ${phrase} (line ${line})`,
    next_head: "Next measurement: ",
    next_by_short: (m, at) => `${m} by ${at}`, next_overdue: (m, at, action) => `${m} overdue since ${at} (AAP 2022: ${action})`,
    next_between: (m, a, b, action) => `${m} between ${a} and ${b} (AAP 2022: ${action})`,
    next_by: (m, at, action) => `${m} by ${at} (AAP 2022: ${action})`, next_action: (action) => `${action} (AAP 2022)`,
    jaundice_sub: (id, link) => `Jaundice meter ${id} · ${link}`, weeks: (w) => `${w} weeks`, born: (at) => `born ${at}`,
    with_risk: "with neurotoxicity risk factors", amounts_in: (u) => `amounts in ${u}`,
    not_loaded: (why) => `readings not loaded: ${why}`,
    tcb_summary_none: (who) => `TcB nomogram of ${who}: no reading`,
    tcb_summary: (who, n, tcb, at) => `TcB nomogram of ${who}: ${n} reading${n > 1 ? "s" : ""}, latest ${tcb} at ${at}`,
    tcb_summary_assessed: (age, zone, photo) => `, ${age} h old, Bhutani ${zone}, ${photo}`,
    // in English the page shows the gateway's own words for these (shown.*, follow_up.action);
    // the entries say the same, for a language that falls back to English
    line_below: (line, amount) => `below ${line} by ${amount}`, line_above: (line, amount) => `above ${line} by ${amount}`,
    line_at_line: (line) => `at ${line}`,
    m_TSB: "TSB", "m_TSB or TcB": "TSB or TcB", "m_TcB or TSB": "TcB or TSB",
    fu_at_or_above: "at or above the phototherapy threshold: treat, and confirm with a serum bilirubin",
    fu_first_day: "delay discharge and consider phototherapy; TSB in 4-8 h",
    fu_close: "TSB in 4-24 h (or: delay discharge and consider phototherapy, home phototherapy, or discharge with close follow-up)",
    fu_moderate: "TSB or TcB in 4-24 h", fu_far: "TSB or TcB in 1-2 days",
    fu_judgement: "follow-up by clinical judgement", fu_days: (d) => `follow-up within ${d} days; TcB or TSB by clinical judgement`,
  },
  zh: {
    th_bhutani: "Bhutani 风险区", th_phototherapy: "光疗线", th_exchange: "换血线", th_next: "下次测量",
    tcb_readings: "经皮胆红素读数", readings_pages: "读数分页", newer: "‹ 较新", older: "较早 ›",
    readings_n: (a, b, n) => `第 ${a}–${b} 条，共 ${n} 条`, no_readings: "没有读数",
    reassessed: "已重新评估", reassessed_sent: (h) => `已重新评估（发送时为 ${h} 小时）`,
    reassessed_note: (n) => `${n} 条读数已按现在的出生时间、胎龄或危险因素重新评估（图中圈出）；医院收到的是按先前信息的评估。`,
    age_h: (h) => `${h} 小时`, not_a_tcb: (flags) => `不是有效读数：${flags}`, measure_again: "请重新测量",
    set_baby_short: "请填写出生时间和胎龄", set_baby: "请填写出生时间和胎龄后再评估",
    not_assessed: (why) => `未评估：${why}`,
    flagged_latest: (at, flags) => `${at}：不是有效读数（${flags}）；请重新测量`, no_reading_yet: "还没有读数",
    latest_not_reading: (at, flags) => ` · ${at} 最近一次测量不是有效读数（${flags}）`,
    ci95: (ci) => ` · 95% 区间 ${ci}`, line_at: (v) => `阈值 ${v}`,
    photo_head: (phrase, line) => `${phrase}（光疗阈值 ${line}）`, exchange_head: (phrase, line) => `距换血：${phrase}（换血阈值 ${line}）`,
    next_head: "下次测量：",
    next_by_short: (m, at) => `${at} 前查 ${m}`, next_overdue: (m, at, action) => `${m} 自 ${at} 起已逾期（AAP 2022：${action}）`,
    next_between: (m, a, b, action) => `${a} 至 ${b} 之间查 ${m}（AAP 2022：${action}）`,
    next_by: (m, at, action) => `${at} 前查 ${m}（AAP 2022：${action}）`, next_action: (action) => `${action}（AAP 2022）`,
    jaundice_sub: (id, link) => `黄疸测量仪 ${id} · ${link}`, weeks: (w) => `胎龄 ${w} 周`, born: (at) => `出生于 ${at}`,
    with_risk: "有神经毒性危险因素", amounts_in: (u) => `单位 ${u}`,
    not_loaded: (why) => `读数未能载入：${why}`,
    tcb_summary_none: (who) => `${who} 的经皮胆红素列线图：没有读数`,
    tcb_summary: (who, n, tcb, at) => `${who} 的经皮胆红素列线图：${n} 个读数，最近一次 ${tcb}（${at}）`,
    tcb_summary_assessed: (age, zone, photo) => `，日龄 ${age} 小时，Bhutani ${zone}，${photo}`,
    // where a reading stands against a line (English: the gateway's own words, shown.*)
    line_below: (line, amount) => `低于${line} ${amount}`, line_above: (line, amount) => `高于${line} ${amount}`,
    line_at_line: (line) => `达到${line}`,
    // AAP 2022 follow-up (dsp/bilirubin_followup.py), by what to measure and by band
    m_TSB: "血清胆红素（TSB）", "m_TSB or TcB": "TSB 或 TcB", "m_TcB or TSB": "TcB 或 TSB",
    fu_at_or_above: "达到或超过光疗阈值：开始治疗，并查血清胆红素确认",
    fu_first_day: "推迟出院并考虑光疗；4–8 小时内查 TSB",
    fu_close: "4–24 小时内查 TSB（或：推迟出院并考虑光疗、家庭光疗，或出院并密切随访）",
    fu_moderate: "4–24 小时内查 TSB 或 TcB", fu_far: "1–2 天内查 TSB 或 TcB",
    fu_judgement: "根据临床判断随访", fu_days: (d) => `${d} 天内随访；根据临床判断查 TcB 或 TSB`,
  },
});

// The assessment's advice (dsp/bilirubin_zones.py) in Chinese: each sentence it writes, by its
// pattern; one not listed here stays in the gateway's words.
const ADVICE_ZH = [
  [/^TcB at or above the exchange-transfusion threshold: urgent serum bilirubin$/, () => "经皮胆红素达到或超过换血阈值：紧急查血清胆红素"],
  [/^within (.+) of the exchange threshold: escalation of care$/, (a) => `距换血阈值不足 ${a}：升级治疗`],
  [/^TcB at or above the phototherapy threshold: confirm with serum bilirubin$/, () => "经皮胆红素达到或超过光疗阈值：查血清胆红素确认"],
  [/^within (.+) of phototherapy: measure TSB$/, (a) => `距光疗阈值不足 ${a}：查血清胆红素（TSB）`],
  [/^TcB >= (.+): TcB is less reliable here, measure TSB$/, (a) => `经皮胆红素 ≥ ${a}：此范围经皮测量不够可靠，请查 TSB`],
  [/^rapid rise \((.+)\): consider haemolysis$/, (a) => `上升过快（${a}）：考虑溶血`],
  [/^Bhutani nomogram is not defined before 12 h of age$/, () => "出生 12 小时内 Bhutani 列线图无定义"],
  [/^older than 14 days: AAP 2022 thresholds held at their 336 h value$/, () => "超过 14 天：AAP 2022 阈值按 336 小时的值"],
];
const adviceText = (x) => {
  if (lang() === "en") return x;
  for (const [re, zh] of ADVICE_ZH) { const m = x.match(re); if (m) return zh(...m.slice(1)); }
  return x;
};
const advice = (a) => a.advice.filter((x) => !x.startsWith("next measurement")).map(adviceText);

// The AAP 2022 follow-up's words: the gateway's in English, from its band in Chinese.
function followAction(f) {
  if (lang() === "en") return f.action;
  if (f.band === "at_or_above") return tr("fu_at_or_above");
  if (f.band === "0.1-1.9") return tr(f.latest_h === 8 ? "fu_first_day" : "fu_close");
  if (f.band === "2.0-3.4") return tr("fu_moderate");
  if (f.band === "3.5-5.4") return tr("fu_far");
  return f.latest_h == null ? tr("fu_judgement") : tr("fu_days", Math.round(f.latest_h / 24));
}
const measureText = (m) => (lang() === "en" || tr(`m_${m}`) === `m_${m}` ? m : tr(`m_${m}`));

// "below phototherapy by 7.3 mg/dL", "at exchange": the gateway's words (shown.*, made by
// dsp/bilirubin_units.py threshold_phrase, the one rule that rounds the distance in the ward's
// unit and calls a distance that rounds to nothing "at"). In English as sent; in Chinese from
// their parts, the amount as the gateway rounded it; words of another pattern as sent.
const AGAINST = /^(?:(above|below) \S+ by (\S+ \S+)|at \S+)$/;
function against(line, sent) {
  const m = lang() === "en" || !sent ? null : sent.match(AGAINST);
  if (!m) return sent || "—";
  const name = tr(`line_name_${line}`);
  return m[1] ? tr(m[1] === "below" ? "line_below" : "line_above", name, m[2]) : tr("line_at_line", name);
}
const zoneText = (zone) => (tr(`zone_${zone}`) === `zone_${zone}` ? String(zone) : tr(`zone_${zone}`));
const flagText = readingFlagText;
const stamp = (sec) => new Date(sec * 1000).toLocaleString(locale(), { hour12: false });

// What this page holds of the selected meter's readings (the gateway's view, in time order).
// `baby` is what the gateway assessed them with (birth time, gestation, risk factors): the
// nomogram's lines are drawn for the same, even when the hospital changed them meanwhile.
const view = { device: null, details: "", readings: [], ids: new Set(), loading: null, page: 0, error: "", baby: {} };

const detailsOf = (d) => { const s = d.settings || {}; return `${s.birth_time}|${s.ga_weeks}|${!!s.risk_factors}`; };

function stale(d) {
  if (view.device !== d.device_id || view.details !== detailsOf(d)) return true;
  return state.trace.tcb.some((r) => r.device_id === d.device_id && !view.ids.has(r.msg_id));
}

// Fetches the gateway's view of the readings when something changed, one fetch at a time. The
// readings the page had already received live are in the answer (the gateway records a
// reading before it sends it live), so they count as seen whatever the answer holds.
async function refreshReadings(d) {
  if (!stale(d)) return;
  if (!view.loading) {
    const id = d.device_id, details = detailsOf(d);
    const seen = state.trace.tcb.map((r) => r.msg_id);
    view.loading = api(`/api/devices/${encodeURIComponent(id)}/tcb`).then((body) => {
      if (view.device !== id) view.page = 0;
      Object.assign(view, { device: id, details, readings: body.readings, error: "", baby: body.baby || {},
        ids: new Set([...body.readings.map((r) => r.msg_id), ...seen]) });
    }, (e) => { view.error = e.message; }).finally(() => { view.loading = null; });
  }
  await view.loading;
  if (!view.error && stale(d)) await refreshReadings(d); // changed again while it loaded
}

// The next measurement after reading r: in full for the headline ("TSB or TcB between 18:10
// and tomorrow 14:10", "... overdue since 20:10"), or short for its row ("TSB by 20:10").
function nextText(r, short = false) {
  const f = r.assessment.follow_up, s = r.shown, action = followAction(f), m = measureText(f.measure);
  if (!s.next_by) return short ? action : tr("next_action", action);
  const by = t(s.next_by), from = t(s.next_from);
  if (short) return tr("next_by_short", m, when(by));
  if (Date.now() / 1000 > by) return tr("next_overdue", m, when(by), action);
  return from > t(r.t) + 60 ? tr("next_between", m, when(from), when(by), action) : tr("next_by", m, when(by), action);
}

// A distance to a line and, below it, the line itself: every amount with its unit.
const underLine = (phrase, line) => [phrase, el("div", { class: "small muted", text: tr("line_at", line) })];

function renderHead(d) {
  const readings = view.readings;
  const latest = readings[readings.length - 1];
  const last = [...readings].reverse().find((r) => r.tcb_mg_dl != null);
  const later = last ? readings.slice(readings.indexOf(last) + 1) : [];
  const box = $("tcb-advice");
  box.replaceChildren(); box.className = "advice";
  if (!last) {
    $("tcb-now").textContent = "—"; $("tcb-now").className = "now-value nodata";
    $("tcb-note").textContent = latest ? tr("flagged_latest", hhmm(t(latest.t)), flagText(latest.flag)) : tr("no_reading_yet");
    return;
  }
  $("tcb-now").className = "now-value";
  $("tcb-now").replaceChildren(biliNumber(last.tcb_mg_dl), el("small", { text: ` ${biliUnitShown()}` }));
  $("tcb-note").textContent = `${hhmm(t(last.t))} (${ago(t(last.t))})` + ((last.shown || {}).ci ? tr("ci95", last.shown.ci) : "") +
    (later.length ? tr("latest_not_reading", hhmm(t(latest.t)), flagText(latest.flag)) : "");
  const a = last.assessment;
  if (!a) {
    box.append(el("p", { text: last.assessment_error ? tr("not_assessed", last.assessment_error) : tr("set_baby") }));
    return;
  }
  if (a.above_phototherapy || a.escalation_of_care) box.classList.add("urgent");
  const s = last.shown || {};
  box.append(
    el("div", { class: "tcb-lines" },
      el("div", { "data-line": "phototherapy", text: tr("photo_head", against("phototherapy", s.phototherapy), s.phototherapy_line) }),
      el("div", { "data-line": "exchange", text: tr("exchange_head", against("exchange", s.exchange), s.exchange_line) })),
    el("div", { class: "tcb-next", id: "tcb-next" }, el("strong", { text: tr("next_head") }), nextText(last)),
    el("ul", {}, ...advice(a).map((x) => el("li", { text: x }))));
}

// This module's styles (jaundice.css), linked once from here so the page needs no change.
function ensureStyles() {
  if (document.getElementById("jaundice-css")) return;
  document.head.append(el("link", { id: "jaundice-css", rel: "stylesheet", href: "/static/jaundice.css" }));
}

function ensureTable() {
  ensureStyles();
  const table = $("tcb-rows").closest("table");
  if (!table.dataset.built) { // the columns this module fills
    table.tHead.replaceChildren(el("tr", {}, ...HEADS.map((h) => el("th", { scope: "col", text: tr(h), "data-i18n": h }))));
    table.dataset.built = "1";
    const wrap = el("div", { class: "tcb-table-wrap", tabindex: "0", role: "region", "aria-label": tr("tcb_readings"), "data-i18n-label": "tcb_readings" });
    table.replaceWith(wrap); // scrolls sideways on a phone instead of squeezing eight columns
    wrap.append(table);
  }
  let pager = $("tcb-pager");
  if (!pager) {
    pager = el("nav", { id: "tcb-pager", class: "tcb-pager", "aria-label": tr("readings_pages"), "data-i18n-label": "readings_pages" },
      el("button", { type: "button", class: "secondary", "data-go": "-1", text: tr("newer"), "data-i18n": "newer" }),
      el("span", { id: "tcb-page-text", "aria-live": "polite" }),
      el("button", { type: "button", class: "secondary", "data-go": "1", text: tr("older"), "data-i18n": "older" }));
    pager.addEventListener("click", (e) => {
      const go = e.target.closest("button") && Number(e.target.closest("button").dataset.go);
      if (!go) return;
      view.page += go;
      renderTable();
    });
    table.parentElement.after(pager);
    const note = el("p", { id: "tcb-reassessed", class: "small tcb-reassessed", hidden: "" });
    pager.after(note);
  }
}

function row(r) {
  const a = r.assessment, s = r.shown || {};
  const was = r.published_assessment;
  const age = el("td", { text: a ? tr("age_h", a.age_hours.toFixed(0)) : "—" });
  if (r.reassessed) {
    age.append(el("div", { class: "small reassessed-note",
      text: was && was.age_hours != null ? tr("reassessed_sent", Number(was.age_hours).toFixed(0)) : tr("reassessed") }));
  }
  return el("tr", { class: r.reassessed ? "reassessed" : "", "data-msg": r.msg_id },
    el("td", { text: when(t(r.t)) }),
    age,
    r.tcb_mg_dl == null ? el("td", { class: "flagged", text: tr("not_a_tcb", flagText(r.flag)) })
      : el("td", { text: s.tcb || bili(r.tcb_mg_dl) }),
    el("td", { text: a ? zoneText(a.bhutani_zone) : "—" }),
    a ? el("td", {}, ...underLine(against("phototherapy", s.phototherapy), s.phototherapy_line)) : el("td", { text: "—" }),
    a ? el("td", {}, ...underLine(against("exchange", s.exchange), s.exchange_line)) : el("td", { text: "—" }),
    el("td", { text: a ? nextText(r, true) : "—" }),
    el("td", { text: a ? advice(a).join("; ") || "—"
      : r.tcb_mg_dl == null ? tr("measure_again")
        : r.assessment_error ? tr("not_assessed", r.assessment_error) : tr("set_baby_short") }));
}

function renderTable() {
  ensureTable();
  const newest = [...view.readings].reverse();
  const pages = Math.max(1, Math.ceil(newest.length / PAGE_ROWS));
  view.page = Math.min(Math.max(0, view.page), pages - 1);
  const first = view.page * PAGE_ROWS, shown = newest.slice(first, first + PAGE_ROWS);
  $("tcb-rows").replaceChildren(...shown.map(row));
  $("tcb-page-text").textContent = newest.length
    ? tr("readings_n", first + 1, first + shown.length, newest.length) : tr("no_readings");
  const [newer, older] = $("tcb-pager").querySelectorAll("button");
  newer.disabled = view.page === 0; older.disabled = view.page >= pages - 1;
  const re = view.readings.filter((r) => r.reassessed).length;
  const note = $("tcb-reassessed");
  note.hidden = re === 0;
  note.textContent = re ? tr("reassessed_note", re) : "";
}

// The nomogram's text alternative (view.js makes it its aria-label): the latest TcB, its
// Bhutani zone and how far it is from the phototherapy line, in the page's language.
function summary(d) {
  const valid = view.readings.filter((r) => r.tcb_mg_dl != null);
  const last = valid[valid.length - 1];
  if (!last) return tr("tcb_summary_none", deviceName(d));
  const a = last.assessment, s = last.shown || {};
  return tr("tcb_summary", deviceName(d), valid.length, s.tcb || bili(last.tcb_mg_dl), when(t(last.t))) +
    (a ? tr("tcb_summary_assessed", a.age_hours.toFixed(0), zoneText(a.bhutani_zone),
      against("phototherapy", s.phototherapy)) : "");
}

export async function renderJaundice(d) {
  $("tcb-title").textContent = deviceName(d);
  const s = d.settings || {};
  $("tcb-sub").textContent = tr("jaundice_sub", d.device_id, tr(d.link === "connected" ? "connected" : "disconnected")) +
    (s.ga_weeks ? ` · ${tr("weeks", s.ga_weeks)}` : "") + (s.birth_time ? ` · ${tr("born", Number.isNaN(t(s.birth_time)) ? s.birth_time : stamp(t(s.birth_time)))}` : "") +
    (s.risk_factors ? ` · ${tr("with_risk")}` : "") + ` · ${tr("amounts_in", biliUnitShown())}`;
  $("baby-missing").hidden = !!(s.ga_weeks && s.birth_time);
  await refreshReadings(d);
  if (d.device_id !== state.selected || view.device !== d.device_id) {
    if (view.error) $("tcb-note").textContent = tr("not_loaded", view.error);
    return;
  }
  renderHead(d);
  renderTable();
  const nomo = await nomogramFor({ settings: view.baby }).catch(() => null);
  if (d.device_id !== state.selected) return;
  const c = $("nomogram");
  drawNomogram(c, nomo, view.readings);
  c.dataset.summary = summary(d);
  c.setAttribute("aria-label", c.dataset.summary); // drawn after view.js labelled it
}

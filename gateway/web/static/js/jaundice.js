// A jaundice meter's detail: the last TcB with where it stands against the AAP 2022 lines
// (phototherapy and exchange, in the ward's unit) and when to measure again, the nomogram and
// the readings table, a page at a time.
//
// The readings come from the gateway's view of them (/api/devices/{id}/tcb): every reading it
// keeps, once each, assessed for the baby's details as set now. They are fetched again when a
// reading arrives live (a msg_id not seen yet) or the birth time, gestation or risk factors
// change, so a corrected birth time moves the readings instead of adding points beside them.

import { api } from "./api.js";
import { deviceName } from "./devices.js";
import { $, el } from "./dom.js";
import { ago, bili, biliNumber, biliUnitShown, hhmm, t, when } from "./format.js";
import { drawNomogram, nomogramFor } from "./nomogram.js";
import { state } from "./state.js";

export const PAGE_ROWS = 10; // readings per page of the table
const ZONE_TEXT = { low: "low risk (<40th)", low_intermediate: "low-intermediate (40th–75th)",
  high_intermediate: "high-intermediate (75th–95th)", high: "high risk (>95th)",
  not_defined: "not defined (<12 h)" };
const FLAG_TEXT = { no_contact: "no skin contact", ambient_light: "too much light",
  saturated: "signal saturated", flashes_disagree: "probe moved", needs_calibration: "meter needs calibration",
  self_check_needed: "restart the meter in its holder", check_phantom: "weekly check on the check phantom" };
const HEADS = ["Time", "Age", "TcB", "Bhutani zone", "Phototherapy", "Exchange", "Next measurement", "Advice"];

// What this page holds of the selected meter's readings (the gateway's view, in time order).
// `baby` is what the gateway assessed them with (birth time, gestation, risk factors): the
// nomogram's lines are drawn for the same, even when the hospital changed them meanwhile.
const view = { device: null, details: "", readings: [], ids: new Set(), loading: null, page: 0, error: "", baby: {} };

const detailsOf = (d) => { const s = d.settings || {}; return `${s.birth_time}|${s.ga_weeks}|${!!s.risk_factors}`; };
const flagText = (flag) => flag.split(",").map((f) => FLAG_TEXT[f] || f.replace(/_/g, " ")).join(", ");

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
  const f = r.assessment.follow_up, s = r.shown;
  if (!s.next_by) return short ? f.action : `${f.action} (AAP 2022)`;
  const by = t(s.next_by), from = t(s.next_from);
  if (short) return `${f.measure} by ${when(by)}`;
  if (Date.now() / 1000 > by) return `${f.measure} overdue since ${when(by)} (AAP 2022: ${f.action})`;
  const span = from > t(r.t) + 60 ? `between ${when(from)} and ${when(by)}` : `by ${when(by)}`;
  return `${f.measure} ${span} (AAP 2022: ${f.action})`;
}

// A distance to a line and, below it, the line itself: every amount with its unit.
const against = (phrase, line) => [phrase, el("div", { class: "small muted", text: `line ${line}` })];

function renderHead(d) {
  const readings = view.readings;
  const latest = readings[readings.length - 1];
  const last = [...readings].reverse().find((r) => r.tcb_mg_dl != null);
  const later = last ? readings.slice(readings.indexOf(last) + 1) : [];
  const advice = $("tcb-advice");
  advice.replaceChildren(); advice.className = "advice";
  if (!last) {
    $("tcb-now").textContent = "—"; $("tcb-now").className = "now-value nodata";
    $("tcb-note").textContent = latest ? `${hhmm(t(latest.t))}: not a reading (${flagText(latest.flag)}); measure again` : "no reading yet";
    return;
  }
  $("tcb-now").className = "now-value";
  $("tcb-now").replaceChildren(biliNumber(last.tcb_mg_dl), el("small", { text: ` ${biliUnitShown()}` }));
  $("tcb-note").textContent = `${hhmm(t(last.t))} (${ago(t(last.t))})` + ((last.shown || {}).ci ? ` · 95% ${last.shown.ci}` : "") +
    (later.length ? ` · latest press ${hhmm(t(latest.t))} was not a reading (${flagText(latest.flag)})` : "");
  const a = last.assessment;
  if (!a) {
    advice.append(el("p", { text: last.assessment_error ? `not assessed: ${last.assessment_error}` : "set the birth time and gestation to assess it" }));
    return;
  }
  if (a.above_phototherapy || a.escalation_of_care) advice.classList.add("urgent");
  const s = last.shown || {};
  advice.append(
    el("div", { class: "tcb-lines" },
      el("div", { "data-line": "phototherapy", text: `${s.phototherapy} (line ${s.phototherapy_line})` }),
      el("div", { "data-line": "exchange", text: `to exchange: ${s.exchange} (line ${s.exchange_line})` })),
    el("div", { class: "tcb-next", id: "tcb-next" }, el("strong", { text: "Next measurement: " }), nextText(last)),
    el("ul", {}, ...a.advice.filter((x) => !x.startsWith("next measurement")).map((x) => el("li", { text: x }))));
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
    table.tHead.replaceChildren(el("tr", {}, ...HEADS.map((h) => el("th", { scope: "col", text: h }))));
    table.dataset.built = "1";
    const wrap = el("div", { class: "tcb-table-wrap", tabindex: "0", role: "region", "aria-label": "TcB readings" });
    table.replaceWith(wrap); // scrolls sideways on a phone instead of squeezing eight columns
    wrap.append(table);
  }
  let pager = $("tcb-pager");
  if (!pager) {
    pager = el("nav", { id: "tcb-pager", class: "tcb-pager", "aria-label": "readings pages" },
      el("button", { type: "button", class: "secondary", "data-go": "-1", text: "‹ Newer" }),
      el("span", { id: "tcb-page-text", "aria-live": "polite" }),
      el("button", { type: "button", class: "secondary", "data-go": "1", text: "Older ›" }));
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
  const age = el("td", { text: a ? `${a.age_hours.toFixed(0)} h` : "—" });
  if (r.reassessed) {
    age.append(el("div", { class: "small reassessed-note",
      text: was && was.age_hours != null ? `re-assessed (sent as ${Number(was.age_hours).toFixed(0)} h)` : "re-assessed" }));
  }
  return el("tr", { class: r.reassessed ? "reassessed" : "", "data-msg": r.msg_id },
    el("td", { text: when(t(r.t)) }),
    age,
    r.tcb_mg_dl == null ? el("td", { class: "flagged", text: `not a reading: ${flagText(r.flag)}` })
      : el("td", { text: s.tcb || bili(r.tcb_mg_dl) }),
    el("td", { text: a ? ZONE_TEXT[a.bhutani_zone] || a.bhutani_zone : "—" }),
    a ? el("td", {}, ...against(s.phototherapy, s.phototherapy_line)) : el("td", { text: "—" }),
    a ? el("td", {}, ...against(s.exchange, s.exchange_line)) : el("td", { text: "—" }),
    el("td", { text: a ? nextText(r, true) : "—" }),
    el("td", { text: a ? a.advice.filter((x) => !x.startsWith("next measurement")).join("; ") || "—"
      : r.tcb_mg_dl == null ? "measure again" : r.assessment_error || "set birth time and gestation" }));
}

function renderTable() {
  ensureTable();
  const newest = [...view.readings].reverse();
  const pages = Math.max(1, Math.ceil(newest.length / PAGE_ROWS));
  view.page = Math.min(Math.max(0, view.page), pages - 1);
  const first = view.page * PAGE_ROWS, shown = newest.slice(first, first + PAGE_ROWS);
  $("tcb-rows").replaceChildren(...shown.map(row));
  $("tcb-page-text").textContent = newest.length
    ? `readings ${first + 1}–${first + shown.length} of ${newest.length}` : "no readings";
  const [newer, older] = $("tcb-pager").querySelectorAll("button");
  newer.disabled = view.page === 0; older.disabled = view.page >= pages - 1;
  const re = view.readings.filter((r) => r.reassessed).length;
  const note = $("tcb-reassessed");
  note.hidden = re === 0;
  note.textContent = re ? `${re} reading${re > 1 ? "s" : ""} re-assessed with the birth time, gestation or risk ` +
    "factors now set (circled on the chart); the hospital received them assessed with the earlier details." : "";
}

function summary(d) {
  const valid = view.readings.filter((r) => r.tcb_mg_dl != null);
  const last = valid[valid.length - 1];
  if (!last) return `TcB nomogram of ${deviceName(d)}: no reading`;
  const a = last.assessment;
  return `TcB nomogram of ${deviceName(d)}: ${valid.length} reading${valid.length > 1 ? "s" : ""}, last ` +
    `${(last.shown || {}).tcb || bili(last.tcb_mg_dl)}` + (a ? ` at ${a.age_hours.toFixed(0)} h, ${ZONE_TEXT[a.bhutani_zone]}, ${last.shown.phototherapy}` : "");
}

export async function renderJaundice(d) {
  $("tcb-title").textContent = deviceName(d);
  const s = d.settings || {};
  $("tcb-sub").textContent = `Jaundice meter ${d.device_id} · ${d.link}` +
    (s.ga_weeks ? ` · ${s.ga_weeks} weeks` : "") + (s.birth_time ? ` · born ${new Date(s.birth_time).toLocaleString()}` : "") +
    (s.risk_factors ? " · with neurotoxicity risk factors" : "") + ` · amounts in ${biliUnitShown()}`;
  $("baby-missing").hidden = !!(s.ga_weeks && s.birth_time);
  await refreshReadings(d);
  if (d.device_id !== state.selected || view.device !== d.device_id) {
    if (view.error) $("tcb-note").textContent = `readings not loaded: ${view.error}`;
    return;
  }
  renderHead(d);
  renderTable();
  const nomo = await nomogramFor({ settings: view.baby }).catch(() => null);
  if (d.device_id !== state.selected) return;
  const c = $("nomogram");
  drawNomogram(c, nomo, view.readings);
  c.dataset.summary = summary(d);
}

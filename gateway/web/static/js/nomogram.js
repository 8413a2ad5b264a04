// The TcB nomogram: Bhutani 1999 risk zones (shaded and named), this baby's AAP 2022
// phototherapy and exchange lines (from /api/nomogram, named at their end), and each reading
// once with its 95% interval, all in the ward's unit and all clipped to the plot.

import { getNomogram } from "./api.js";
import { biliUnitShown, toBiliUnit } from "./format.js";
import { addStrings, tr } from "./i18n.js";

let cached = null, cachedKey = ""; // the last nomogram fetched, by gestation and risk factors

const MAX_H = 168; // the chart's first week
const MIN_TOP_MG_DL = 25; // the y axis reaches at least this far, further to hold every line
const ZONES = [ // Bhutani 1999 risk zones, top down: [zone, fill]; named zone_<zone> (zone_short_<zone> on a phone)
  ["high", "#fbdcdc"], ["high_intermediate", "#fde9d2"], ["low_intermediate", "#fdf7dc"], ["low", "#eef7ef"],
];

// The zones' names are the readings table's too (jaundice.js).
addStrings({
  en: {
    zone_high: "high risk (>95th)", zone_high_intermediate: "high-intermediate (75th–95th)",
    zone_low_intermediate: "low-intermediate (40th–75th)", zone_low: "low risk (<40th)",
    zone_not_defined: "not defined (<12 h)",
    zone_short_high: "high", zone_short_high_intermediate: "high-int.", zone_short_low_intermediate: "low-int.", zone_short_low: "low",
    line_phototherapy: "phototherapy (AAP 2022)", line_exchange: "exchange (AAP 2022)",
    line_name_phototherapy: "phototherapy", line_name_exchange: "exchange",
    axis_age: "age (hours)", nomogram_needs_baby: "birth time and gestational age needed",
  },
  zh: {
    zone_high: "高危区（>第 95 百分位）", zone_high_intermediate: "高中危区（第 75–95 百分位）",
    zone_low_intermediate: "低中危区（第 40–75 百分位）", zone_low: "低危区（<第 40 百分位）",
    zone_not_defined: "未定义（<12 小时）",
    zone_short_high: "高危", zone_short_high_intermediate: "高中危", zone_short_low_intermediate: "低中危", zone_short_low: "低危",
    line_phototherapy: "光疗线（AAP 2022）", line_exchange: "换血线（AAP 2022）",
    line_name_phototherapy: "光疗线", line_name_exchange: "换血线",
    axis_age: "日龄（小时）", nomogram_needs_baby: "需要出生时间和胎龄",
  },
});
const NARROW_PX = 560; // a plot narrower than this (a phone) gets short names, fewer hour labels
const PHOTO = "#1f5fbf", EXCHANGE = "#8b1a1a", INK = "#1d2430", MUTED = "#5d6878";

// The nomogram for a jaundice meter's baby, or null while birth time or gestation is unset.
export async function nomogramFor(d) {
  const s = d.settings || {};
  if (s.ga_weeks == null || !s.birth_time) return null;
  const key = `${s.ga_weeks}|${!!s.risk_factors}`;
  if (cachedKey !== key) {
    cached = await getNomogram(s.ga_weeks, !!s.risk_factors);
    cachedKey = key;
  }
  return cached;
}

// A round step for the y axis in the ward's unit, and the axis's top (a multiple of it).
function yAxis(maxMg) {
  const top = toBiliUnit(maxMg);
  const step = top > 100 ? 100 : 5; // µmol/L every 100, mg/dL every 5
  return { step, top: Math.ceil(top / step) * step };
}

// A label on a light backing, so it reads over shading and lines alike.
function label(g, text, x, y, colour, align) {
  g.font = "12px system-ui, sans-serif"; g.textAlign = align; g.textBaseline = "middle";
  const w = g.measureText(text).width, x0 = align === "right" ? x - w : x;
  g.fillStyle = "rgba(255,255,255,0.85)"; g.fillRect(x0 - 3, y - 8, w + 6, 16);
  g.fillStyle = colour; g.fillText(text, x, y);
}

// Draws on the canvas the readings (the gateway's view of them: one each, assessed for the
// baby as set now). Leaves in the canvas's dataset how many readings were plotted, which
// msg_ids, the zones and lines named, the plot's box and a text summary.
export function drawNomogram(c, nomo, readings) {
  const w = c.clientWidth, h = 380, dpr = window.devicePixelRatio || 1;
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  const left = 52, right = w - 12, top = 12, bottom = h - 36;
  const valid = readings.filter((r) => r.tcb_mg_dl != null && r.assessment);
  let maxMg = MIN_TOP_MG_DL;
  if (nomo) maxMg = Math.max(maxMg, ...nomo.exchange.filter((_, i) => nomo.hours[i] <= MAX_H));
  for (const r of valid) maxMg = Math.max(maxMg, r.ci_high_mg_dl ?? r.tcb_mg_dl);
  const axis = yAxis(maxMg + 0.5);
  const x = (hrs) => left + (hrs / MAX_H) * (right - left);
  const y = (mg) => bottom - (toBiliUnit(mg) / axis.top) * (bottom - top);
  const yShown = (v) => bottom - (v / axis.top) * (bottom - top);
  const narrow = right - left < NARROW_PX, hourStep = narrow ? 24 : 12;
  g.fillStyle = "#fff"; g.fillRect(0, 0, w, h);

  g.save(); g.beginPath(); g.rect(left, top, right - left, bottom - top); g.clip(); // the plot
  const named = [];
  if (nomo) {
    const bh = nomo.bhutani_hours, ceil = axis.top / toBiliUnit(1); // the top, in mg/dL
    const tracks = [null, nomo.bhutani_p95, nomo.bhutani_p75, nomo.bhutani_p40, null];
    ZONES.forEach(([, fill], z) => {
      const hi = tracks[z], lo = tracks[z + 1];
      g.fillStyle = fill; g.beginPath();
      bh.forEach((hr, i) => (i ? g.lineTo : g.moveTo).call(g, x(hr), y(hi ? hi[i] : ceil)));
      for (let i = bh.length - 1; i >= 0; i--) g.lineTo(x(bh[i]), y(lo ? lo[i] : 0));
      g.closePath(); g.fill();
    });
  }
  g.strokeStyle = "#e3e6ea"; g.lineWidth = 1;
  for (let v = 0; v <= axis.top; v += axis.step) { g.beginPath(); g.moveTo(left, yShown(v)); g.lineTo(right, yShown(v)); g.stroke(); }
  for (let hr = 0; hr <= MAX_H; hr += 12) { g.beginPath(); g.moveTo(x(hr), top); g.lineTo(x(hr), bottom); g.stroke(); }
  let plotted = 0;
  const ids = [];
  if (nomo) {
    const line = (vals, colour, dash) => {
      g.strokeStyle = colour; g.lineWidth = 2; g.setLineDash(dash); g.beginPath();
      nomo.hours.forEach((hr, i) => (i ? g.lineTo : g.moveTo).call(g, x(hr), y(vals[i])));
      g.stroke(); g.setLineDash([]);
    };
    line(nomo.phototherapy, PHOTO, []);
    line(nomo.exchange, EXCHANGE, [7, 5]);
    // names: each zone at the right end of its band; each line above its first day, where
    // the zones have not begun (the nomogram starts at 12 h)
    const bh = nomo.bhutani_hours, last = bh.length - 1, at = x(bh[last]) - 4;
    const p95 = nomo.bhutani_p95[last], p75 = nomo.bhutani_p75[last], p40 = nomo.bhutani_p40[last];
    const ys = [y(p95) - 10, (y(p95) + y(p75)) / 2, (y(p75) + y(p40)) / 2, y(p40) + 10];
    ZONES.forEach(([zone], z) => {
      const shown = tr(narrow ? `zone_short_${zone}` : `zone_${zone}`);
      label(g, shown, at, ys[z], INK, "right"); named.push(shown);
    });
    const day = nomo.hours.findIndex((hr) => hr >= 24);
    label(g, tr("line_phototherapy"), x(0) + 4, y(nomo.phototherapy[day]) - 12, PHOTO, "left");
    label(g, tr("line_exchange"), x(0) + 4, y(nomo.exchange[day]) - 12, EXCHANGE, "left");
    named.push(tr("line_name_phototherapy"), tr("line_name_exchange"));
    for (const r of valid) { // the readings last, over everything
      const age = r.assessment.age_hours;
      if (age < 0 || age > MAX_H) continue;
      const above = r.assessment.above_phototherapy;
      g.strokeStyle = "#333"; g.lineWidth = 1;
      g.beginPath(); g.moveTo(x(age), y(r.ci_low_mg_dl)); g.lineTo(x(age), y(r.ci_high_mg_dl)); g.stroke();
      g.fillStyle = above ? "#b3261e" : "#111";
      g.beginPath(); g.arc(x(age), y(r.tcb_mg_dl), 4.5, 0, 2 * Math.PI); g.fill();
      if (r.reassessed) { g.strokeStyle = "#b3261e"; g.lineWidth = 1.5; g.beginPath(); g.arc(x(age), y(r.tcb_mg_dl), 7, 0, 2 * Math.PI); g.stroke(); }
      plotted++; ids.push(r.msg_id);
    }
  }
  g.restore();

  g.strokeStyle = "#9aa3ae"; g.strokeRect(left + 0.5, top + 0.5, right - left - 1, bottom - top - 1);
  g.fillStyle = MUTED; g.font = "11px system-ui, sans-serif"; g.textAlign = "right"; g.textBaseline = "middle";
  for (let v = 0; v <= axis.top; v += axis.step) g.fillText(String(v), left - 4, yShown(v));
  g.textAlign = "center"; g.textBaseline = "top";
  for (let hr = 0; hr <= MAX_H; hr += hourStep) g.fillText(String(hr), x(hr), bottom + 4);
  g.fillText(tr("axis_age"), (left + right) / 2, bottom + 19);
  g.save(); g.translate(12, (top + bottom) / 2); g.rotate(-Math.PI / 2); g.fillText(`TcB ${biliUnitShown()}`, 0, 0); g.restore();
  if (!nomo) {
    g.fillStyle = MUTED; g.font = "14px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText(tr("nomogram_needs_baby"), (left + right) / 2, (top + bottom) / 2);
  }
  Object.assign(c.dataset, {
    readings: String(plotted), readingIds: ids.join(" "), named: named.join("|"),
    plot: [left, top, right, bottom].map(Math.round).join(" "), unit: biliUnitShown(),
  });
}

// The TcB nomogram: Bhutani 1999 risk zones, the AAP 2022 phototherapy and exchange lines for
// this baby (from /api/nomogram), and the readings with their 95% intervals.

import { getNomogram } from "./api.js";
import { t } from "./format.js";

let cached = null, cachedKey = ""; // the last nomogram fetched, by gestation and risk factors

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

// Draws on the canvas; s is the device's settings (birth time). Leaves the number of readings
// plotted in the canvas's dataset.
export function drawNomogram(c, nomo, readings, s) {
  const w = c.clientWidth, h = 380, dpr = window.devicePixelRatio || 1;
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  const left = 44, right = w - 12, top = 12, bottom = h - 34;
  const maxH = 168, maxY = 25;
  const x = (hrs) => left + (hrs / maxH) * (right - left);
  const y = (mg) => bottom - (mg / maxY) * (bottom - top);
  g.fillStyle = "#fff"; g.fillRect(0, 0, w, h);
  let plotted = 0;
  if (nomo) {
    const bh = nomo.bhutani_hours;
    const band = (lo, hi, colour) => {
      g.fillStyle = colour; g.beginPath();
      bh.forEach((hr, i) => (i ? g.lineTo(x(hr), y(hi ? hi[i] : maxY)) : g.moveTo(x(hr), y(hi ? hi[i] : maxY))));
      for (let i = bh.length - 1; i >= 0; i--) g.lineTo(x(bh[i]), y(lo ? lo[i] : 0));
      g.closePath(); g.fill();
    };
    band(null, nomo.bhutani_p40, "#eef7ef");
    band(nomo.bhutani_p40, nomo.bhutani_p75, "#fdf7dc");
    band(nomo.bhutani_p75, nomo.bhutani_p95, "#fde9d2");
    band(nomo.bhutani_p95, null, "#fbdcdc");
  }
  g.strokeStyle = "#e3e6ea"; g.lineWidth = 1; g.fillStyle = "#5d6878"; g.font = "11px system-ui, sans-serif";
  g.textAlign = "right"; g.textBaseline = "middle";
  for (let mg = 0; mg <= maxY; mg += 5) { g.beginPath(); g.moveTo(left, y(mg)); g.lineTo(right, y(mg)); g.stroke(); g.fillText(`${mg}`, left - 4, y(mg)); }
  g.textAlign = "center"; g.textBaseline = "top";
  for (let hr = 0; hr <= maxH; hr += 12) { g.beginPath(); g.moveTo(x(hr), top); g.lineTo(x(hr), bottom); g.stroke(); g.fillText(`${hr}`, x(hr), bottom + 4); }
  g.fillText("age (hours)", (left + right) / 2, bottom + 18);
  g.save(); g.translate(12, (top + bottom) / 2); g.rotate(-Math.PI / 2); g.fillText("TcB mg/dL", 0, 0); g.restore();
  if (nomo) {
    const line = (vals, colour, dash) => {
      g.strokeStyle = colour; g.lineWidth = 2; g.setLineDash(dash); g.beginPath();
      nomo.hours.forEach((hr, i) => (i ? g.lineTo(x(hr), y(vals[i])) : g.moveTo(x(hr), y(vals[i]))));
      g.stroke(); g.setLineDash([]);
    };
    line(nomo.phototherapy, "#1f5fbf", []);
    line(nomo.exchange, "#8b1a1a", [7, 5]);
    const born = t(s.birth_time);
    for (const r of readings) {
      if (r.tcb_mg_dl == null) continue;
      const age = r.assessment ? r.assessment.age_hours : (t(r.t) - born) / 3600;
      if (age < 0 || age > maxH) continue;
      const above = r.assessment && r.assessment.above_phototherapy;
      g.strokeStyle = "#333"; g.lineWidth = 1;
      g.beginPath(); g.moveTo(x(age), y(r.ci_low_mg_dl)); g.lineTo(x(age), y(r.ci_high_mg_dl)); g.stroke();
      g.fillStyle = above ? "#b3261e" : "#111";
      g.beginPath(); g.arc(x(age), y(r.tcb_mg_dl), 4.5, 0, 2 * Math.PI); g.fill();
      plotted++;
    }
  } else {
    g.fillStyle = "#5d6878"; g.font = "14px system-ui, sans-serif"; g.textAlign = "center";
    g.fillText("birth time and gestational age needed", (left + right) / 2, (top + bottom) / 2);
  }
  c.dataset.readings = String(plotted);
}

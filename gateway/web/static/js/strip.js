// The CTG strip: FHR and maternal rate on paper scaled like a CTG printout (20 bpm per cm,
// 1 or 3 cm per minute), with the CTG findings' baseline, accelerations and decelerations.

import { hhmm, t } from "./format.js";

const PX_PER_CM = 96 / 2.54; // CSS pixels per centimetre
const BPM_MIN = 50, BPM_MAX = 210, BPM_PER_CM = 20; // paper: 20 bpm per cm

// Seconds of trace the strip shows at this paper speed (cm per minute).
export function stripSeconds(canvas, speed) {
  const w = canvas.clientWidth || 900;
  return w / (PX_PER_CM * speed / 60);
}

// The window's rejected runs ({boot, first, last, reason}, gateway/web/artefacts.py) as a set
// of "boot:seq" keys: the FHR points the CTG analyses reject as artefact.
export function rejectedPoints(runs) {
  const out = new Set();
  for (const r of runs || []) for (let s = r.first; s <= r.last; s++) out.add(`${r.boot}:${s}`);
  return out;
}

// Draws trace ({fhr, mhr, ctg, rejected}) on the canvas; view is {speed, live, until, me}: live ends the
// strip now, otherwise at until (seconds); me.fhr_normal_bpm is the FIGO normal baseline the
// gateway sends (dsp/ctg_reference.py), shaded. Leaves the point counts in the canvas's dataset.
export function drawStrip(c, trace, view) {
  const [NORMAL_LOW, NORMAL_HIGH] = view.me.fhr_normal_bpm;
  const w = c.clientWidth, h = 360, dpr = window.devicePixelRatio || 1;
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  const top = 18, left = 34;
  const pxPerBpm = PX_PER_CM / BPM_PER_CM;
  const plotH = (BPM_MAX - BPM_MIN) * pxPerBpm; // 8 cm
  const pxPerS = PX_PER_CM * view.speed / 60;
  const right = w - 4;
  const end = view.live ? Date.now() / 1000 : view.until;
  const start = end - (right - left) / pxPerS;
  const x = (s) => left + (s - start) * pxPerS;
  const y = (bpm) => top + (BPM_MAX - bpm) * pxPerBpm;

  g.fillStyle = "#fffdf7"; g.fillRect(0, 0, w, h);
  g.fillStyle = "#d9efdc"; g.fillRect(left, y(NORMAL_HIGH), right - left, y(NORMAL_LOW) - y(NORMAL_HIGH));
  // grid: 10 bpm lines, bold every 30 bpm; vertical every cm, bold every minute (3 cm/min) or 10 min (1 cm/min)
  g.lineWidth = 1;
  for (let b = BPM_MIN; b <= BPM_MAX; b += 10) {
    g.strokeStyle = (b % 30 === 0) ? "#e2a3a3" : "#f3d3d3";
    g.beginPath(); g.moveTo(left, y(b) + 0.5); g.lineTo(right, y(b) + 0.5); g.stroke();
  }
  g.fillStyle = "#7a4a4a"; g.font = "11px system-ui, sans-serif"; g.textAlign = "right"; g.textBaseline = "middle";
  for (let b = 60; b <= BPM_MAX; b += 30) g.fillText(String(b), left - 4, y(b));
  const minor = 60 / view.speed; // seconds per cm
  const major = view.speed === 1 ? 600 : 60;
  g.textAlign = "center"; g.textBaseline = "top";
  for (let s = Math.ceil(start / minor) * minor; s <= end; s += minor) {
    const isMajor = Math.abs(s / major - Math.round(s / major)) < 1e-6;
    g.strokeStyle = isMajor ? "#d08a8a" : "#f3d3d3";
    g.beginPath(); g.moveTo(Math.round(x(s)) + 0.5, top); g.lineTo(Math.round(x(s)) + 0.5, top + plotH); g.stroke();
    if (isMajor) { g.fillStyle = "#5d6878"; g.fillText(hhmm(s), x(s), top + plotH + 4); }
  }
  // CTG baseline and events from the latest findings that fall in view
  for (const ctg of trace.ctg) {
    const ws = t(ctg.window_start);
    if (ws == null) continue;
    for (const a of ctg.accelerations || []) {
      const px = x(ws + a.peak_s);
      if (px < left || px > right) continue;
      g.fillStyle = "#1a7f37"; g.textBaseline = "bottom"; g.fillText("▲", px, top - 2);
    }
    for (const dcl of ctg.decelerations || []) {
      const px = x(ws + dcl.nadir_s);
      if (px < left || px > right) continue;
      g.fillStyle = "#b3261e"; g.textBaseline = "top";
      g.fillText(`▼ ${dcl.type}`, px, top + plotH - 14);
    }
  }
  const lastCtg = trace.ctg[trace.ctg.length - 1];
  if (lastCtg && lastCtg.baseline_bpm != null && t(lastCtg.window_start) != null) {
    g.strokeStyle = "#5d6878"; g.setLineDash([6, 4]);
    g.beginPath(); g.moveTo(Math.max(left, x(t(lastCtg.window_start))), y(lastCtg.baseline_bpm));
    g.lineTo(Math.min(right, x(t(lastCtg.window_start) + lastCtg.window_s)), y(lastCtg.baseline_bpm)); g.stroke();
    g.setLineDash([]);
  }
  g.save(); g.beginPath(); g.rect(left, top, right - left, plotH); g.clip();
  const drawn = drawTrace(g, trace.mhr, "mhr_bpm", x, y, "#a23b72", 1.3, start, null);
  const points = drawTrace(g, trace.fhr, "fhr_bpm", x, y, "#111", 1.6, start, trace.rejected);
  g.restore();
  g.strokeStyle = "#c99"; g.strokeRect(left + 0.5, top + 0.5, right - left - 1, plotH);
  c.dataset.points = String(points);
  c.dataset.maternalPoints = String(drawn);
  c.dataset.rejected = String(trace.rejected ? trace.rejected.size : 0);
  c.dataset.speed = String(view.speed);
  if (points === 0) {
    g.fillStyle = "#5d6878"; g.font = "14px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText(view.live ? "waiting for fetal heart rate…" : "no trace in this period", (left + right) / 2, top + plotH / 2);
  }
}

// Points are joined only when they are consecutive (same boot, next sequence number): a null
// point, a missing message or a point in `rejected` (artefact: the CTG analyses do not read
// it) lifts the pen. Returns the number of points drawn.
function drawTrace(g, msgs, key, x, y, colour, width, start, rejected) {
  g.strokeStyle = colour; g.lineWidth = width; g.lineJoin = "round";
  g.beginPath();
  let n = 0, prev = null;
  for (const m of msgs) {
    const t0 = t(m.t_start);
    const vals = m[key];
    for (let i = 0; i < vals.length; i++) {
      const seq = m.seq + i, v = vals[i];
      const ts = t0 + i * m.interval_s;
      if (v == null || v < BPM_MIN - 20 || ts < start - 1 || (rejected && rejected.has(`${m.boot}:${seq}`))) {
        prev = null; continue;
      }
      const cont = prev && prev.boot === m.boot && prev.seq === seq - 1;
      if (cont) g.lineTo(x(ts), y(v)); else { g.moveTo(x(ts), y(v)); g.lineTo(x(ts) + 0.8, y(v)); }
      prev = { boot: m.boot, seq };
      n++;
    }
  }
  g.stroke();
  return n;
}

// The CTG strip on standard paper (ctgpaper.js: 1 or 3 cm per minute, 20 or 30 bpm per cm,
// bold rules on the centimetre lines, a 24-hour clock): FHR and maternal rate, the CTG
// findings' baseline, accelerations and decelerations, event marks (the recording sessions'
// starts and stops, alerts; the fetal movements the mother marked, as arrows on the bottom of
// the FHR channel, as a CTG machine's event marker prints them), and the uterine-activity
// channel underneath when there is one.

import { t } from "./format.js";
import { addStrings, tr } from "./i18n.js";
import { FHR_RANGE_BPM, Labels, MINOR_BPM, PX_PER_CM, UA_PER_CM, UA_RANGE, clock24, paper } from "./ctgpaper.js";

const [BPM_MIN, BPM_MAX] = FHR_RANGE_BPM;
const LEFT = 46, RIGHT_PAD = 8; // room for the bpm labels; the paper runs to the right edge
const MARK_LANES = 2, LANE_H = 13; // event mark labels above the paper, in two lanes
const TOP = 8 + MARK_LANES * LANE_H + 4;
const UA_GAP = 10, CLOCK_H = 20;
const RULE_MINOR = "#f6d3d3", RULE_BOLD = "#e08080", FRAME = "#b06a6a";
const MARK = "#1f4e9c", TEXT = "#4a3030";
const MOVEMENT = "#8a4b00", MOVEMENT_H = 16; // the mother's marks: an arrow this tall, amber

addStrings({
  en: {
    strip_waiting: "waiting for fetal heart rate…", strip_no_trace: "no trace in this period", strip_ua: "UA",
    decel_early: "early", decel_late: "late", decel_variable: "variable", decel_prolonged: "prolonged", decel_unclassified: "unclassified",
  },
  zh: {
    strip_waiting: "正在等待胎心率…", strip_no_trace: "这段时间没有曲线", strip_ua: "宫缩",
    decel_early: "早期减速", decel_late: "晚期减速", decel_variable: "变异减速", decel_prolonged: "延长减速", decel_unclassified: "未分类减速",
  },
});
// A deceleration's type (dsp/ctg.py: early, late, variable, prolonged) in the page's language.
const decelText = (type) => (tr(`decel_${type}`) === `decel_${type}` ? String(type) : tr(`decel_${type}`));

// Seconds of trace the strip shows at this paper speed (cm per minute).
export function stripSeconds(canvas, speed) {
  const w = canvas.clientWidth || 900;
  return (w - LEFT - RIGHT_PAD) / (PX_PER_CM * speed / 60);
}

// The window's rejected runs ({boot, first, last, reason}, gateway/web/artefacts.py) as a set
// of "boot:seq" keys: the FHR points the CTG analyses reject as artefact.
export function rejectedPoints(runs) {
  const out = new Set();
  for (const r of runs || []) for (let s = r.first; s <= r.last; s++) out.add(`${r.boot}:${s}`);
  return out;
}

// Whether trace messages carry any uterine activity (a tocodynamometer channel).
const hasUa = (msgs) => (msgs || []).some((m) => (m.ua || []).some((v) => v != null));

// Draws trace ({fhr, mhr, ctg, rejected, ua?}) on the canvas; view is {speed, live, until, me}:
// live ends the strip now, otherwise at until (seconds); me.fhr_normal_bpm is the FIGO normal
// baseline the gateway sends (dsp/ctg_reference.py), shaded. opts: {scale (bpm/cm), marks:
// [{t, label, kind}]} (kind "movement": an arrow, unlabelled). Leaves in the canvas's dataset
// what it drew: point counts, the time span, the paper, the frame, every label's box and every
// mark, for the page and its tests.
export function drawStrip(c, trace, view, opts = {}) {
  const scale = opts.scale || 20;
  const P = paper(view.speed, scale);
  const [NORMAL_LOW, NORMAL_HIGH] = view.me.fhr_normal_bpm;
  const ua = hasUa(trace.ua);
  const fhrTop = TOP, fhrBottom = TOP + P.fhrHeight;
  const uaTop = fhrBottom + UA_GAP, uaBottom = ua ? uaTop + P.uaHeight : fhrBottom;
  const w = c.clientWidth, h = Math.ceil(uaBottom + CLOCK_H), dpr = window.devicePixelRatio || 1;
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  c.style.height = `${h}px`;
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  const left = LEFT, right = w - RIGHT_PAD;
  const end = view.live ? Date.now() / 1000 : view.until;
  const start = end - (right - left) / P.pxPerS;
  const x = (s) => left + (s - start) * P.pxPerS;
  const y = (bpm) => fhrTop + (BPM_MAX - bpm) * P.pxPerBpm;
  const yUa = (v) => uaTop + (UA_RANGE[1] - v) / UA_PER_CM * PX_PER_CM;
  const px = (v) => Math.round(v) + 0.5; // a 1 px rule on a pixel
  const labels = new Labels(g, w);
  g.font = "11px system-ui, sans-serif";

  g.fillStyle = "#fffdf7"; g.fillRect(0, 0, w, h);
  g.fillStyle = "#d9efdc"; g.fillRect(left, y(NORMAL_HIGH), right - left, y(NORMAL_LOW) - y(NORMAL_HIGH));
  g.lineWidth = 1;
  const hRule = (yy, bold) => {
    g.strokeStyle = bold ? RULE_BOLD : RULE_MINOR;
    g.beginPath(); g.moveTo(left, px(yy)); g.lineTo(right, px(yy)); g.stroke();
  };
  // rules across: every 10 bpm, bold on the centimetre lines (multiples of the scale)
  for (let b = BPM_MIN; b <= BPM_MAX; b += MINOR_BPM) hRule(y(b), b % scale === 0);
  if (ua) for (let v = UA_RANGE[0]; v <= UA_RANGE[1]; v += UA_PER_CM / 2) hRule(yUa(v), v % UA_PER_CM === 0);
  // rules along: every half centimetre of time, bold every centimetre, on the clock's grid
  const first = Math.ceil(start / P.minorS);
  for (let k = first; k * P.minorS <= end; k++) {
    const s = k * P.minorS, bold = k % 2 === 0;
    g.strokeStyle = bold ? RULE_BOLD : RULE_MINOR;
    g.beginPath(); g.moveTo(px(x(s)), fhrTop); g.lineTo(px(x(s)), fhrBottom);
    if (ua) { g.moveTo(px(x(s)), uaTop); g.lineTo(px(x(s)), uaBottom); }
    g.stroke();
  }
  // the axis: "bpm", its values on the bold rules; the UA channel's; the 24-hour clock
  labels.place("bpm", left - 5, fhrTop - LANE_H - 1, { align: "right", colour: TEXT });
  for (let b = BPM_MIN; b <= BPM_MAX; b += MINOR_BPM) {
    if (b % scale === 0) labels.place(String(b), left - 5, y(b) - 6, { align: "right", colour: TEXT });
  }
  if (ua) {
    labels.place(tr("strip_ua"), left - 5, uaTop - 1, { align: "right", colour: TEXT });
    for (let v = UA_RANGE[0]; v < UA_RANGE[1]; v += UA_PER_CM) labels.place(String(v), left - 5, yUa(v) - 6, { align: "right", colour: TEXT });
  }
  for (let s = Math.ceil(start / P.labelS) * P.labelS; s <= end; s += P.labelS) {
    labels.place(clock24(s), x(s), uaBottom + 4, { colour: TEXT });
  }
  // the CTG findings that fall in view: accelerations above the trace, decelerations below
  g.font = "11px system-ui, sans-serif";
  for (const ctg of trace.ctg) {
    const ws = t(ctg.window_start);
    if (ws == null) continue;
    for (const a of ctg.accelerations || []) {
      const ax = x(ws + a.peak_s);
      if (ax >= left && ax <= right) labels.place("▲", ax, y(Math.min(BPM_MAX - 8, (a.peak_bpm || 170) + 12)), { colour: "#1a7f37" });
    }
    for (const dcl of ctg.decelerations || []) {
      const dx = x(ws + dcl.nadir_s);
      if (dx >= left && dx <= right) labels.place(`▼ ${decelText(dcl.type)}`, dx, y(BPM_MIN + 14), { colour: "#b3261e", lanes: 2, laneH: -LANE_H });
    }
  }
  const lastCtg = trace.ctg[trace.ctg.length - 1];
  if (lastCtg && lastCtg.baseline_bpm != null && t(lastCtg.window_start) != null) {
    g.strokeStyle = "#5d6878"; g.setLineDash([6, 4]);
    g.beginPath(); g.moveTo(Math.max(left, x(t(lastCtg.window_start))), y(lastCtg.baseline_bpm));
    g.lineTo(Math.min(right, x(t(lastCtg.window_start) + lastCtg.window_s)), y(lastCtg.baseline_bpm)); g.stroke();
    g.setLineDash([]);
  }
  // the traces, each inside its channel
  g.save(); g.beginPath(); g.rect(left, fhrTop, right - left, P.fhrHeight); g.clip();
  const drawn = drawTrace(g, trace.mhr, "mhr_bpm", x, y, "#a23b72", 1.3, start, null);
  const points = drawTrace(g, trace.fhr, "fhr_bpm", x, y, "#111", 1.6, start, trace.rejected);
  g.restore();
  if (ua) {
    g.save(); g.beginPath(); g.rect(left, uaTop, right - left, P.uaHeight); g.clip();
    drawTrace(g, trace.ua, "ua", x, yUa, "#111", 1.3, start, null, -Infinity);
    g.restore();
  }
  g.strokeStyle = FRAME; g.lineWidth = 1;
  g.strokeRect(px(left), px(fhrTop), Math.round(right - left) - 1, Math.round(P.fhrHeight));
  if (ua) g.strokeRect(px(left), px(uaTop), Math.round(right - left) - 1, Math.round(P.uaHeight));
  // event marks: a dashed line through the channels, its label above the paper
  const marks = [];
  g.font = "11px system-ui, sans-serif";
  for (const m of opts.marks || []) {
    const mx = x(m.t);
    if (mx < left || mx > right) continue;
    if (m.kind === "movement") {
      drawArrow(g, px(mx), fhrBottom - 2, MOVEMENT_H);
      marks.push({ label: m.label, kind: m.kind, t: m.t, x: mx, labelled: false });
      continue;
    }
    g.strokeStyle = MARK; g.lineWidth = 1.5; g.setLineDash([4, 3]);
    g.beginPath(); g.moveTo(px(mx), fhrTop); g.lineTo(px(mx), uaBottom); g.stroke();
    g.setLineDash([]); g.lineWidth = 1;
    const box = labels.place(`▼ ${m.label}`, mx - 4, 8, { align: "left", lanes: MARK_LANES, laneH: LANE_H, colour: MARK, shift: true });
    marks.push({ label: m.label, kind: m.kind, t: m.t, x: mx, labelled: box != null });
  }
  Object.assign(c.dataset, {
    points: String(points), maternalPoints: String(drawn), rejected: String(trace.rejected ? trace.rejected.size : 0),
    speed: String(view.speed), scale: String(scale), start: String(start), end: String(end),
    pxPerCm: String(PX_PER_CM), ua: String(ua), width: String(w),
    frame: JSON.stringify({ left, right, top: fhrTop, bottom: fhrBottom, uaTop: ua ? uaTop : null, uaBottom: ua ? uaBottom : null }),
    labels: JSON.stringify(labels.boxes), marks: JSON.stringify(marks),
  });
  if (points === 0) {
    g.fillStyle = "#5d6878"; g.font = "14px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText(tr(view.live ? "strip_waiting" : "strip_no_trace"), (left + right) / 2, fhrTop + P.fhrHeight / 2);
  }
}

// An upward arrow from `bottom`, `h` tall: a movement the mother marked.
function drawArrow(g, ax, bottom, h) {
  g.strokeStyle = MOVEMENT; g.fillStyle = MOVEMENT; g.lineWidth = 2;
  g.beginPath(); g.moveTo(ax, bottom); g.lineTo(ax, bottom - h + 5); g.stroke();
  g.beginPath(); g.moveTo(ax, bottom - h); g.lineTo(ax - 4, bottom - h + 6); g.lineTo(ax + 4, bottom - h + 6);
  g.closePath(); g.fill();
  g.lineWidth = 1;
}

// Points are joined only when they are consecutive (same boot, next sequence number): a null
// point, a missing message or a point in `rejected` (artefact: the CTG analyses do not read
// it) lifts the pen. Returns the number of points drawn.
function drawTrace(g, msgs, key, x, y, colour, width, start, rejected, floor = BPM_MIN - 20) {
  g.strokeStyle = colour; g.lineWidth = width; g.lineJoin = "round";
  g.beginPath();
  let n = 0, prev = null;
  for (const m of msgs || []) {
    const t0 = t(m.t_start);
    const vals = m[key] || [];
    for (let i = 0; i < vals.length; i++) {
      const seq = m.seq + i, v = vals[i];
      const ts = t0 + i * m.interval_s;
      if (v == null || v < floor || ts < start - 1 || (rejected && rejected.has(`${m.boot}:${seq}`))) {
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

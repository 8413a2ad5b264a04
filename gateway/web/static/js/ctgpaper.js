// CTG paper as the strip draws it: the speeds, scales and rules of dsp/ctg_reference.py
// (PAPER_*; FIGO 2015: 1 cm/min with 20 bpm/cm, or 3 cm/min with 30 bpm/cm, 50-210 bpm, the
// uterine-activity channel 0-100 at 25 per cm). tests/test_ctg_paper.py holds these equal to
// the Python ones. Sizes are CSS pixels: 96 per inch, so a centimetre on the screen is a
// centimetre of paper when the browser's zoom is 100%.

export const PX_PER_CM = 96 / 2.54;
export const SPEEDS_CM_PER_MIN = [1, 3];
export const SCALES_BPM_PER_CM = [20, 30];
export const FHR_RANGE_BPM = [50, 210]; // dsp/ctg_artefact.py VALID_RANGE_BPM
export const MINOR_BPM = 10;
export const MINOR_CM = 0.5;
export const UA_RANGE = [0, 100];
export const UA_PER_CM = 25;
export const LABEL_EVERY_CM = { 1: 5, 3: 3 }; // a clock label every 5 min at 1 cm/min, every min at 3

export const HISTORY_S = 24 * 3600; // what the gateway keeps ([gateway] history_h) and the strip scrolls through

const pad = (n) => String(n).padStart(2, "0");
// A 24-hour clock on the nurse's screen, whatever the locale's habit: "07:05", "19:40".
export const clock24 = (sec) => { const d = new Date(sec * 1000); return `${pad(d.getHours())}:${pad(d.getMinutes())}`; };

// The paper for a speed and scale: pixels per second and per bpm, seconds per minor and bold rule.
export function paper(speed, scale) {
  const pxPerS = PX_PER_CM * speed / 60;
  return {
    speed, scale, pxPerS,
    pxPerBpm: PX_PER_CM / scale,
    minorS: MINOR_CM / speed * 60, // thin rules every half centimetre of time
    boldS: 60 / speed, // bold rules every centimetre
    labelS: LABEL_EVERY_CM[speed] / speed * 60,
    fhrHeight: (FHR_RANGE_BPM[1] - FHR_RANGE_BPM[0]) / scale * PX_PER_CM,
    uaHeight: (UA_RANGE[1] - UA_RANGE[0]) / UA_PER_CM * PX_PER_CM,
  };
}

// Labels that never overlap and never leave the canvas: `place` keeps a label only if its box
// is clear of every kept one (or, with lanes, moves it down a lane until it is) and inside the
// canvas's width (or, with shift, slides it inside); the kept boxes go into the canvas's dataset
// for whoever checks the drawing.
export class Labels {
  constructor(g, width) { this.g = g; this.width = width; this.boxes = []; }

  fits(b) {
    return this.boxes.every((o) => b.x + b.w <= o.x || o.x + o.w <= b.x || b.y + b.h <= o.y || o.y + o.h <= b.y);
  }

  // Draws `text` with its box's left (align "left"), centre or right at x, its top at y;
  // tries lanes below (each `laneH` lower) when asked. Returns the box kept, or null.
  place(text, x, y, { align = "center", lanes = 1, laneH = 12, h = 12, colour = "#333", shift = false } = {}) {
    const w = Math.ceil(this.g.measureText(text).width) + 2;
    let left = align === "left" ? x : align === "right" ? x - w : x - w / 2;
    if (shift) left = Math.max(0, Math.min(this.width - w, left));
    if (left < 0 || left + w > this.width) return null;
    for (let lane = 0; lane < lanes; lane++) {
      const b = { x: left, y: y + lane * laneH, w, h, text };
      if (!this.fits(b)) continue;
      this.boxes.push(b);
      this.g.fillStyle = colour; this.g.textAlign = "left"; this.g.textBaseline = "top";
      this.g.fillText(text, b.x + 1, b.y);
      return b;
    }
    return null;
  }
}

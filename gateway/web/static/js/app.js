"use strict";
// perimon nurse view: device list, CTG strip, TcB nomogram, alerts. Plain JS, no CDN.
// Data: /api/* (what the gateway published) and /api/events (server-sent events).

const PX_PER_CM = 96 / 2.54; // CSS pixels per centimetre
const BPM_MIN = 50, BPM_MAX = 210, BPM_PER_CM = 20; // paper: 20 bpm per cm
const LIVE_KEEP_S = 45 * 60; // trace kept in the page while live
const NOW_MAX_AGE_S = 10; // a "current" value older than this is not shown as current

const state = {
  devices: new Map(), selected: null, alerts: new Map(), me: null,
  trace: { fhr: [], mhr: [], ctg: [], tcb: [] }, live: true, until: null,
  speed: 1, nomo: null, nomoKey: "",
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};
const t = (iso) => (iso ? Date.parse(iso) / 1000 : null);
const hhmm = (sec) => new Date(sec * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
const hhmmss = (sec) => new Date(sec * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const ago = (sec) => {
  const d = Math.max(0, Date.now() / 1000 - sec);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  return `${(d / 3600).toFixed(1)} h ago`;
};
const ALERT_TEXT = {
  signal_loss: "Signal loss", maternal_coincidence: "Maternal pulse recorded",
  bradycardia: "Fetal bradycardia", tachycardia: "Fetal tachycardia",
  ctg_pathological: "CTG pathological", sample_rate: "Monitor fault: wrong sample rate",
  tcb_above_exchange: "TcB at/above exchange line", tcb_escalation_of_care: "TcB near exchange line",
  tcb_above_phototherapy: "TcB above phototherapy line",
  serum_bilirubin_advised: "Serum bilirubin advised", tcb_rapid_rise: "TcB rising fast",
  device_unverified: "Monitor not verified: paired elsewhere?",
};
const ZONE_TEXT = { low: "low", low_intermediate: "low-intermediate",
  high_intermediate: "high-intermediate", high: "high", not_defined: "not defined (<12 h)" };

async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts,
    headers: { "X-Perimon": "1", ...(opts.body ? { "Content-Type": "application/json" } : {}) } });
  if (r.status === 401) { location.href = "/login"; throw new Error("login required"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

// ---------- device list ----------

function deviceName(d) {
  return (d.settings && d.settings.label) || `${d.device_id} (no bed assigned)`;
}
const alertText = (kind) => ALERT_TEXT[kind] || kind.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

function lastReading(d) {
  if (d.device_type === "fetal_heart") {
    const f = d.last_fhr;
    if (!f) return el("span", { class: "stale", text: "no FHR yet" });
    const at = t(f.t);
    return el("span", {}, `FHR ${Math.round(f.bpm)} bpm `, el("span", { class: "stale", text: ago(at) }));
  }
  const r = d.last_tcb;
  if (!r) return el("span", { class: "stale", text: "no TcB yet" });
  if (r.tcb_mg_dl == null) return el("span", { class: "stale", text: `not a reading: ${r.flag}` });
  return el("span", {}, `TcB ${r.tcb_mg_dl.toFixed(1)} mg/dL `, el("span", { class: "stale", text: ago(t(r.t)) }));
}

function renderDevices() {
  const ul = $("device-list");
  ul.replaceChildren();
  $("no-devices").hidden = state.devices.size > 0;
  for (const d of [...state.devices.values()].sort((a, b) => deviceName(a).localeCompare(deviceName(b)) || a.device_id.localeCompare(b.device_id))) {
    const colour = d.settings && d.settings.risk_colour;
    const unacked = [...state.alerts.values()].filter((a) => a.device_id === d.device_id && a.state === "raised").length;
    const li = el("li", { class: `dev${colour ? " risk-" + colour : ""}`, "data-device": d.device_id,
      "aria-current": String(d.device_id === state.selected), tabindex: "0" },
      el("div", { class: "row" }, el("span", { class: "label", text: deviceName(d) }),
        el("span", { class: `badge ${d.link}`, text: d.link === "connected" ? "connected" : "disconnected" })),
      el("div", { class: "id", text: `${d.device_type === "fetal_heart" ? "Fetal monitor" : d.device_type === "jaundice" ? "Jaundice meter" : "Device"} · ${d.device_id}` }),
      el("div", { class: "reading" }, lastReading(d)),
      el("div", { class: "meta" },
        el("span", { class: d.battery_low ? "badge low" : "", text: d.battery_pct == null ? "battery ?" : `battery ${d.battery_pct}%` }),
        d.signal_quality == null ? null : el("span", { text: `signal ${Math.round(d.signal_quality * 100)}%` }),
        d.on_skin === false ? el("span", { class: "badge low", text: d.device_type === "jaundice" ? "no contact" : "off skin" }) : null,
        unacked ? el("span", { class: "badge alert", text: `${unacked} alert${unacked > 1 ? "s" : ""}` }) : null,
        colour ? el("span", { text: `risk ${colour}` }) : null),
      d.link !== "connected" && d.last_seen ? el("div", { class: "meta", text: `last seen ${ago(t(d.last_seen))}${d.link_reason ? " (" + d.link_reason + ")" : ""}` }) : null);
    li.addEventListener("click", () => select(d.device_id));
    li.addEventListener("keydown", (e) => { if (e.key === "Enter") select(d.device_id); });
    ul.append(li);
  }
}

// ---------- selection and data ----------

async function select(id) {
  state.selected = id;
  state.live = true;
  $("when").value = "live";
  renderDevices();
  await loadWindow();
  renderDetail();
  loadSessions(id);
}

// Recording sessions with their report (PDF) and the mother's page link (docs/home.md).
async function loadSessions(id) {
  const d = state.devices.get(id);
  if (!d || d.device_type !== "fetal_heart") return;
  const s = await api(`/api/devices/${encodeURIComponent(id)}/sessions`);
  if (id !== state.selected) return;
  const link = new URL(s.mother_link, location.href).href;
  $("mother-link").textContent = link;
  $("mother-link").href = link;
  $("session-list").replaceChildren(...s.sessions.map((x) => el("li", { class: `session ${x.status}`, "data-session": x.session_id },
    `${x.start ? new Date(x.start).toLocaleString() : "due " + new Date(x.due).toLocaleString()} · ${x.status} · ` +
    `${x.recorded_min} min, ${x.good_signal_min} min with a fetal rate · ${x.delivered ? "delivered" : "not yet delivered"} `,
    x.report_url ? el("a", { class: "report", href: x.report_url, target: "_blank", text: "report (PDF)" }) : null)));
}

function visibleSeconds() {
  const w = $("strip").clientWidth || 900;
  return w / (PX_PER_CM * state.speed / 60);
}

async function loadWindow() {
  const id = state.selected;
  if (!id) return;
  const until = state.live ? Date.now() / 1000 : state.until;
  const span = state.live ? LIVE_KEEP_S : visibleSeconds();
  const w = await api(`/api/devices/${encodeURIComponent(id)}/window?since=${until - span}&until=${until}`);
  if (id !== state.selected) return;
  state.trace = { fhr: w.fhr, mhr: w.mhr, ctg: w.ctg, tcb: w.tcb };
}

function renderDetail() {
  const d = state.devices.get(state.selected);
  $("pick").hidden = !!d;
  $("fetal").hidden = !d || d.device_type !== "fetal_heart";
  $("jaundice").hidden = !d || d.device_type !== "jaundice";
  $("settings").hidden = !d;
  if (!d) return;
  fillSettings(d);
  if (d.device_type === "fetal_heart") renderFetal(d); else if (d.device_type === "jaundice") renderJaundice(d);
}

// ---------- fetal: current values, FIGO, CTG strip ----------

function lastValid(msgs, key) {
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

function renderFetal(d) {
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
  if (ctg) {
    cls.textContent = ctg.figo_class; cls.className = `figo-class ${ctg.figo_class}`;
    const base = ctg.baseline_bpm == null ? "baseline —" : `baseline ${Math.round(ctg.baseline_bpm)} bpm`;
    const vari = ctg.variability_bpm == null ? "" : `, variability ${ctg.variability_bpm} bpm`;
    reasons.append(el("li", { text: `${base}${vari} (${Math.round(ctg.window_s / 60)} min to ${hhmm(t(ctg.t))})` }));
    for (const r of ctg.reasons || []) reasons.append(el("li", { text: r }));
  } else {
    cls.textContent = "not yet"; cls.className = "figo-class indeterminate";
    reasons.append(el("li", { text: "needs at least 1 minute of trace; updated every minute" }));
  }
  drawStrip();
}

function drawStrip() {
  const c = $("strip");
  const w = c.clientWidth, h = 360, dpr = window.devicePixelRatio || 1;
  c.width = Math.round(w * dpr); c.height = Math.round(h * dpr);
  const g = c.getContext("2d");
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  const top = 18, left = 34, bottom = 22;
  const pxPerBpm = PX_PER_CM / BPM_PER_CM;
  const plotH = (BPM_MAX - BPM_MIN) * pxPerBpm; // 8 cm
  const pxPerS = PX_PER_CM * state.speed / 60;
  const right = w - 4;
  const end = state.live ? Date.now() / 1000 : state.until;
  const start = end - (right - left) / pxPerS;
  const x = (s) => left + (s - start) * pxPerS;
  const y = (bpm) => top + (BPM_MAX - bpm) * pxPerBpm;

  g.fillStyle = "#fffdf7"; g.fillRect(0, 0, w, h);
  g.fillStyle = "#d9efdc"; g.fillRect(left, y(160), right - left, y(110) - y(160));
  // grid: 10 bpm lines, bold every 30 bpm; vertical every cm, bold every minute (3 cm/min) or 10 min (1 cm/min)
  g.lineWidth = 1;
  for (let b = BPM_MIN; b <= BPM_MAX; b += 10) {
    g.strokeStyle = (b % 30 === 0) ? "#e2a3a3" : "#f3d3d3";
    g.beginPath(); g.moveTo(left, y(b) + 0.5); g.lineTo(right, y(b) + 0.5); g.stroke();
  }
  g.fillStyle = "#7a4a4a"; g.font = "11px system-ui, sans-serif"; g.textAlign = "right"; g.textBaseline = "middle";
  for (let b = 60; b <= BPM_MAX; b += 30) g.fillText(String(b), left - 4, y(b));
  const minor = 60 / state.speed; // seconds per cm
  const major = state.speed === 1 ? 600 : 60;
  g.textAlign = "center"; g.textBaseline = "top";
  for (let s = Math.ceil(start / minor) * minor; s <= end; s += minor) {
    const isMajor = Math.abs(s / major - Math.round(s / major)) < 1e-6;
    g.strokeStyle = isMajor ? "#d08a8a" : "#f3d3d3";
    g.beginPath(); g.moveTo(Math.round(x(s)) + 0.5, top); g.lineTo(Math.round(x(s)) + 0.5, top + plotH); g.stroke();
    if (isMajor) { g.fillStyle = "#5d6878"; g.fillText(hhmm(s), x(s), top + plotH + 4); }
  }
  // CTG baseline and events from the latest findings that fall in view
  for (const ctg of state.trace.ctg) {
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
  const lastCtg = state.trace.ctg[state.trace.ctg.length - 1];
  if (lastCtg && lastCtg.baseline_bpm != null && t(lastCtg.window_start) != null) {
    g.strokeStyle = "#5d6878"; g.setLineDash([6, 4]);
    g.beginPath(); g.moveTo(Math.max(left, x(t(lastCtg.window_start))), y(lastCtg.baseline_bpm));
    g.lineTo(Math.min(right, x(t(lastCtg.window_start) + lastCtg.window_s)), y(lastCtg.baseline_bpm)); g.stroke();
    g.setLineDash([]);
  }
  g.save(); g.beginPath(); g.rect(left, top, right - left, plotH); g.clip();
  const drawn = drawTrace(g, state.trace.mhr, "mhr_bpm", x, y, "#a23b72", 1.3, start);
  const points = drawTrace(g, state.trace.fhr, "fhr_bpm", x, y, "#111", 1.6, start);
  g.restore();
  g.strokeStyle = "#c99"; g.strokeRect(left + 0.5, top + 0.5, right - left - 1, plotH);
  c.dataset.points = String(points);
  c.dataset.maternalPoints = String(drawn);
  c.dataset.speed = String(state.speed);
  if (points === 0) {
    g.fillStyle = "#5d6878"; g.font = "14px system-ui, sans-serif"; g.textAlign = "center"; g.textBaseline = "middle";
    g.fillText(state.live ? "waiting for fetal heart rate…" : "no trace in this period", (left + right) / 2, top + plotH / 2);
  }
}

// Points are joined only when they are consecutive (same boot, next sequence number): a null
// point or a missing message lifts the pen. Returns the number of points drawn.
function drawTrace(g, msgs, key, x, y, colour, width, start) {
  g.strokeStyle = colour; g.lineWidth = width; g.lineJoin = "round";
  g.beginPath();
  let n = 0, prev = null;
  for (const m of msgs) {
    const t0 = t(m.t_start);
    const vals = m[key];
    for (let i = 0; i < vals.length; i++) {
      const seq = m.seq + i, v = vals[i];
      const ts = t0 + i * m.interval_s;
      if (v == null || v < BPM_MIN - 20 || ts < start - 1) { prev = null; continue; }
      const cont = prev && prev.boot === m.boot && prev.seq === seq - 1;
      if (cont) g.lineTo(x(ts), y(v)); else { g.moveTo(x(ts), y(v)); g.lineTo(x(ts) + 0.8, y(v)); }
      prev = { boot: m.boot, seq };
      n++;
    }
  }
  g.stroke();
  return n;
}

// ---------- jaundice: readings on the nomogram ----------

async function nomogramFor(d) {
  const s = d.settings || {};
  if (s.ga_weeks == null || !s.birth_time) return null;
  const key = `${s.ga_weeks}|${!!s.risk_factors}`;
  if (state.nomoKey !== key) {
    state.nomo = await api(`/api/nomogram?ga=${s.ga_weeks}&risk=${!!s.risk_factors}`);
    state.nomoKey = key;
  }
  return state.nomo;
}

async function renderJaundice(d) {
  $("tcb-title").textContent = deviceName(d);
  const s = d.settings || {};
  $("tcb-sub").textContent = `Jaundice meter ${d.device_id} · ${d.link}` +
    (s.ga_weeks ? ` · ${s.ga_weeks} weeks` : "") + (s.birth_time ? ` · born ${new Date(s.birth_time).toLocaleString()}` : "") +
    (s.risk_factors ? " · with neurotoxicity risk factors" : "");
  const readings = state.trace.tcb;
  const latest = readings[readings.length - 1];
  const last = [...readings].reverse().find((r) => r.tcb_mg_dl != null);
  const advice = $("tcb-advice");
  advice.replaceChildren(); advice.className = "advice";
  if (!last) {
    $("tcb-now").textContent = "—"; $("tcb-now").className = "now-value nodata";
    $("tcb-note").textContent = latest ? `${hhmm(t(latest.t))}: not a reading (${latest.flag}); measure again` : "no reading yet";
  } else {
    $("tcb-now").className = "now-value";
    $("tcb-now").replaceChildren(last.tcb_mg_dl.toFixed(1), el("small", { text: " mg/dL" }));
    $("tcb-note").textContent = `${hhmm(t(last.t))} (${ago(t(last.t))}) · ${Math.round(last.tcb_umol_l)} µmol/L · 95% ${last.ci_low_mg_dl.toFixed(1)}–${last.ci_high_mg_dl.toFixed(1)}` +
      (latest !== last ? ` · latest press ${hhmm(t(latest.t))} was not a reading (${latest.flag})` : "");
    const a = last.assessment;
    if (a) {
      if (a.above_phototherapy || a.escalation_of_care) advice.classList.add("urgent");
      advice.append(el("ul", {}, ...a.advice.map((x) => el("li", { text: x }))));
    }
  }
  $("baby-missing").hidden = !!(s.ga_weeks && s.birth_time);
  const rows = $("tcb-rows");
  rows.replaceChildren();
  for (const r of [...readings].reverse()) {
    const a = r.assessment;
    rows.append(el("tr", {},
      el("td", { text: hhmm(t(r.t)) }),
      el("td", { text: a ? `${a.age_hours.toFixed(0)} h` : "—" }),
      r.tcb_mg_dl == null ? el("td", { class: "flagged", text: `not a reading: ${r.flag}` })
        : el("td", { text: `${r.tcb_mg_dl.toFixed(1)} mg/dL (${Math.round(r.tcb_umol_l)} µmol/L)` }),
      el("td", { text: a ? ZONE_TEXT[a.bhutani_zone] || a.bhutani_zone : "—" }),
      el("td", { text: a ? `${a.margin_to_phototherapy_mg_dl.toFixed(1)} mg/dL` : "—" }),
      el("td", { text: a ? a.advice.join("; ") : (r.tcb_mg_dl == null ? "measure again" : "set birth time and gestation") })));
  }
  const nomo = await nomogramFor(d).catch(() => null);
  drawNomogram(nomo, readings, s);
}

function drawNomogram(nomo, readings, s) {
  const c = $("nomogram");
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

// ---------- settings ----------

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function fillSettings(d) {
  const f = $("settings");
  if (f.dataset.device === d.device_id && f.contains(document.activeElement)) return; // being edited
  f.dataset.device = d.device_id;
  const s = d.settings || {};
  f.label.value = s.label || "";
  f.birth_time.value = toLocalInput(s.birth_time);
  f.ga_weeks.value = s.ga_weeks ?? "";
  f.risk_factors.checked = !!s.risk_factors;
  f.querySelector(".baby-only").hidden = d.device_type !== "jaundice";
  for (const e of f.querySelectorAll(".baby-only input")) e.disabled = d.device_type !== "jaundice";
  const hs = [];
  if (s.risk_colour) hs.push(`pregnancy risk colour: ${s.risk_colour}`);
  if (s.measurement_interval_min) hs.push(`measure every ${s.measurement_interval_min} min`);
  $("hospital-settings").textContent = hs.length ? `Set by the hospital: ${hs.join(", ")}` : "";
}

async function saveSettings(ev) {
  ev.preventDefault();
  const f = $("settings"), id = state.selected, d = state.devices.get(id);
  const body = { label: f.label.value.trim() };
  if (d.device_type === "jaundice") {
    body.birth_time = f.birth_time.value ? new Date(f.birth_time.value).toISOString() : null;
    body.ga_weeks = f.ga_weeks.value ? Number(f.ga_weeks.value) : null;
    body.risk_factors = f.risk_factors.checked;
  }
  const msg = $("settings-msg");
  try {
    d.settings = await api(`/api/devices/${encodeURIComponent(id)}/settings`, { method: "POST", body: JSON.stringify(body) });
    msg.textContent = "Saved."; msg.className = "small";
    document.activeElement.blur();
    renderDevices(); renderDetail();
  } catch (e) { msg.textContent = e.message; msg.className = "small warn"; }
}

// ---------- alerts ----------

function renderAlerts() {
  const ul = $("alert-list");
  ul.replaceChildren();
  const list = [...state.alerts.values()].sort((a, b) =>
    (a.state === "raised" && !a.acked_by ? 0 : 1) - (b.state === "raised" && !b.acked_by ? 0 : 1) ||
    t(b.raised_at) - t(a.raised_at));
  $("no-alerts").hidden = list.length > 0;
  for (const a of list) {
    const d = state.devices.get(a.device_id);
    const li = el("li", { class: `alert ${a.severity} ${a.state} ${a.acked_by ? "acked" : "unacked"}`, "data-alert": a.id },
      el("div", { class: "what", text: alertText(a.alert) }),
      el("div", { text: `${d ? deviceName(d) : ""} (${a.device_id}): ${a.detail}` }),
      el("div", { class: "when", text: `raised ${hhmm(t(a.raised_at))}` + (a.cleared_at ? `, cleared ${hhmm(t(a.cleared_at))}` : ", active") + ` · ${a.severity}` }));
    if (a.acked_by) li.append(el("div", { class: "acked", text: `acknowledged by ${a.acked_by} at ${hhmm(t(a.acked_at))}` }));
    else {
      const b = el("button", { class: "ack", type: "button", text: "Acknowledge" });
      b.addEventListener("click", async () => {
        b.disabled = true;
        try { const rec = await api(`/api/alerts/${encodeURIComponent(a.id)}/ack`, { method: "POST", body: "{}" }); state.alerts.set(rec.id, rec); renderAlerts(); renderDevices(); }
        catch (e) { b.disabled = false; b.textContent = `Retry (${e.message})`; }
      });
      li.append(b);
    }
    li.addEventListener("click", (e) => { if (e.target.tagName !== "BUTTON") select(a.device_id); });
    ul.append(li);
  }
}

// ---------- live events ----------

let redrawQueued = false;
function queueRedraw() {
  if (redrawQueued) return;
  redrawQueued = true;
  requestAnimationFrame(() => { redrawQueued = false; renderDetail(); });
}

function onEvent(ev) {
  const id = ev.device_id;
  if (ev.type === "status") {
    const cur = state.devices.get(id) || { device_id: id, settings: {} };
    const st = ev.data;
    Object.assign(cur, { status: st, device_type: st.device_type, link: st.link, link_reason: st.link_reason,
      battery_pct: st.battery_pct, battery_low: st.battery_low, signal_quality: st.signal_quality ?? null,
      on_skin: st.on_skin, last_seen: st.last_seen });
    state.devices.set(id, cur);
    renderDevices();
    if (id === state.selected) queueRedraw();
    return;
  }
  if (ev.type === "alert") { state.alerts.set(ev.data.id, ev.data); renderAlerts(); renderDevices(); return; }
  const d = state.devices.get(id);
  if (d && ev.type === "fhr") {
    const last = lastValid([ev.data], "fhr_bpm");
    if (last) d.last_fhr = { t: new Date(last.t * 1000).toISOString(), bpm: last.bpm };
  }
  if (d && ev.type === "tcb") d.last_tcb = ev.data;
  if (id === state.selected && state.live) {
    const q = state.trace[ev.type];
    if (q) {
      q.push(ev.data);
      const cutoff = Date.now() / 1000 - LIVE_KEEP_S;
      while (q.length && t(q[0].t_start || q[0].t) < cutoff) q.shift();
      queueRedraw();
    }
  }
  if (ev.type === "tcb") renderDevices();
}

function connect() {
  const es = new EventSource("/api/events");
  es.onopen = async () => {
    $("live-state").textContent = "live"; $("live-state").className = "live-state on";
    await refresh(); // anything missed while disconnected
  };
  es.onmessage = (m) => onEvent(JSON.parse(m.data));
  es.addEventListener("logout", () => { location.href = "/login"; });
  es.onerror = () => {
    $("live-state").textContent = "not live: reconnecting"; $("live-state").className = "live-state off";
  };
}

async function refresh() {
  const [devices, alerts] = await Promise.all([api("/api/devices"), api("/api/alerts")]);
  state.devices = new Map(devices.map((d) => [d.device_id, d]));
  state.alerts = new Map(alerts.map((a) => [a.id, a]));
  if (!state.selected && devices.length) state.selected = devices[0].device_id;
  renderDevices(); renderAlerts();
  if (state.selected) { await loadWindow(); renderDetail(); }
}

function fillWhen() {
  const s = $("when");
  s.replaceChildren(el("option", { value: "live", text: "live" }));
  for (let h = 1; h <= 24; h++) s.append(el("option", { value: String(h), text: `${h} h ago` }));
}

async function main() {
  fillWhen();
  state.me = await api("/api/me");
  $("user").textContent = state.me.user;
  $("gateway-id").textContent = `gateway ${state.me.gateway_id}`;
  $("speed").addEventListener("change", (e) => { state.speed = Number(e.target.value); loadWindow().then(renderDetail); });
  $("when").addEventListener("change", async (e) => {
    state.live = e.target.value === "live";
    state.until = state.live ? null : Date.now() / 1000 - Number(e.target.value) * 3600 + visibleSeconds() / 2;
    await loadWindow(); renderDetail();
  });
  $("settings").addEventListener("submit", saveSettings);
  window.addEventListener("resize", queueRedraw);
  setInterval(() => { if (state.live) queueRedraw(); renderDevices(); }, 5000); // ages, staleness, scrolling
  await refresh();
  connect();
}

main();

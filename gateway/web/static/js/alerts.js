// Alerts: the list (active, unacknowledged alerts first; an active alert asks to be
// acknowledged, a cleared one is shown as cleared and asks for nothing), the banner at the top
// of every screen with the count still to acknowledge, the same count in the tab's title, a
// spoken announcement of each new alert, and a tone while a high alert waits.

import { ackAlert } from "./api.js";
import { renderDevices, deviceName } from "./devices.js";
import { $, el } from "./dom.js";
import { t } from "./format.js";
import { addStrings, clock, lang, tr } from "./i18n.js";
import { state } from "./state.js";

// A label for every alert kind the gateway raises (tests/test_contract.py checks this table
// against the gateway's ALERT_KINDS and docs/mqtt.md; ALERT_TEXT_ZH must name the same kinds).
const ALERT_TEXT = {
  signal_loss: "Signal loss", maternal_coincidence: "Maternal pulse recorded",
  maternal_unmonitored: "Mother's pulse not monitored: FHR withheld, check finger sensor",
  bradycardia: "Fetal bradycardia", tachycardia: "Fetal tachycardia",
  ctg_pathological: "CTG pathological", sample_rate: "Monitor fault: wrong sample rate",
  tcb_above_exchange: "TcB at/above exchange line", tcb_escalation_of_care: "TcB near exchange line",
  tcb_above_phototherapy: "TcB above phototherapy line",
  serum_bilirubin_advised: "Serum bilirubin advised", tcb_rapid_rise: "TcB rising fast",
  device_unverified: "Monitor not verified: paired elsewhere?",
};
const ALERT_TEXT_ZH = {
  signal_loss: "信号丢失", maternal_coincidence: "记录到的是母体脉搏",
  maternal_unmonitored: "未在监测母亲脉搏：胎心率暂不显示，请检查手指传感器",
  bradycardia: "胎儿心动过缓", tachycardia: "胎儿心动过速",
  ctg_pathological: "CTG 病理型", sample_rate: "监护仪故障：采样率错误",
  tcb_above_exchange: "经皮胆红素达到或超过换血线", tcb_escalation_of_care: "经皮胆红素接近换血线",
  tcb_above_phototherapy: "经皮胆红素超过光疗线",
  serum_bilirubin_advised: "建议测血清胆红素", tcb_rapid_rise: "经皮胆红素上升过快",
  device_unverified: "监护仪未通过验证：是否已在别处配对？",
};
export const alertText = (kind) => (lang() === "zh" ? ALERT_TEXT_ZH : ALERT_TEXT)[kind] ||
  kind.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

addStrings({
  en: {
    severity_high: "high", severity_medium: "medium", severity_low: "low",
    raised_at: (at) => `raised ${at}`, cleared_at: (at) => `, cleared ${at}`, active: ", active",
    acked_by: (who, at) => `acknowledged by ${who} at ${at}`, acknowledge: "Acknowledge",
    retry: (msg) => `Retry (${msg})`,
    to_ack: (n) => (n ? `${n} alert${n > 1 ? "s" : ""} to acknowledge` : "No alerts waiting"),
    newest: (what, who, at) => `newest: ${what}, ${who} (${at})`,
    show: "Show alerts", open_device: (who) => `Show ${who}`, mute: "Silence tone 2 min", unmute: "Sound tone again",
    tone_blocked: "tone off until you touch the page", tone_muted: (at) => `tone silenced until ${at}`,
    tone_on: "tone on", new_alert: (sev, what, who) => `New ${sev} alert: ${what}, ${who}`,
  },
  zh: {
    severity_high: "高", severity_medium: "中", severity_low: "低",
    raised_at: (at) => `${at} 发出`, cleared_at: (at) => `，${at} 解除`, active: "，仍在持续",
    acked_by: (who, at) => `${who} 于 ${at} 确认`, acknowledge: "确认",
    retry: (msg) => `重试（${msg}）`,
    to_ack: (n) => (n ? `${n} 条警报待确认` : "没有待确认的警报"),
    newest: (what, who, at) => `最新：${what}，${who}（${at}）`,
    show: "查看警报", open_device: (who) => `查看 ${who}`, mute: "静音 2 分钟", unmute: "恢复提示音",
    tone_blocked: "触碰页面后才能发出提示音", tone_muted: (at) => `提示音已静音至 ${at}`,
    tone_on: "提示音已开启", new_alert: (sev, what, who) => `新的${sev}级警报：${what}，${who}`,
  },
});

const waiting = (a) => a.state === "raised" && !a.acked_by; // asks for acknowledgement
const severity = (s) => tr(`severity_${s}`);
const where = (a) => { const d = state.devices.get(a.device_id); return d ? deviceName(d) : a.device_id; };

// Each item is an li.alert with data-alert; choosing its device is wired by the page (app.js).
// Items are kept and redrawn only when their alert changed: a focused button survives.
export function renderAlerts() {
  const ul = $("alert-list");
  const list = [...state.alerts.values()].sort((a, b) =>
    (waiting(a) ? 0 : 1) - (waiting(b) ? 0 : 1) || t(b.raised_at) - t(a.raised_at));
  $("no-alerts").hidden = list.length > 0;
  const kept = new Map([...ul.children].map((li) => [li.dataset.alert, li]));
  list.forEach((a, i) => {
    let li = kept.get(a.id);
    kept.delete(a.id);
    const key = [lang(), a.state, a.acked_by, a.cleared_at, a.detail, a.severity, where(a)].join("|");
    if (!li) li = el("li", { "data-alert": a.id });
    if (li.dataset.key !== key) fillAlert(li, a, key);
    if (ul.children[i] !== li) ul.insertBefore(li, ul.children[i] || null);
  });
  for (const li of kept.values()) li.remove();
  renderBanner();
}

function fillAlert(li, a, key) {
  // the item is drawn anew: a button that had the focus gets it back
  const focused = li.contains(document.activeElement) ? document.activeElement.classList[document.activeElement.classList.length - 1] : null;
  li.dataset.key = key;
  li.className = `alert ${a.severity} ${a.state} ${a.acked_by ? "acked" : "unacked"}`;
  const when = tr("raised_at", clock(t(a.raised_at))) +
    (a.cleared_at ? tr("cleared_at", clock(t(a.cleared_at))) : tr("active")) + ` · ${severity(a.severity)}`;
  li.replaceChildren(
    el("div", { class: "what", text: alertText(a.alert) }),
    el("div", { text: `${where(a)} (${a.device_id}): ${a.detail}` }),
    el("div", { class: "when", text: when }),
    el("button", { class: "link open", type: "button", text: tr("open_device", where(a)) }));
  if (a.acked_by) li.append(el("div", { class: "acked", text: tr("acked_by", a.acked_by, clock(t(a.acked_at))) }));
  else if (a.state === "raised") {
    const b = el("button", { class: "ack", type: "button", text: tr("acknowledge") });
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        const rec = await ackAlert(a.id);
        state.alerts.set(rec.id, rec);
        const next = li.nextElementSibling && li.nextElementSibling.querySelector("button.ack");
        renderAlerts(); renderDevices();
        if (next) next.focus(); // keyboard users go on to the next alert
      } catch (e) { b.disabled = false; b.textContent = tr("retry", e.message); }
    });
    li.append(b);
  }
  const again = focused && li.querySelector(`button.${focused}`);
  if (again) again.focus();
}

// The banner, the title and the tone follow the alerts still to acknowledge.
function renderBanner() {
  const open = [...state.alerts.values()].filter(waiting).sort((a, b) => t(b.raised_at) - t(a.raised_at));
  const banner = $("alert-banner");
  const high = open.some((a) => a.severity === "high");
  banner.className = `alert-banner ${open.length ? (high ? "high" : "medium") : "none"}`;
  banner.dataset.count = String(open.length);
  $("alert-count").textContent = tr("to_ack", open.length);
  $("alert-newest").textContent = open.length ? tr("newest", alertText(open[0].alert), where(open[0]), clock(t(open[0].raised_at))) : "";
  $("alert-show").hidden = !open.length;
  $("alert-show").textContent = tr("show");
  document.title = (open.length ? `(${open.length}) ` : "") + tr("page_title");
  announce(open);
  tone.update(open.filter((a) => a.severity === "high"));
}

// New alerts are read out once (role="alert"); the first drawing announces nothing.
const announced = new Set();
let firstDrawing = true;
function announce(open) {
  const fresh = open.filter((a) => !announced.has(a.id));
  for (const a of open) announced.add(a.id);
  if (firstDrawing) { firstDrawing = false; return; }
  if (fresh.length) $("alert-announce").textContent = fresh.map((a) => tr("new_alert", severity(a.severity), alertText(a.alert), where(a))).join(". ");
}

// The tone: a burst of 3 + 2 short beeps (patterned after the high-priority signal of
// IEC 60601-1-8), every REPEAT_S while a high alert waits for acknowledgement. Silencing
// lasts SILENCE_S and ends early when another high alert is raised. A browser may allow sound
// only after the user touched the page (a kiosk tablet may allow it at once): until then the
// banner says so, and the first touch or key starts the sound.
const REPEAT_S = 10, SILENCE_S = 120, BEEP_HZ = 880, BEEP_S = 0.12, GAP_S = 0.08, PAUSE_S = 0.3;
const tone = {
  ctx: null, timer: null, mutedUntil: 0, heard: new Set(), high: [],
  unlock() {
    if (this.ctx && this.ctx.state === "running") return;
    try {
      this.ctx = this.ctx || new AudioContext();
      this.ctx.resume().then(() => this.update(this.high), () => {});
    } catch { this.ctx = null; } // no Web Audio in this browser: the banner still shows
  },
  update(high) {
    this.high = high;
    if (high.some((a) => !this.heard.has(a.id))) this.mutedUntil = 0; // a new high alert
    for (const a of high) this.heard.add(a.id);
    const now = Date.now() / 1000, muted = now < this.mutedUntil;
    const running = !!this.ctx && this.ctx.state === "running";
    const mode = !high.length ? "none" : muted ? "muted" : running ? "sounding" : "blocked";
    $("alert-banner").dataset.tone = mode;
    const btn = $("tone-mute");
    btn.hidden = !high.length;
    btn.setAttribute("aria-pressed", String(muted));
    btn.textContent = tr(muted ? "unmute" : "mute");
    $("tone-state").textContent = mode === "blocked" ? tr("tone_blocked") : mode === "muted" ? tr("tone_muted", clock(this.mutedUntil)) : "";
    if (mode === "sounding" && !this.timer) { this.beep(); this.timer = setInterval(() => this.beep(), REPEAT_S * 1000); }
    if (mode !== "sounding" && this.timer) { clearInterval(this.timer); this.timer = null; }
  },
  toggleMute() {
    this.mutedUntil = Date.now() / 1000 < this.mutedUntil ? 0 : Date.now() / 1000 + SILENCE_S;
    if (this.mutedUntil) setTimeout(() => this.update(this.high), SILENCE_S * 1000 + 100);
    this.update(this.high);
  },
  beep() {
    const c = this.ctx;
    if (!c || c.state !== "running") return;
    let at = c.currentTime + 0.02;
    for (let i = 0; i < 5; i++) {
      const osc = c.createOscillator(), gain = c.createGain();
      osc.frequency.value = BEEP_HZ;
      gain.gain.setValueAtTime(0.0001, at);
      gain.gain.exponentialRampToValueAtTime(0.3, at + 0.01);
      gain.gain.setValueAtTime(0.3, at + BEEP_S - 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, at + BEEP_S);
      osc.connect(gain).connect(c.destination);
      osc.start(at); osc.stop(at + BEEP_S);
      at += BEEP_S + (i === 2 ? PAUSE_S : GAP_S);
    }
  },
};

// The banner's controls, and the first touch or key that lets the page make sound.
export function wireAlertBanner() {
  $("tone-mute").addEventListener("click", () => tone.toggleMute());
  $("alert-show").addEventListener("click", () => {
    const first = document.querySelector("#alert-list li.unacked.raised button.ack");
    $("alerts").scrollIntoView({ block: "start" });
    (first || $("alerts")).focus();
  });
  const unlock = () => tone.unlock();
  document.addEventListener("pointerdown", unlock, true);
  document.addEventListener("keydown", unlock, true);
  unlock(); // allowed at once where the browser lets the page sound without a touch
}

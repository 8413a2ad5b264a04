// The alert list: active, unacknowledged alerts first. An active alert asks to be
// acknowledged (its button); a cleared one is shown as cleared and asks for nothing.

import { ackAlert } from "./api.js";
import { renderDevices, deviceName } from "./devices.js";
import { $, el } from "./dom.js";
import { hhmm, t } from "./format.js";
import { state } from "./state.js";

// A label for every alert kind the gateway raises (tests/test_contract.py checks this table
// against the gateway's ALERT_KINDS and docs/mqtt.md).
const ALERT_TEXT = {
  signal_loss: "Signal loss", maternal_coincidence: "Maternal pulse recorded",
  bradycardia: "Fetal bradycardia", tachycardia: "Fetal tachycardia",
  ctg_pathological: "CTG pathological", sample_rate: "Monitor fault: wrong sample rate",
  tcb_above_exchange: "TcB at/above exchange line", tcb_escalation_of_care: "TcB near exchange line",
  tcb_above_phototherapy: "TcB above phototherapy line",
  serum_bilirubin_advised: "Serum bilirubin advised", tcb_rapid_rise: "TcB rising fast",
  device_unverified: "Monitor not verified: paired elsewhere?",
};
const alertText = (kind) => ALERT_TEXT[kind] || kind.replace(/_/g, " ").replace(/^./, (c) => c.toUpperCase());

// Each item is an li.alert with data-alert; choosing its device is wired by the page (app.js).
export function renderAlerts() {
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
    else if (a.state === "raised") {
      const b = el("button", { class: "ack", type: "button", text: "Acknowledge" });
      b.addEventListener("click", async () => {
        b.disabled = true;
        try { const rec = await ackAlert(a.id); state.alerts.set(rec.id, rec); renderAlerts(); renderDevices(); }
        catch (e) { b.disabled = false; b.textContent = `Retry (${e.message})`; }
      });
      li.append(b);
    }
    ul.append(li);
  }
}

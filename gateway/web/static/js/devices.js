// The device list: each device's label, link, last reading, battery, signal and open alerts.

import { $, el } from "./dom.js";
import { ago, t } from "./format.js";
import { state } from "./state.js";

export function deviceName(d) {
  return (d.settings && d.settings.label) || `${d.device_id} (no bed assigned)`;
}

// Flags that say the meter itself must not be used (docs/jaundice.md, "Self-check").
const FLAG_TEXT = {
  needs_calibration: "meter needs calibration: no readings",
  self_check_needed: "restart the meter in its holder (start-up check)",
  check_phantom: "weekly check on the check phantom",
};

// The jaundice meter's weekly check on its check phantom, from the device status.
function checkBadge(d) {
  const st = d.status;
  if (d.device_type !== "jaundice" || !st) return null;
  if (st.tcb_check && st.tcb_check.passed === false) return el("span", { class: "badge alert", text: "weekly check failed" });
  return st.tcb_check_due ? el("span", { class: "badge low", text: "weekly check due" }) : null;
}

function lastReading(d) {
  if (d.device_type === "fetal_heart") {
    const f = d.last_fhr;
    if (!f) return el("span", { class: "stale", text: "no FHR yet" });
    const at = t(f.t);
    return el("span", {}, `FHR ${Math.round(f.bpm)} bpm `, el("span", { class: "stale", text: ago(at) }));
  }
  const r = d.last_tcb;
  if (!r) return el("span", { class: "stale", text: "no TcB yet" });
  if (r.tcb_mg_dl == null) return el("span", { class: "stale", text: FLAG_TEXT[r.flag] || `not a reading: ${r.flag}` });
  return el("span", {}, `TcB ${r.tcb_mg_dl.toFixed(1)} mg/dL `, el("span", { class: "stale", text: ago(t(r.t)) }));
}

// Each item is an li.dev with data-device; choosing one is wired by the page (app.js).
export function renderDevices() {
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
        checkBadge(d),
        unacked ? el("span", { class: "badge alert", text: `${unacked} alert${unacked > 1 ? "s" : ""}` }) : null,
        colour ? el("span", { text: `risk ${colour}` }) : null),
      d.link !== "connected" && d.last_seen ? el("div", { class: "meta", text: `last seen ${ago(t(d.last_seen))}${d.link_reason ? " (" + d.link_reason + ")" : ""}` }) : null);
    ul.append(li);
  }
}

// The assignment form: bed or visit label, for a fetal monitor the CTG analysis that heads
// its findings (antenatal unless set), for a jaundice meter the baby's birth time, gestation
// and risk factors (kept on the gateway).

import { postSettings } from "./api.js";
import { $ } from "./dom.js";
import { tr } from "./i18n.js";
import { state } from "./state.js";

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

export function fillSettings(d) {
  const f = $("settings");
  if (f.dataset.device === d.device_id && f.contains(document.activeElement)) return; // being edited
  f.dataset.device = d.device_id;
  const s = d.settings || {};
  f.label.value = s.label || "";
  f.birth_time.value = toLocalInput(s.birth_time);
  f.ga_weeks.value = s.ga_weeks ?? "";
  f.risk_factors.checked = !!s.risk_factors;
  f.ctg_mode.value = s.ctg_mode || "antenatal";
  f.querySelector(".fetal-only").hidden = d.device_type !== "fetal_heart";
  f.ctg_mode.disabled = d.device_type !== "fetal_heart";
  f.querySelector(".baby-only").hidden = d.device_type !== "jaundice";
  for (const e of f.querySelectorAll(".baby-only input")) e.disabled = d.device_type !== "jaundice";
  const hs = [];
  if (s.risk_colour) hs.push(tr("risk_colour_setting", tr(`colour_${s.risk_colour}`)));
  if (s.measurement_interval_min) hs.push(tr("measure_every", s.measurement_interval_min));
  $("hospital-settings").textContent = hs.length ? tr("set_by_hospital", hs.join(", ")) : "";
}

// The form's submit handler; onSaved redraws what shows the settings.
export async function saveSettings(ev, onSaved) {
  ev.preventDefault();
  const f = $("settings"), id = state.selected, d = state.devices.get(id);
  const body = { label: f.label.value.trim() };
  if (d.device_type === "fetal_heart") body.ctg_mode = f.ctg_mode.value;
  if (d.device_type === "jaundice") {
    body.birth_time = f.birth_time.value ? new Date(f.birth_time.value).toISOString() : null;
    body.ga_weeks = f.ga_weeks.value ? Number(f.ga_weeks.value) : null;
    body.risk_factors = f.risk_factors.checked;
  }
  const msg = $("settings-msg");
  try {
    d.settings = await postSettings(id, body);
    msg.textContent = tr("saved"); msg.className = "small";
    document.activeElement.blur();
    onSaved();
  } catch (e) { msg.textContent = e.message; msg.className = "small warn"; }
}

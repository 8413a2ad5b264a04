// Times and amounts as the nurse view shows them. Times inside the page are seconds since the
// epoch; bilirubin amounts are mg/dL inside the page (as the gateway computes and publishes
// them) and shown in the ward's unit, the gateway's [web] bilirubin_unit (/api/me).

import { addStrings, locale, tr } from "./i18n.js";
import { state } from "./state.js";

addStrings({
  en: { day_tomorrow: (at) => `tomorrow ${at}`, day_yesterday: (at) => `yesterday ${at}` },
  zh: { day_tomorrow: (at) => `明天 ${at}`, day_yesterday: (at) => `昨天 ${at}` },
});

export const t = (iso) => (iso ? Date.parse(iso) / 1000 : null);
// Clock times in the page's language, 24-hour.
export const hhmm = (sec) => new Date(sec * 1000).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", hour12: false });
export const hhmmss = (sec) => new Date(sec * 1000).toLocaleTimeString(locale(), { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });

// A time a nurse acts on: "14:10" today, "tomorrow 14:10", else "Tue 3 Dec 14:10".
export function when(sec) {
  const d = new Date(sec * 1000), today = new Date();
  const day = (x) => new Date(x.getFullYear(), x.getMonth(), x.getDate()).getTime();
  const days = Math.round((day(d) - day(today)) / 86400000);
  if (days === 0) return hhmm(sec);
  if (days === 1) return tr("day_tomorrow", hhmm(sec));
  if (days === -1) return tr("day_yesterday", hhmm(sec));
  return `${d.toLocaleDateString(locale(), { weekday: "short", day: "numeric", month: "short" })} ${hhmm(sec)}`;
}

const UNIT_SHOWN = { "mg/dL": "mg/dL", "umol/L": "µmol/L" };

// The ward's bilirubin unit: "mg/dL" or "umol/L".
export const biliUnit = () => (state.me && UNIT_SHOWN[state.me.bilirubin_unit] ? state.me.bilirubin_unit : "mg/dL");
export const biliUnitShown = () => UNIT_SHOWN[biliUnit()];
// An amount in mg/dL in the ward's unit (unrounded), with the gateway's factor.
export const toBiliUnit = (mg) => (biliUnit() === "umol/L" ? mg * state.me.umol_l_per_mg_dl : mg);
// The number as shown: mg/dL to 0.1, µmol/L to 1 (as dsp/bilirubin_units.py prints it).
export const biliNumber = (mg) => (biliUnit() === "umol/L" ? String(Math.round(toBiliUnit(mg))) : toBiliUnit(mg).toFixed(1));
export const bili = (mg) => `${biliNumber(mg)} ${biliUnitShown()}`;

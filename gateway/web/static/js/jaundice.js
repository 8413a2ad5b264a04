// A jaundice meter's detail: the last TcB with its advice, the readings table and the nomogram.

import { deviceName } from "./devices.js";
import { $, el } from "./dom.js";
import { ago, hhmm, t } from "./format.js";
import { drawNomogram, nomogramFor } from "./nomogram.js";
import { state } from "./state.js";

const ZONE_TEXT = { low: "low", low_intermediate: "low-intermediate",
  high_intermediate: "high-intermediate", high: "high", not_defined: "not defined (<12 h)" };

export async function renderJaundice(d) {
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
  drawNomogram($("nomogram"), nomo, readings, s);
}

// The gateway banner: what is wrong with the gateway's own link to the hospital
// (/api/gateway/warnings, gateway/web/gateway_warnings.py), such as a hospital system that
// refuses its messages or cannot be reached. Not a patient's alert: no tone, its own colour,
// read out politely (role="status"), and only when what it says changes.

import { api } from "./api.js";
import { $, el } from "./dom.js";
import { t, when } from "./format.js";
import { addStrings, tr } from "./i18n.js";

addStrings({
  en: {
    gw_banner: "Gateway",
    gw_rejects: (n, atLeast, since) => `The hospital's system is refusing this gateway's messages: ` +
      `${atLeast ? "at least " : ""}${n} message${n === 1 ? "" : "s"} since ${since}. ` +
      "They still show here but may be missing at the hospital. Call IT.",
    gw_unreachable: (n, since) => `The gateway cannot reach the hospital's system: ` +
      `${n} message${n === 1 ? "" : "s"} waiting since ${since}. ` +
      "They are kept on the gateway and sent when the link is back. Call IT if this lasts.",
    gw_delayed: (n, since) => `Messages to the hospital are delayed: ${n} waiting since ${since}. ` +
      "Call IT if this lasts.",
    gw_other: (code) => `Gateway warning: ${code}. Call IT.`,
  },
  zh: {
    gw_banner: "网关",
    gw_rejects: (n, atLeast, since) => `医院系统正在拒收本网关的消息：自 ${since} 起${atLeast ? "至少 " : ""}${n} 条。` +
      "这些读数仍在本页显示，但医院可能没有收到。请联系信息科（IT）。",
    gw_unreachable: (n, since) => `网关无法连接医院系统：自 ${since} 起有 ${n} 条消息等待发送。` +
      "消息保存在网关上，连接恢复后会发送。如持续，请联系信息科（IT）。",
    gw_delayed: (n, since) => `发往医院的消息延迟：自 ${since} 起有 ${n} 条等待发送。如持续，请联系信息科（IT）。`,
    gw_other: (code) => `网关警告：${code}。请联系信息科（IT）。`,
  },
});

let warnings = []; // the gateway's answer, as last fetched

// One warning as a sentence in the page's language; a code this page does not know is named.
function sentence(w) {
  const since = w.since ? when(t(w.since)) : "";
  if (w.code === "hospital_rejects_messages") return tr("gw_rejects", w.count, !!w.at_least, since);
  if (w.code === "messages_waiting") return tr(w.broker_connected ? "gw_delayed" : "gw_unreachable", w.count, since);
  return tr("gw_other", String(w.code));
}

// Fetched with the page's periodic refresh (app.js).
export async function refreshGatewayWarnings() {
  try {
    warnings = await api("/api/gateway/warnings");
  } catch {
    return; // the gateway is not reachable now: the live state in the header says so
  }
  renderGatewayBanner();
}

// The banner is always in the page (a live region must exist before what it announces) and
// is empty, taking no room, while there is nothing to say. It is rewritten only when its
// sentences change, so a screen reader reads each once.
export function renderGatewayBanner() {
  const box = $("gateway-banner");
  const lines = warnings.map(sentence);
  const key = lines.join("\n");
  if (box.dataset.shown === key) return;
  box.dataset.shown = key;
  box.dataset.count = String(lines.length);
  box.classList.toggle("on", lines.length > 0);
  if (!lines.length) { box.replaceChildren(); return; }
  box.replaceChildren(
    el("strong", { class: "gw-label", text: `${tr("gw_banner")}:` }),
    el("ul", {}, ...lines.map((s, i) => el("li", { text: s, "data-code": String(warnings[i].code) }))),
  );
}

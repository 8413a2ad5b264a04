// Live updates: server-sent events from /api/events (status, alerts, trace messages, TcB
// readings), applied to the page's state as they arrive.

import { renderAlerts } from "./alerts.js";
import { toLogin } from "./api.js";
import { renderDevices } from "./devices.js";
import { $ } from "./dom.js";
import { lastValid } from "./fetal.js";
import { t } from "./format.js";
import { tr } from "./i18n.js";
import { LIVE_KEEP_S, state } from "./state.js";
import { loadRejected, noteArrived } from "./view.js";

function onEvent(ev, redraw) {
  const id = ev.device_id;
  if (ev.type === "status") {
    const cur = state.devices.get(id) || { device_id: id, settings: {} };
    const st = ev.data;
    Object.assign(cur, { status: st, device_type: st.device_type, link: st.link, link_reason: st.link_reason,
      battery_pct: st.battery_pct, battery_low: st.battery_low, signal_quality: st.signal_quality ?? null,
      on_skin: st.on_skin, last_seen: st.last_seen });
    state.devices.set(id, cur);
    renderDevices();
    if (id === state.selected) redraw();
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
      noteArrived(ev.type, ev.data); // kept if a window being fetched now was read before it
      const cutoff = Date.now() / 1000 - LIVE_KEEP_S;
      while (q.length && t(q[0].t_start || q[0].t) < cutoff) q.shift();
      redraw();
      if (ev.type === "ctg") loadRejected().then(redraw, () => {}); // judged with the new minute
    }
  }
  if (ev.type === "tcb") renderDevices();
}

// Connects (the browser reconnects by itself); onOpen fetches what was missed while
// disconnected, redraw redraws the selected device's detail.
export function connect({ onOpen, redraw }) {
  const es = new EventSource("/api/events");
  const show = (key, on) => { $("live-state").dataset.state = key; $("live-state").textContent = tr(key); $("live-state").className = `live-state ${on ? "on" : "off"}`; };
  es.onopen = async () => {
    show("live", true);
    await onOpen(); // anything missed while disconnected
  };
  es.onmessage = (m) => onEvent(JSON.parse(m.data), redraw);
  es.addEventListener("logout", toLogin);
  // the gateway is stopping: the stream ends here and the browser tries again (retry: 2 s)
  es.addEventListener("closing", () => show("gateway_stopping", false));
  es.onerror = () => { if ($("live-state").dataset.state !== "gateway_stopping") show("not_live", false); };
}

// The connection's state again, in the page's language.
export function relabelLive() {
  const s = $("live-state").dataset.state || "connecting";
  $("live-state").textContent = tr(s);
}

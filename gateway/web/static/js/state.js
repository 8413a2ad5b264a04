// What the page holds: the devices and alerts the gateway published, the selected device's
// trace (with the FHR points the CTG analyses reject as artefact: "boot:seq" keys), and how
// the strip is shown (live or a past period, paper speed).

export const LIVE_KEEP_S = 45 * 60; // trace kept in the page while live

export const state = {
  devices: new Map(), selected: null, alerts: new Map(), me: null,
  trace: { fhr: [], mhr: [], ctg: [], tcb: [], movement: [], rejected: new Set() }, live: true, until: null,
  speed: 1,
};

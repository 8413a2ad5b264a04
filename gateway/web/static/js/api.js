// The gateway's JSON endpoints (/api/*). The session cookie goes with every call, and every
// call carries the X-Perimon header the gateway asks of state-changing requests (CSRF); a 401
// (session expired or logged out) sends the page to the login.

export const toLogin = () => { location.href = "/login"; };

export async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", ...opts,
    headers: { "X-Perimon": "1", ...(opts.body ? { "Content-Type": "application/json" } : {}) } });
  if (r.status === 401) { toLogin(); throw new Error("login required"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

const dev = (id) => `/api/devices/${encodeURIComponent(id)}`;

export const getMe = () => api("/api/me");
export const getDevices = () => api("/api/devices");
export const getAlerts = () => api("/api/alerts");
export const getWindow = (id, since, until, signal) => api(`${dev(id)}/window?since=${since}&until=${until}`, { signal });
export const getRejected = (id, since, until) => api(`${dev(id)}/rejected?since=${since}&until=${until}`);
export const getSessions = (id) => api(`${dev(id)}/sessions`);
export const getNomogram = (ga, risk) => api(`/api/nomogram?ga=${ga}&risk=${risk}`);
export const postSettings = (id, body) => api(`${dev(id)}/settings`, { method: "POST", body: JSON.stringify(body) });
export const ackAlert = (id) => api(`/api/alerts/${encodeURIComponent(id)}/ack`, { method: "POST", body: "{}" });

// Times as the nurse view shows them. Times inside the page are seconds since the epoch.

export const t = (iso) => (iso ? Date.parse(iso) / 1000 : null);
export const hhmm = (sec) => new Date(sec * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
export const hhmmss = (sec) => new Date(sec * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
export const ago = (sec) => {
  const d = Math.max(0, Date.now() / 1000 - sec);
  if (d < 60) return `${Math.round(d)} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  return `${(d / 3600).toFixed(1)} h ago`;
};

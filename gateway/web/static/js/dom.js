// DOM helpers of the nurse view.

export const $ = (id) => document.getElementById(id);

// el("li", { class: "x", text: "y", "data-z": "1" }, child, ...): null children are skipped.
export const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v);
  }
  for (const k of kids) if (k != null) e.append(k);
  return e;
};

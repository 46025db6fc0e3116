// Small DOM and formatting helpers. Everything goes through createElement + textContent:
// dataset and file names come from users, so no string is ever parsed as HTML.

/**
 * h("div", {class: "x", dataset: {testid: "y"}, onclick: fn}, child, "text", [more])
 * Attributes: `class`, `dataset`, `on*` handlers, booleans (true → present), everything else setAttribute.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "value") el.value = value;  // property, so selects/inputs update
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** Append children: nodes, strings (as text), numbers, nested arrays; null/false skipped. */
export function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replace all children of `el`. */
export function setChildren(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** A number for people: 4 significant digits, exponent only for very large/small magnitudes. */
export function fmt(value, digits = 4) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  if (Number.isNaN(value)) return "NaN";
  if (!Number.isFinite(value)) return value > 0 ? "∞" : "−∞";
  if (Number.isInteger(value) && Math.abs(value) < 1e9) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(digits - 1).replace(/\.?0+e/, "e");
  // toPrecision then Number() drops trailing zeros ("12.30" → "12.3") without losing digits shown.
  return String(Number(value.toPrecision(digits)));
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  if (seconds < 60) return `${fmt(seconds, 3)} s`;
  const m = Math.floor(seconds / 60), s = Math.round(seconds % 60);
  if (m < 60) return `${m} min ${s} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function fmtBytes(bytes) {
  if (typeof bytes !== "number") return "—";
  const units = ["B", "kB", "MB", "GB", "TB"];
  let i = 0, v = bytes;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i += 1;
  }
  return `${i === 0 ? v : fmt(v, 3)} ${units[i]}`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? String(iso) : d.toLocaleString();
}

export function shortId(id, n = 10) {
  if (id && typeof id === "object") id = id.imported ? `imported:${id.imported}` : JSON.stringify(id);  // issue 10.5
  return id && id.length > n ? `${id.slice(0, n)}…` : id || "—";
}

/** A progress bar (div role=progressbar, so it is styleable and announced). */
export function progressBar(done, total, label = "") {
  const pct = total > 0 ? Math.min(100, (100 * done) / total) : 0;
  const bar = h("div", {
    class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": total || 0,
    "aria-valuenow": done || 0, "aria-label": label || "progress", dataset: {testid: "progress"},
  }, h("div", {class: "progress-fill", style: `width: ${pct.toFixed(1)}%`}));
  return bar;
}

export function statusBadge(status) {
  return h("span", {class: `badge status-${status}`, dataset: {testid: "status"}}, status);
}

/**
 * Render any JSON value as nested definition lists (for diagnostics, provenance, unknown fields).
 * Arrays of scalars are joined; long arrays are truncated with a count.
 */
export function jsonTree(value, depth = 0) {
  if (value === null || value === undefined) return h("span", {class: "muted"}, "—");
  if (typeof value === "number") return h("span", {class: "num"}, fmt(value));
  if (typeof value !== "object") return h("span", {}, String(value));
  if (Array.isArray(value)) {
    if (value.length === 0) return h("span", {class: "muted"}, "[]");
    if (value.every((v) => v === null || typeof v !== "object")) {
      const shown = value.slice(0, 20).map((v) => (typeof v === "number" ? fmt(v) : String(v)));
      const more = value.length > 20 ? ` … (${value.length} items)` : "";
      return h("span", {}, shown.join(", ") + more);
    }
    return h("ol", {class: "tree-list"}, value.slice(0, 50).map((v) => h("li", {}, jsonTree(v, depth + 1))),
      value.length > 50 ? h("li", {class: "muted"}, `… ${value.length - 50} more`) : null);
  }
  const entries = Object.entries(value);
  if (entries.length === 0) return h("span", {class: "muted"}, "{}");
  return h("dl", {class: "tree"}, entries.map(([k, v]) => [h("dt", {}, k), h("dd", {}, jsonTree(v, depth + 1))]));
}

// Small DOM helpers: elements built from data, never from HTML strings holding user text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const root = window.FATHOM_UI.root;

/** A same-origin link the router follows without reloading the page. */
export function link(path, ...children) {
  return h("a", { href: `${root}${path}`, "data-link": true }, ...children);
}

export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = ms / 1000;
  const m = Math.floor(s / 60);
  return `${m}:${(s - m * 60).toFixed(3).padStart(6, "0")}`;
}

export function fmtDate(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function fmtNum(x, digits = 3) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  return typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(digits)) : String(x);
}

export function errorBox(err) {
  return h("div", { class: "error", role: "alert" }, err.message || String(err));
}

export function status(s) {
  return h("span", { class: `status status-${String(s).replace(/[^a-z_]/gi, "")}` }, s);
}

// Distinct from the waveform's grey-blue and from each other.
const PALETTE = ["#e4572e", "#7a5af8", "#f3a712", "#17b26a", "#ee46bc", "#0ba5ec", "#a15c07", "#d62728", "#66c61c", "#bcbd22"];

/** Colours per artifact type: the dataset's where it names them, a fixed palette otherwise. */
export function typeColors(types, datasetTypes = []) {
  const given = Object.fromEntries((datasetTypes || []).filter((t) => t.color).map((t) => [t.name, t.color]));
  return Object.fromEntries(types.map((t, i) => [t, given[t] || PALETTE[i % PALETTE.length]]));
}

/** "#rrggbb" (or a CSS colour name the browser knows) with an alpha channel; memoised, as
 * regions are repainted by the hundred while zooming. */
const alphaCache = new Map();
let probe = null;
export function withAlpha(color, alpha) {
  const key = `${color}|${alpha.toFixed(2)}`;
  let out = alphaCache.get(key);
  if (out) return out;
  probe = probe || document.createElement("canvas").getContext("2d");
  probe.fillStyle = color;
  const hex = probe.fillStyle; // normalised to #rrggbb when opaque
  if (hex.startsWith("#")) {
    const n = parseInt(hex.slice(1), 16);
    out = `rgba(${(n >> 16) & 255}, ${(n >> 8) & 255}, ${n & 255}, ${alpha.toFixed(2)})`;
  } else out = color;
  alphaCache.set(key, out);
  return out;
}

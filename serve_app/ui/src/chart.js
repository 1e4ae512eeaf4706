// Per-epoch figures from a training log ("epoch 3/20: train loss 0.12, validation frame F1 0.81"),
// drawn as small SVG line charts, one per figure: both model kinds log epochs this way.

import { h } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const EPOCH = /epoch (\d+)\/(\d+)\s*[:-]\s*(.*)$/;
const FIGURE = /^(.*\S)\s+(-?\d+(?:\.\d+)?(?:e[-+]?\d+)?)(%?)$/; // "validation frame F1 0.812", "CER 4.1%"

/** [{epoch, figures: {label: value}}] in epoch order (a repeated epoch keeps its last line). */
export function epochFigures(messages) {
  const byEpoch = new Map();
  for (const m of messages) {
    const match = m.match(EPOCH);
    if (!match) continue;
    const figures = {};
    for (const part of match[3].split(",")) {
      const f = part.trim().match(FIGURE);
      if (f) figures[`${f[1]}${f[3] ? " (%)" : ""}`] = parseFloat(f[2]);
    }
    byEpoch.set(parseInt(match[1], 10), figures);
  }
  return [...byEpoch.entries()].sort((a, b) => a[0] - b[0]).map(([epoch, figures]) => ({ epoch, figures }));
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  el.append(...children);
  return el;
}

function lineChart(label, points, epochs) {
  const W = 300, H = 150, L = 46, R = 10, T = 22, B = 26;
  const ys = points.map((p) => p[1]);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  if (hi - lo < 1e-9) { lo -= 0.5; hi += 0.5; }
  const x = (e) => L + ((e - 1) / Math.max(1, epochs - 1)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const path = points.map(([e, v], i) => `${i ? "L" : "M"}${x(e).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
  const fmt = (v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
  return svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", "data-figure": label, role: "img", "aria-label": label },
    svg("text", { x: 6, y: 14, class: "chart-title" }, label),
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    svg("text", { x: L - 4, y: y(hi) + 4, class: "tick", "text-anchor": "end" }, fmt(hi)),
    svg("text", { x: L - 4, y: y(lo) + 4, class: "tick", "text-anchor": "end" }, fmt(lo)),
    svg("text", { x: L, y: H - 8, class: "tick" }, "1"),
    svg("text", { x: W - R, y: H - 8, class: "tick", "text-anchor": "end" }, `epoch ${epochs}`),
    svg("path", { d: path, class: "line" }),
    ...points.map(([e, v]) => svg("circle", { cx: x(e), cy: y(v), r: 2.5, class: "dot" }, svg("title", {}, `epoch ${e}: ${v}`))));
}

/** The charts of every figure the log names, for a run of ``epochs`` epochs. */
export function epochCharts(messages, epochs) {
  const rows = epochFigures(messages);
  if (!rows.length) return h("p", { class: "muted" }, "No epoch finished yet.");
  const labels = [...new Set(rows.flatMap((r) => Object.keys(r.figures)))];
  const total = Math.max(epochs || 0, rows[rows.length - 1].epoch);
  return h("div", { class: "charts" }, labels.map((label) =>
    lineChart(label, rows.filter((r) => label in r.figures).map((r) => [r.epoch, r.figures[label]]), total)));
}

// A small SVG chart module (no dependencies): bars with error bars, horizontal bars, scatter + line, whiskers.
// Charts draw into a fixed viewBox and scale with CSS width, so layout maths stays in one coordinate system.
// Labels are set with textContent (never markup): bin and file names come from users.
import {fmt} from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const CHAR_W = 6.2;  // rough width of one 11px character, enough to keep labels apart

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") el.textContent = String(v);
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

function tooltip(text) {
  return s("title", {text});
}

/** Linear map from [d0, d1] to [r0, r1]; a degenerate domain maps to the middle of the range. */
export function linear([d0, d1], [r0, r1]) {
  const span = d1 - d0;
  return (v) => (span === 0 ? (r0 + r1) / 2 : r0 + ((v - d0) / span) * (r1 - r0));
}

/** About `count` round tick values covering [lo, hi] (1-2-5 steps). */
export function niceTicks(lo, hi, count = 5) {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (lo === hi) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((st) => st >= raw) || 10 * mag;
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(Number(t.toPrecision(12)));
  return ticks;
}

/** Extend [lo, hi] to round tick values so bars and points do not touch the frame. */
function niceDomain(lo, hi, count = 5) {
  if (lo === hi) return lo === 0 ? [0, 1] : [Math.min(0, lo), Math.max(0, hi)];
  const ticks = niceTicks(lo, hi, count);
  const step = ticks.length > 1 ? ticks[1] - ticks[0] : Math.abs(hi - lo);
  return [Math.floor(lo / step + 1e-9) * step, Math.ceil(hi / step - 1e-9) * step];
}

function frame(width, height, title, testid) {
  const svg = s("svg", {
    viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title,
    "data-testid": testid, preserveAspectRatio: "xMidYMid meet",
  });
  svg.append(tooltip(title));
  return svg;
}

function truncate(text, maxChars) {
  const str = String(text);
  return str.length > maxChars ? `…${str.slice(str.length - maxChars + 1)}` : str;
}

function yAxis(svg, y, ticks, x0, x1, label) {
  const g = s("g", {class: "axis y-axis"});
  for (const t of ticks) {
    g.append(s("line", {x1: x0, x2: x1, y1: y(t), y2: y(t), class: "grid"}));
    g.append(s("text", {x: x0 - 6, y: y(t) + 4, "text-anchor": "end", text: fmt(t, 3)}));
  }
  if (label) {
    const yMid = (y(ticks[0]) + y(ticks[ticks.length - 1])) / 2;
    g.append(s("text", {x: 12, y: yMid, transform: `rotate(-90 12 ${yMid})`, "text-anchor": "middle",
      class: "axis-label", text: label}));
  }
  svg.append(g);
}

function xAxis(svg, x, ticks, y0, yTop, label, width) {
  const g = s("g", {class: "axis x-axis"});
  for (const t of ticks) {
    g.append(s("line", {x1: x(t), x2: x(t), y1: yTop, y2: y0, class: "grid"}));
    g.append(s("text", {x: x(t), y: y0 + 16, "text-anchor": "middle", text: fmt(t, 3)}));
  }
  if (label) g.append(s("text", {x: width / 2, y: y0 + 34, "text-anchor": "middle", class: "axis-label", text: label}));
  svg.append(g);
}

function legend(svg, items, x, y) {
  const g = s("g", {class: "legend"});
  let cx = x;
  for (const {name, cls} of items) {
    g.append(s("rect", {x: cx, y: y - 9, width: 10, height: 10, class: cls}));
    g.append(s("text", {x: cx + 14, y, text: name}));
    cx += 24 + name.length * CHAR_W;
  }
  svg.append(g);
}

/**
 * Grouped vertical bars with ± error bars.
 * groups: [{label, values: [{value, err}], highlight?: bool, tooltip?: string}]
 * series: [{name, cls}] (one per value in a group, drawn left to right)
 * Each group is one <g data-testid="bar-group">, so tests and screen readers can count bins.
 */
export function barChart({groups, series, title, xLabel = "", yLabel = "", highlightName = "",
  width = 640, height = 280, testid = "bar-chart"}) {
  const m = {top: 28, right: 12, bottom: 46, left: 58};
  const svg = frame(width, height, title, testid);
  const tops = groups.flatMap((g) => g.values.map((v) => (v.value ?? 0) + (v.err ?? 0)));
  const [lo, hi] = niceDomain(0, Math.max(1e-12, ...tops.filter(Number.isFinite)));
  const y = linear([lo, hi], [height - m.bottom, m.top]);
  yAxis(svg, y, niceTicks(lo, hi), m.left, width - m.right, yLabel);

  const band = (width - m.left - m.right) / Math.max(1, groups.length);
  const inner = band * 0.8;
  const barW = inner / Math.max(1, series.length);
  // Thin out x labels so they never overlap, whatever the number of bins.
  const maxLabel = Math.max(1, ...groups.map((g) => String(g.label).length));
  const every = Math.max(1, Math.ceil((maxLabel * CHAR_W + 6) / band));
  const plot = s("g", {class: "bars"});
  groups.forEach((group, i) => {
    const gx = m.left + i * band;
    const g = s("g", {class: `bar-group${group.highlight ? " highlight" : ""}`, "data-testid": "bar-group",
      "data-index": i, "data-highlight": group.highlight ? "true" : "false"});
    if (group.highlight) {
      g.append(s("rect", {x: gx + 0.5, y: m.top, width: Math.max(0, band - 1), height: height - m.bottom - m.top,
        class: "band-highlight"}));
    }
    group.values.forEach((v, j) => {
      if (v.value === null || v.value === undefined || !Number.isFinite(v.value)) return;
      const bx = gx + (band - inner) / 2 + j * barW;
      const top = y(Math.max(v.value, 0));
      g.append(s("rect", {x: bx, y: top, width: Math.max(0.5, barW - 0.5), height: Math.max(0, y(0) - top),
        class: `bar ${series[j]?.cls || ""}`}));
      if (v.err > 0) {
        const cx = bx + barW / 2, y1 = y(Math.max(lo, v.value - v.err)), y2 = y(v.value + v.err);
        const cap = Math.min(4, barW / 3);
        g.append(s("path", {class: "errbar",
          d: `M${cx},${y1}V${y2}M${cx - cap},${y1}h${2 * cap}M${cx - cap},${y2}h${2 * cap}`}));
      }
    });
    if (i % every === 0) {
      g.append(s("text", {x: gx + band / 2, y: height - m.bottom + 14, "text-anchor": "middle", class: "tick",
        text: group.label}));
    }
    g.append(tooltip(group.tooltip || `${group.label}: ${group.values.map((v) => fmt(v.value)).join(" / ")}`));
    plot.append(g);
  });
  svg.append(plot);
  svg.append(s("line", {x1: m.left, x2: width - m.right, y1: y(0), y2: y(0), class: "baseline"}));
  if (xLabel) {
    svg.append(s("text", {x: (m.left + width - m.right) / 2, y: height - 8, "text-anchor": "middle",
      class: "axis-label", text: xLabel}));
  }
  const items = [...series];
  if (highlightName && groups.some((g) => g.highlight)) items.push({name: highlightName, cls: "band-highlight"});
  legend(svg, items, m.left, 16);
  return svg;
}

/**
 * Horizontal bars with the value written at the end; for ranked lists (worst files).
 * items: [{label, value, tooltip?}]
 */
export function hbarChart({items, title, xLabel = "", width = 640, testid = "hbar-chart", cls = "c-cand"}) {
  const rowH = 20;
  const labelChars = Math.min(40, Math.max(4, ...items.map((it) => String(it.label).length)));
  const m = {top: 10, right: 64, bottom: 40, left: 12 + labelChars * CHAR_W};
  const height = m.top + m.bottom + rowH * items.length;
  const svg = frame(width, height, title, testid);
  const values = items.map((it) => it.value).filter(Number.isFinite);
  const [lo, hi] = niceDomain(Math.min(0, ...values), Math.max(1e-12, ...values));
  const x = linear([lo, hi], [m.left, width - m.right]);
  xAxis(svg, x, niceTicks(lo, hi), height - m.bottom, m.top, xLabel, width);
  items.forEach((it, i) => {
    const yTop = m.top + i * rowH;
    const g = s("g", {class: "hbar", "data-testid": "hbar"});
    g.append(s("text", {x: m.left - 6, y: yTop + rowH / 2 + 4, "text-anchor": "end", class: "tick",
      text: truncate(it.label, labelChars)}));
    if (Number.isFinite(it.value)) {
      const x0 = x(Math.min(0, it.value)), x1 = x(Math.max(0, it.value));
      g.append(s("rect", {x: x0, y: yTop + 3, width: Math.max(0.5, x1 - x0), height: rowH - 6, class: `bar ${cls}`}));
      g.append(s("text", {x: x1 + 4, y: yTop + rowH / 2 + 4, class: "value", text: fmt(it.value)}));
    }
    g.append(tooltip(it.tooltip || `${it.label}: ${fmt(it.value)}`));
    svg.append(g);
  });
  return svg;
}

/**
 * Scatter points plus an optional fitted line y = intercept + slope·x; the intercept is marked on x = 0
 * when the domain includes it (FAD-∞ is the fit's value at 1/N = 0).
 * points: [{x, y, tooltip?}], line: {intercept, slope} | null
 */
export function scatterLine({points, line = null, title, xLabel = "", yLabel = "", includeZeroX = false,
  interceptLabel = "", width = 640, height = 280, testid = "scatter-chart"}) {
  const m = {top: 20, right: 20, bottom: 50, left: 64};
  const svg = frame(width, height, title, testid);
  const xs = points.map((p) => p.x), ys = points.map((p) => p.y);
  let xLo = Math.min(...xs), xHi = Math.max(...xs);
  if (includeZeroX) xLo = Math.min(0, xLo);
  const yVals = [...ys];
  if (line) yVals.push(line.intercept + line.slope * xLo, line.intercept + line.slope * xHi);
  const [x0, x1] = niceDomain(xLo, xHi);
  const [y0, y1] = niceDomain(Math.min(...yVals), Math.max(...yVals));
  const x = linear([x0, x1], [m.left, width - m.right]);
  const y = linear([y0, y1], [height - m.bottom, m.top]);
  yAxis(svg, y, niceTicks(y0, y1), m.left, width - m.right, yLabel);
  xAxis(svg, x, niceTicks(x0, x1), height - m.bottom, m.top, xLabel, width);
  if (line) {
    svg.append(s("line", {x1: x(xLo), y1: y(line.intercept + line.slope * xLo), x2: x(xHi),
      y2: y(line.intercept + line.slope * xHi), class: "fit", "data-testid": "fit-line"}));
    if (includeZeroX) {
      const g = s("g", {class: "intercept"});
      g.append(s("path", {d: `M${x(0)},${y(line.intercept) - 6}l6,6l-6,6l-6,-6z`, class: "intercept-mark"}));
      if (interceptLabel) g.append(s("text", {x: x(0) + 10, y: y(line.intercept) - 8, text: interceptLabel}));
      svg.append(g);
    }
  }
  for (const p of points) {
    svg.append(s("circle", {cx: x(p.x), cy: y(p.y), r: 4, class: "point", "data-testid": "point"},
      tooltip(p.tooltip || `(${fmt(p.x)}, ${fmt(p.y)})`)));
  }
  return svg;
}

/**
 * Interval (whisker) plot: one row per estimate, a line from low to high and a dot at the value.
 * shared=true puts all rows on one axis (same units); otherwise each row gets its own scale and
 * writes its bounds, since FAD, KAD and PRDC live on unrelated scales.
 * rows: [{label, value, low, high, tooltip?}]
 */
export function whiskerPlot({rows, title, shared = false, width = 640, testid = "whisker-chart"}) {
  const rowH = 30;
  const labelChars = Math.min(28, Math.max(4, ...rows.map((r) => String(r.label).length)));
  const m = {top: 10, right: 70, bottom: shared ? 40 : 10, left: 16 + labelChars * CHAR_W};
  const height = m.top + m.bottom + rowH * rows.length;
  const svg = frame(width, height, title, testid);
  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  const span = (r) => [r.low, r.high, r.value].filter(finite);
  let sharedX = null;
  if (shared) {
    const all = rows.flatMap(span);
    const [d0, d1] = niceDomain(Math.min(...all), Math.max(...all));
    sharedX = linear([d0, d1], [m.left, width - m.right]);
    xAxis(svg, sharedX, niceTicks(d0, d1), height - m.bottom, m.top, "", width);
  }
  rows.forEach((r, i) => {
    const cy = m.top + i * rowH + rowH / 2;
    const vals = span(r);
    const g = s("g", {class: "whisker", "data-testid": "whisker"});
    g.append(s("text", {x: m.left - 8, y: cy + 4, "text-anchor": "end", class: "tick", text: truncate(r.label, labelChars)}));
    if (vals.length) {
      let x = sharedX;
      if (!x) {
        const lo = Math.min(...vals), hi = Math.max(...vals), pad = (hi - lo) * 0.15 || Math.abs(hi) * 0.1 || 1;
        x = linear([lo - pad, hi + pad], [m.left + 40, width - m.right - 40]);
        g.append(s("line", {x1: m.left, x2: width - m.right, y1: cy, y2: cy, class: "grid"}));
      }
      if (finite(r.low) && finite(r.high)) {
        g.append(s("path", {class: "whisker-line", d: `M${x(r.low)},${cy}H${x(r.high)}M${x(r.low)},${cy - 6}v12M${x(r.high)},${cy - 6}v12`}));
        if (!shared) {
          g.append(s("text", {x: x(r.low) - 6, y: cy + 4, "text-anchor": "end", class: "bound", text: fmt(r.low)}));
          g.append(s("text", {x: x(r.high) + 6, y: cy + 4, class: "bound", text: fmt(r.high)}));
        }
      }
      if (finite(r.value)) {
        g.append(s("circle", {cx: x(r.value), cy, r: 4.5, class: "point"}));
        g.append(s("text", {x: x(r.value), y: cy - 8, "text-anchor": "middle", class: "value", text: fmt(r.value)}));
      }
    }
    g.append(tooltip(r.tooltip || `${r.label}: ${fmt(r.value)} [${fmt(r.low)}, ${fmt(r.high)}]`));
    svg.append(g);
  });
  return svg;
}

/**
 * A metric over training steps: a line through the values, the interval as a shaded band, one point per job.
 * points: [{x, y, low?, high?, id, tooltip?, label?}] sorted by x. Hovering a point writes its `label` in the
 * chart's readout (and a native tooltip); clicking (or Enter on) a point calls onPoint(point).
 */
export function lineBandChart({points, title, xLabel = "step", yLabel = "", onPoint = null, width = 640,
  height = 260, testid = "line-band-chart"}) {
  const m = {top: 30, right: 20, bottom: 50, left: 64};
  const svg = frame(width, height, title, testid);
  const finite = (v) => typeof v === "number" && Number.isFinite(v);
  const shown = points.filter((p) => finite(p.y));
  const xs = shown.map((p) => p.x);
  const ys = shown.flatMap((p) => [p.y, p.low, p.high].filter(finite));
  if (!shown.length) {
    svg.append(s("text", {x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis-label",
      text: "no finished job yet"}));
    return svg;
  }
  const [x0, x1] = niceDomain(Math.min(...xs), Math.max(...xs));
  const [y0, y1] = niceDomain(Math.min(...ys), Math.max(...ys));
  const x = linear([x0, x1], [m.left, width - m.right]);
  const y = linear([y0, y1], [height - m.bottom, m.top]);
  yAxis(svg, y, niceTicks(y0, y1), m.left, width - m.right, yLabel);
  xAxis(svg, x, niceTicks(x0, x1), height - m.bottom, m.top, xLabel, width);
  // The band: one polygon per run of consecutive points that have an interval (a gap breaks it).
  let runOf = [];
  const bands = [];
  for (const p of [...shown, null]) {
    if (p && finite(p.low) && finite(p.high)) {
      runOf.push(p);
      continue;
    }
    if (runOf.length) bands.push(runOf);
    runOf = [];
  }
  for (const band of bands) {
    const upper = band.map((p) => `${x(p.x)},${y(p.high)}`);
    const lower = band.slice().reverse().map((p) => `${x(p.x)},${y(p.low)}`);
    const d = band.length === 1
      ? `M${x(band[0].x) - 3},${y(band[0].high)}h6V${y(band[0].low)}h-6z`  // a lone interval: a thin bar
      : `M${upper.join("L")}L${lower.join("L")}z`;
    svg.append(s("path", {d, class: "interval-band", "data-testid": "interval-band"}));
  }
  svg.append(s("path", {d: `M${shown.map((p) => `${x(p.x)},${y(p.y)}`).join("L")}`, class: "series-line",
    "data-testid": "series-line"}));
  const readout = s("text", {x: width - m.right, y: 16, "text-anchor": "end", class: "readout",
    "data-testid": "chart-readout", text: ""});
  for (const p of shown) {
    const label = p.label || `${xLabel} ${p.x}: ${fmt(p.y)}` +
      (finite(p.low) && finite(p.high) ? ` [${fmt(p.low)}, ${fmt(p.high)}]` : "");
    const c = s("circle", {cx: x(p.x), cy: y(p.y), r: 5, class: "point run-point", tabindex: 0, role: "link",
      "aria-label": label, "data-testid": "run-point", "data-job-id": p.id, "data-step": p.x},
    tooltip(p.tooltip || label));
    c.addEventListener("mouseenter", () => { readout.textContent = label; });
    c.addEventListener("focus", () => { readout.textContent = label; });
    c.addEventListener("mouseleave", () => { readout.textContent = ""; });
    if (onPoint) {
      c.addEventListener("click", () => onPoint(p));
      c.addEventListener("keydown", (ev) => { if (ev.key === "Enter") onPoint(p); });
    }
    svg.append(c);
  }
  svg.append(readout);
  return svg;
}

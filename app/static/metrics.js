// What the dashboard knows of each metric comes from GET /v1/metrics (soundcheck.jobspec.METRIC_INFO and
// soundcheck.results): its short label, which direction is better, its scored parts. Fetched once per page.
import {api} from "./api.js";

let loaded = null;
let info = new Map();

/** Load the catalogue (once); resolves to the Map name -> entry, empty when the api cannot be read. */
export function loadMetricInfo() {
  loaded ??= api.metrics().then((list) => {
    info = new Map((list || []).map((m) => [m.name, m]));
    return info;
  }).catch(() => {
    loaded = null;  // try again on the next view
    return info;
  });
  return loaded;
}

export function metricNames() {
  return [...info.keys()];
}

export function label(name) {
  return info.get(name)?.label || name;
}

export function title(name) {
  return info.get(name)?.title || name;
}

/** "lower" | "higher" | "" for a metric, or for a part ("precision") through the metric that has it. */
export function better(name) {
  if (info.has(name)) return info.get(name).better || "";
  for (const m of info.values()) if ((m.parts || []).includes(name)) return m.better || "";
  return "";
}

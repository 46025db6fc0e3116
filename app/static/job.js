// The job detail view (#/jobs/<id>): status and progress while it runs, then the metrics table, warnings,
// plots, diagnostics and provenance. Result fields it does not know are still shown (generic rendering).
import {api, ApiError} from "./api.js";
import {barChart, hbarChart, scatterLine, whiskerPlot} from "./charts.js";
import {fmt, fmtDuration, fmtTime, h, jsonTree, progressBar, setChildren, shortId, statusBadge} from "./dom.js";
import {ndbBinFiles, worstFilesTable, worstPairsTable} from "./listen.js";
import {better, label, loadMetricInfo} from "./metrics.js";
import {datasetName} from "./names.js";

const POLL_MS = 1000;
const ACTIVE = new Set(["queued", "running"]);
// Metric labels and directions: GET /v1/metrics (metrics.js), loaded before the first render.
// Columns of the table, and fields drawn as plots: not repeated in the per-metric details cell.
const SHOWN = new Set(["value", "interval", "n_reference", "n_candidate", "frames_reference", "frames_candidate", "unit"]);
const PLOTTED = new Set(["bins", "worst", "points", "per_file", "confusion", "per_class", "different_bins"]);

/** Mount the view for one job; returns a function that stops its polling. */
export function showJob(container, jobId) {
  let stopped = false, timer = null, renderedStatus = null;
  const controller = new AbortController();
  document.title = `job ${shortId(jobId, 8)} · soundcheck`;
  setChildren(container, crumbs(), h("p", {class: "muted"}, "Loading job…"));

  async function poll() {
    let job;
    try {
      [job] = await Promise.all([api.job(jobId, {signal: controller.signal}), loadMetricInfo()]);
    } catch (err) {
      if (stopped || err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 404) {
        setChildren(container, crumbs(), h("div", {class: "error", role: "alert", dataset: {testid: "job-not-found"}},
          h("strong", {class: "error-title"}, "Job not found"), h("span", {}, err.detail)));
        return;
      }
      // A transient failure (api restarting): say so and keep trying.
      renderNotice(container, `cannot read the job: ${err.message}; retrying…`);
      timer = setTimeout(poll, POLL_MS * 3);
      return;
    }
    if (stopped) return;
    // The full view (tables, plots, open <details>) is built once per status; while running only the
    // status block changes, so the page does not flicker or lose scroll position.
    if (renderedStatus !== job.status) {
      setChildren(container, crumbs(), renderJob(job));
      renderedStatus = job.status;
    } else {
      const status = container.querySelector("#job-status-block");
      if (status) status.replaceWith(statusBlock(job));
    }
    container.dataset.status = job.status;
    if (ACTIVE.has(job.status)) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
    controller.abort();
  };
}

function crumbs() {
  return h("nav", {class: "crumbs", "aria-label": "Breadcrumb"}, h("a", {href: "#/", id: "back-link"}, "← Overview"));
}

function renderNotice(container, text) {
  let el = container.querySelector(".transient");
  if (!el) {
    el = h("p", {class: "transient warn-text", role: "status"});
    container.append(el);
  }
  el.textContent = text;
}

function datasetRef(id) {
  const name = datasetName(id);
  return h("span", {}, name ? h("span", {class: "name"}, `${name} `) : null, h("code", {title: id}, shortId(id, 12)));
}

function renderJob(job) {
  const spec = job.spec || {};
  const duration = job.started_at && job.ended_at ? (new Date(job.ended_at) - new Date(job.started_at)) / 1000 : null;
  const parts = [
    h("h1", {class: "job-title"}, "Job ", h("code", {id: "job-id", title: job.id}, job.id)),
    h("dl", {class: "meta", dataset: {testid: "job-meta"}},
      meta("Embedding", spec.embedding), meta("Metrics", (spec.metrics || []).join(", ")),
      meta("Reference", datasetRef(spec.reference)), meta("Candidate", datasetRef(spec.candidate)),
      meta("Created", fmtTime(job.created_at)), meta("Started", fmtTime(job.started_at)),
      meta("Ended", fmtTime(job.ended_at)), meta("Run time", duration === null ? "—" : fmtDuration(duration)),
      meta("Worker", job.worker || "—"),
      spec.run ? meta("Run", h("a", {href: `#/runs/${encodeURIComponent(spec.run)}`, dataset: {testid: "job-run"}},
        `${spec.run} · step ${spec.step}`)) : null),
    statusBlock(job),
  ];
  if (job.status === "failed") {
    parts.push(h("div", {class: "error big", role: "alert", id: "job-error", dataset: {testid: "job-error"}},
      h("strong", {class: "error-title"}, "The job failed"), h("p", {class: "error-detail"}, job.error || "(no message)")));
  }
  if (job.status === "finished" && job.result) parts.push(...renderResult(job));
  parts.push(h("details", {class: "card collapsible", dataset: {testid: "spec"}},
    h("summary", {}, "Request (spec)"), jsonTree(spec)));
  return h("article", {class: "job", dataset: {testid: "job-view", jobId: job.id}}, parts);
}

function meta(label, value) {
  return h("div", {class: "meta-item"}, h("dt", {}, label), h("dd", {}, value ?? "—"));
}

function statusBlock(job) {
  const p = job.progress || {done: 0, total: 0, stage: ""};
  const text = p.total ? `${p.done} / ${p.total} files · ${p.stage}` : p.stage;
  return h("div", {id: "job-status-block", class: "status-block", dataset: {testid: "job-status"}},
    h("span", {id: "job-status"}, statusBadge(job.status)),
    progressBar(p.done, p.total, "job progress"),
    h("span", {id: "job-stage", class: "muted", dataset: {testid: "job-stage"}}, text));
}

// ---------------------------------------------------------------- result

function renderResult(job) {
  const result = job.result;
  const metrics = result.metrics || {};
  const out = [];
  out.push(h("section", {class: "card", "aria-labelledby": "metrics-title"},
    h("h2", {id: "metrics-title"}, "Metrics"),
    setsSummary(result),
    metricsTable(metrics, job.spec?.options?.confidence ?? 0.95),
    h("p", {class: "hint"}, `Intervals: ${intervalMethod(metrics)}. n = files.`)));
  const warnings = result.warnings || [];
  if (warnings.length) {
    out.push(h("section", {class: "card warnings-card", "aria-labelledby": "warnings-title"},
      h("h2", {id: "warnings-title"}, `Warnings (${warnings.length})`),
      h("ul", {class: "warnings", dataset: {testid: "warnings"}}, warnings.map((w) => h("li", {}, w)))));
  }
  const plots = renderPlots(metrics);
  if (plots.length) {
    out.push(h("section", {class: "card", "aria-labelledby": "plots-title"},
      h("h2", {id: "plots-title"}, "Plots"), h("div", {class: "plots"}, plots)));
  }
  out.push(...listening(metrics, job.spec || {}));
  if (result.timing_s && typeof result.timing_s === "object") out.push(timingCard(result.timing_s));
  out.push(collapsible("Diagnostics", "diagnostics", result.diagnostics || {}, true));
  out.push(collapsible("Provenance", "provenance", result.provenance || {}, false));
  const known = new Set(["reference", "candidate", "embedding", "metrics", "diagnostics", "warnings", "provenance",
    "timing_s"]);
  const extra = Object.fromEntries(Object.entries(result).filter(([k]) => !known.has(k)));
  if (Object.keys(extra).length) out.push(collapsible("Other result fields", "result-extra", extra, false));
  out.push(rawJson(job));
  return out;
}

/** Players for the worst files and for the files nearest each NDB bin that differs (listen.js). */
function listening(metrics, spec) {
  const out = [];
  const worst = metrics.fad_per_file?.worst;
  if (Array.isArray(worst) && worst.length) {
    out.push(h("section", {class: "card", "aria-labelledby": "worst-title", dataset: {testid: "listen-worst"}},
      h("h2", {id: "worst-title"}, `Worst files (${worst.length})`),
      h("p", {class: "hint"}, "per-file FAD of each candidate file against the reference, worst first"),
      worstFilesTable(metrics.fad_per_file, spec.candidate)));
  }
  const ndb = metrics.ndb;
  if (Array.isArray(ndb?.different_bins) && ndb.different_bins.length) {
    out.push(h("section", {class: "card", "aria-labelledby": "ndb-files-title", dataset: {testid: "listen-ndb"}},
      h("h2", {id: "ndb-files-title"}, `NDB bins that differ (${ndb.different_bins.length})`),
      h("p", {class: "hint"}, "proportions of each set in the bin, and the files nearest the bin's centre"),
      ndbBinFiles(ndb, spec.reference, spec.candidate)));
  }
  for (const [name, entry] of Object.entries(metrics)) {  // paired signal metrics: listen to both sides
    if (!Array.isArray(entry?.per_file) || !entry.per_file.length) continue;
    out.push(h("section", {class: "card", "aria-labelledby": `pairs-${name}-title`, dataset: {testid: `listen-${name}`}},
      h("h2", {id: `pairs-${name}-title`}, `${label(name)}: pairs, worst first (${entry.per_file.length})`),
      worstPairsTable(name, entry, better(name) === "higher" ? 1 : -1, spec.reference, spec.candidate)));
  }
  return out;
}

/** Where the job's time went: seconds per stage and per metric, largest first. */
function timingCard(timing) {
  const rows = (obj, kind) => Object.entries(obj || {}).filter(([, v]) => typeof v === "number")
    .sort((a, b) => b[1] - a[1]).map(([k, v]) => h("tr", {dataset: {testid: "timing-row", kind}},
      h("th", {scope: "row"}, k), h("td", {class: "muted"}, kind), h("td", {class: "num"}, `${fmt(v)} s`)));
  return h("details", {class: "card collapsible", dataset: {testid: "timing"}},
    h("summary", {}, `Timing (${fmt(timing.total)} s in all)`),
    h("table", {class: "table"}, h("tbody", {}, [...rows(timing.stages, "stage"), ...rows(timing.metrics, "metric")])));
}

function collapsible(title, testid, value, open) {
  return h("details", {class: "card collapsible", open, dataset: {testid}}, h("summary", {}, title), jsonTree(value));
}

function rawJson(job) {
  const text = JSON.stringify(job.result, null, 2);
  const href = URL.createObjectURL(new Blob([text], {type: "application/json"}));
  return h("details", {class: "card collapsible", dataset: {testid: "raw-json"}},
    h("summary", {}, "Result JSON"),
    h("p", {}, h("a", {href, download: `soundcheck-${job.id}.json`}, "Download")),
    h("pre", {class: "json"}, text));
}

function setsSummary(result) {
  const one = (role, s) => s ? h("div", {class: "set"}, h("span", {class: "muted"}, `${role}: `), datasetRef(s.id),
    ` · ${s.n_files} files · ${fmtDuration(s.duration_s)} · ${(s.sample_rates || []).map((r) => `${fmt(r / 1000)} kHz`).join(", ")}`)
    : null;
  return h("div", {class: "sets"}, one("reference", result.reference), one("candidate", result.candidate),
    result.embedding ? h("div", {class: "set"}, h("span", {class: "muted"}, "embedding: "), result.embedding) : null);
}

function intervalMethod(metrics) {
  for (const m of Object.values(metrics)) {
    const iv = m?.interval || Object.values(m || {}).find((v) => v?.interval)?.interval;
    if (iv?.method) return `${iv.method}, ${iv.valid ?? iv.resamples} resamples`;
  }
  return "none (bootstrap off or not applicable)";
}

function direction(name) {
  const way = better(name);
  return way ? `${way} is better` : "";
}

/** Rows: one per metric, plus a sub-row per nested estimate ({value, interval} objects, e.g. PRDC parts). */
function metricRows(metrics) {
  const rows = [];
  for (const [name, entry] of Object.entries(metrics)) {
    if (!entry || typeof entry !== "object") {
      rows.push({id: name, name, label: label(name), entry: {value: entry}});
      continue;
    }
    const subs = Object.entries(entry).filter(([, v]) => v && typeof v === "object" && !Array.isArray(v) && "value" in v);
    // a preset's numbers are keyed as the peer names them ("fd_panns") and say which metric computed them
    const metric = entry.metric || name, title = entry.title ? `${entry.title} · ${entry.embedding}` : label(name);
    if (entry.value !== null || !subs.length) rows.push({id: name, name: metric, label: title, entry});
    for (const [sub, v] of subs) {
      rows.push({id: `${name}.${sub}`, name: sub, label: `${label(name)} · ${sub}`,
        entry: {n_reference: entry.n_reference, n_candidate: entry.n_candidate, ...v}, parent: entry, sub: true});
    }
  }
  return rows;
}

function metricsTable(metrics, confidence) {
  const rows = metricRows(metrics);
  const level = Math.round(100 * confidence);
  return h("div", {class: "table-wrap"}, h("table", {class: "table metrics", id: "metrics-table", dataset: {testid: "metrics-table"}},
    h("thead", {}, h("tr", {}, ["Metric", "Value", `${level}% interval`, "n ref", "n cand", "Details"]
      .map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, rows.map(({id, name, label, entry, sub, parent}) => {
      const iv = entry.interval;
      if (entry.error) {
        return h("tr", {class: "failed", dataset: {testid: "metric-row", metric: id}},
          h("th", {scope: "row"}, label),
          h("td", {colspan: 5, class: "error", dataset: {testid: "metric-error"}},
            h("strong", {}, "not computed: "), entry.error));
      }
      return h("tr", {class: sub ? "sub" : "", dataset: {testid: "metric-row", metric: id}},
        h("th", {scope: "row"}, label, direction(name) ? h("span", {class: "hint block"}, direction(name)) : null),
        h("td", {class: "num value"}, h("span", {dataset: {testid: "metric-value", value: String(entry.value)}},
          fmt(entry.value)), entry.unit ? h("span", {class: "unit block"}, entry.unit) : null),
        h("td", {class: "num", dataset: {testid: "metric-interval"},
          title: iv ? `${iv.method || "interval"}; ${iv.valid ?? "?"} of ${iv.resamples ?? "?"} resamples valid` : ""},
        iv ? `${fmt(iv.low)} – ${fmt(iv.high)}` : h("span", {class: "muted"}, "—")),
        h("td", {class: "num"}, fmt(entry.n_reference), frames(entry.frames_reference)),
        h("td", {class: "num"}, fmt(entry.n_candidate), frames(entry.frames_candidate)),
        h("td", {class: "details"}, sub && parent ? null : detailsCell(entry)));
    }))));
}

function frames(n) {
  return typeof n === "number" ? h("span", {class: "hint block"}, `${fmt(n)} frames`) : null;
}

/** Scalar extras as "key value" chips; structured extras in a nested <details>. */
function detailsCell(entry) {
  const chips = [], nested = {};
  for (const [k, v] of Object.entries(entry)) {
    if (SHOWN.has(k) || PLOTTED.has(k) || v === null) continue;
    if (v && typeof v === "object" && !Array.isArray(v) && "value" in v) continue;  // a sub-row
    if (v === null || typeof v !== "object") chips.push(h("span", {class: "chip"}, h("span", {class: "k"}, k), " ", fmt(v)));
    else nested[k] = v;
  }
  return [chips, Object.keys(nested).length ? h("details", {}, h("summary", {}, "more"), jsonTree(nested)) : null];
}

// ---------------------------------------------------------------- plots

function figure(title, caption, chart, testid, wide = false) {
  return h("figure", {class: wide ? "plot wide" : "plot", dataset: {testid}}, h("figcaption", {}, h("strong", {}, title),
    caption ? h("span", {class: "hint block"}, caption) : null), chart);
}

function renderPlots(metrics) {
  const plots = [];
  const whiskers = intervalRows(metrics);
  if (whiskers.length) {
    plots.push(figure("Bootstrap intervals", "dot = estimate, whiskers = interval; each row has its own scale",
      whiskerPlot({rows: whiskers, title: "metric intervals", testid: "interval-chart"}), "plot-intervals"));
  }
  const prdc = metrics.prdc;
  if (prdc && typeof prdc === "object") {
    const rows = ["precision", "recall", "density", "coverage"].filter((k) => prdc[k] && typeof prdc[k] === "object")
      .map((k) => ({label: k, value: prdc[k].value, low: prdc[k].interval?.low, high: prdc[k].interval?.high}));
    if (rows.length) {
      plots.push(figure(`PRDC (k = ${prdc.k ?? "?"})`, "precision/density: fidelity; recall/coverage: diversity",
        whiskerPlot({rows, title: "precision, recall, density, coverage", shared: true, testid: "prdc-chart"}), "plot-prdc"));
    }
  }
  const ndb = metrics.ndb?.bins;
  if (ndb && Array.isArray(ndb.reference_proportions)) plots.push(ndbPlot(metrics.ndb));
  const worst = metrics.fad_per_file?.worst;
  if (Array.isArray(worst) && worst.length) {
    plots.push(figure(`Worst files by per-file FAD (${worst.length})`, "each file's frames against the reference statistics",
      hbarChart({items: worst.map((w) => ({label: w.name, value: w.fad, tooltip: `${w.name}: FAD ${fmt(w.fad)} (${w.frames} frames)`})),
        title: "per-file FAD, worst first", xLabel: "FAD", testid: "fad-per-file-chart"}), "plot-fad-per-file"));
  }
  const inf = metrics.fad_inf;
  if (inf && Array.isArray(inf.points) && inf.points.length) {
    const points = inf.points.map((p) => ({x: 1 / p.n, y: p.fad, tooltip: `N = ${p.n}: FAD ${fmt(p.fad)}`}));
    plots.push(figure("FAD-∞ extrapolation", `FAD of candidate subsets of N frames against 1/N; the fit at 1/N = 0 is FAD-∞`
      + (inf.r2 !== null && inf.r2 !== undefined ? ` (r² = ${fmt(inf.r2, 3)})` : ""),
    scatterLine({points, line: inf.value !== null ? {intercept: inf.value, slope: inf.slope} : null, includeZeroX: true,
      interceptLabel: `FAD-∞ = ${fmt(inf.value)}`, xLabel: "1 / N (frames)", yLabel: "FAD", title: "FAD against 1/N",
      testid: "fad-inf-chart"}), "plot-fad-inf"));
  }
  for (const [name, entry] of Object.entries(metrics)) {
    if (!Array.isArray(entry?.per_file) || !entry.per_file.length) continue;
    // Worst pairs first: lowest for higher-is-better metrics, highest otherwise.
    const sign = better(name) === "higher" ? 1 : -1;
    const items = entry.per_file.filter((p) => typeof p.value === "number")
      .sort((a, b) => sign * (a.value - b.value)).slice(0, 15);
    if (items.length) {
      plots.push(figure(`${label(name)}: worst pairs`, `${items.length} of ${entry.per_file.length} pairs`,
        hbarChart({items: items.map((p) => ({label: p.name, value: p.value})), title: `${name} per pair`,
          xLabel: entry.unit || name, testid: `${name}-per-file-chart`}), `plot-${name}-per-file`));
    }
  }
  const confusion = metrics.accuracy?.confusion;
  if (confusion?.labels && confusion?.matrix) plots.push(confusionTable(confusion));
  return plots;
}

function intervalRows(metrics) {
  const rows = [];
  for (const {id, label, entry} of metricRows(metrics)) {
    if (id.startsWith("prdc.")) continue;  // drawn on its own shared axis
    const iv = entry.interval;
    if (iv && typeof iv.low === "number" && typeof iv.high === "number") {
      rows.push({label, value: entry.value, low: iv.low, high: iv.high, tooltip: `${id}`});
    }
  }
  return rows;
}

function ndbPlot(ndb) {
  const b = ndb.bins;
  const differs = new Set(ndb.different_bins || []);
  const groups = b.reference_proportions.map((ref, i) => ({
    label: String(i), highlight: differs.has(i),
    values: [{value: ref, err: b.standard_errors?.[i] ?? 0}, {value: b.candidate_proportions?.[i] ?? null, err: 0}],
    tooltip: `bin ${i}: reference ${fmt(ref)}, candidate ${fmt(b.candidate_proportions?.[i])}, `
      + `SE ${fmt(b.standard_errors?.[i])}${b.p_values ? `, p = ${fmt(b.p_values[i], 3)}` : ""}`
      + (differs.has(i) ? " — differs" : ""),
  }));
  const rule = ndb.z_threshold ? `|z| > ${fmt(ndb.z_threshold)}` : `p < ${fmt(ndb.alpha ?? 0.05)}`;
  return figure(`NDB bins: ${fmt(ndb.ndb ?? ndb.value)} of ${ndb.k ?? groups.length} differ (JSD ${fmt(ndb.jsd)} nats)`,
    `bins by decreasing reference size; error bars ±1 standard error of the difference; shaded bins differ (${rule})`,
    barChart({groups, series: [{name: "reference", cls: "c-ref"}, {name: "candidate", cls: "c-cand"}],
      highlightName: "differs", title: "NDB bin proportions", xLabel: "bin", yLabel: "proportion", testid: "ndb-chart",
      width: 1300, height: 300}),
    "plot-ndb", true);
}

function confusionTable({labels, matrix}) {
  return h("figure", {class: "plot", dataset: {testid: "plot-confusion"}},
    h("figcaption", {}, h("strong", {}, "Confusion matrix"), h("span", {class: "hint block"}, "rows: intended class, columns: predicted")),
    h("div", {class: "table-wrap"}, h("table", {class: "table confusion"},
      h("thead", {}, h("tr", {}, h("th", {}, ""), labels.map((l) => h("th", {scope: "col"}, l)))),
      h("tbody", {}, matrix.map((row, i) => h("tr", {}, h("th", {scope: "row"}, labels[i]),
        row.map((v, j) => h("td", {class: `num${i === j ? " diag" : ""}`}, fmt(v)))))))));
}

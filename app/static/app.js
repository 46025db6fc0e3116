// The dashboard: hash routing, service health, datasets (list + upload), the new-job form and the jobs list.
// The job detail view lives in job.js. Plain ES modules, no build step, nothing fetched from outside.
import {api, ApiError, getToken, setToken, uploadDataset} from "./api.js";
import {fmt, fmtBytes, fmtDuration, fmtTime, h, progressBar, setChildren, shortId, statusBadge} from "./dom.js";
import {showComparison, showCompareForm} from "./compare.js";
import {showJob} from "./job.js";
import {loadMetricInfo, metricNames, title as metricTitle} from "./metrics.js";
import {showRun, showRuns} from "./runs.js";
import {datasetName, rememberDatasetName} from "./names.js";

const $ = (id) => document.getElementById(id);
const HEALTH_EVERY_MS = 5000;
const JOBS_EVERY_MS = 1000;
const ACTIVE = new Set(["queued", "running"]);

const state = {datasets: [], jobs: [], health: null, jobsTimer: null, stopJobView: null};

function showError(el, err) {
  if (!err) {
    el.hidden = true;
    el.replaceChildren();
    return;
  }
  const title = err instanceof ApiError && err.title ? err.title : "Error";
  const items = err instanceof ApiError && Array.isArray(err.body?.errors) ? err.body.errors : [];
  setChildren(el,
    h("strong", {class: "error-title"}, title),
    h("span", {class: "error-detail", dataset: {testid: "problem-detail"}}, err.detail || err.message),
    items.length > 1 ? h("ul", {}, items.map((e) => h("li", {}, `${e.field}: ${e.message}`))) : null);
  el.hidden = false;
}

// ---------------------------------------------------------------- health

async function refreshHealth() {
  try {
    const health = await api.health();
    // Which embeddings a job may use depends on the live workers: re-read the models when they change.
    const changed = state.health && (state.health.workers !== health.workers
      || String(state.health.models_loaded) !== String(health.models_loaded));
    state.health = health;
    if (changed) refreshModels();
    const models = health.models_loaded || [];
    setHealth("health-redis", health.redis ? "ok" : "bad", health.redis ? "Redis ok" : "Redis unreachable",
      health.redis_error || "");
    setHealth("health-workers", health.workers > 0 ? "ok" : "warn",
      `${health.workers} worker${health.workers === 1 ? "" : "s"}`,
      health.workers > 0 ? (health.worker_details || []).map((w) => `${w.name} (${w.state})`).join(", ")
        : "no live worker: jobs wait in the queue until one starts");
    setHealth("health-models", models.length ? "ok" : "warn",
      models.length ? `models: ${models.join(", ")}` : "no models loaded", "");
    $("health-workers").dataset.count = String(health.workers);
    $("health-models").dataset.models = models.join(",");
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return;
    const redisDown = err instanceof ApiError && err.status === 503 && err.body.redis === false;
    setHealth("health-redis", "bad", redisDown ? "Redis unreachable" : "api unreachable", err.message);
  }
}

function setHealth(id, level, text, title) {
  const el = $(id);
  el.className = `health-item ${level}`;
  el.textContent = text;
  el.title = title;
}

function setupToken() {
  window.addEventListener("soundcheck:unauthorized", () => {
    $("token-form").hidden = false;
  });
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    setToken($("token-input").value.trim());
    $("token-form").hidden = true;
    refreshAll();
  });
  if (getToken()) $("token-input").value = getToken();
}

// ---------------------------------------------------------------- datasets

function datasetLabel(ds) {
  const parts = [datasetName(ds.id) || shortId(ds.id, 12), `${ds.n_files} files`, fmtDuration(ds.total_duration_s)];
  if (ds.labels?.length) parts.push(`labels: ${ds.labels.slice(0, 4).join(", ")}${ds.labels.length > 4 ? "…" : ""}`);
  return parts.join(" · ");
}

async function refreshDatasets() {
  try {
    state.datasets = await api.datasets();
    showError($("datasets-error"), null);
  } catch (err) {
    showError($("datasets-error"), err);
    return;
  }
  renderDatasets();
  fillDatasetSelects();
}

function renderDatasets() {
  const list = $("datasets-list");
  if (!state.datasets.length) {
    setChildren(list, h("p", {class: "muted"}, "No datasets yet: upload files, a folder or a zip."));
    return;
  }
  const rows = state.datasets.map((ds) => h("tr", {dataset: {testid: "dataset-row", datasetId: ds.id}},
    h("td", {}, h("span", {class: "name"}, datasetName(ds.id) || ""),
      h("code", {class: "id", title: ds.id}, shortId(ds.id, 12))),
    h("td", {class: "num"}, ds.n_files),
    h("td", {class: "num"}, fmtDuration(ds.total_duration_s)),
    h("td", {}, (ds.sample_rates || []).map((r) => `${fmt(r / 1000)} kHz`).join(", ")),
    h("td", {}, (ds.labels || []).join(", ") || h("span", {class: "muted"}, "—")),
    h("td", {}, ds.source),
    h("td", {}, fmtTime(ds.created_at)),
    h("td", {}, ds.warnings?.length ? h("span", {class: "warn-text", title: ds.warnings.join("\n")},
      `${ds.warnings.length} warning${ds.warnings.length > 1 ? "s" : ""}`) : "")));
  setChildren(list, h("div", {class: "table-wrap"}, h("table", {class: "table"},
    h("thead", {}, h("tr", {}, ["Dataset", "Files", "Duration", "Rates", "Labels", "Source", "Created", ""]
      .map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, rows))));
}

function fillDatasetSelects() {
  for (const id of ["job-reference", "job-candidate"]) {
    const select = $(id);
    const previous = select.value;
    setChildren(select, h("option", {value: ""}, state.datasets.length ? "— choose a dataset —" : "— upload a dataset first —"),
      state.datasets.map((ds) => h("option", {value: ds.id, title: ds.id}, datasetLabel(ds))));
    if (state.datasets.some((ds) => ds.id === previous)) select.value = previous;
  }
}

// Relative name sent as the multipart filename: the picked folder itself is dropped, its subfolders kept
// (they are labels), matching what the Python client's zip of a directory contains.
function uploadParts() {
  const parts = [...$("upload-files").files].map((file) => ({file, name: file.name}));
  let folder = "";
  for (const file of $("upload-folder").files) {
    const rel = file.webkitRelativePath || file.name;
    const [top, ...rest] = rel.split("/");
    folder = folder || top;
    parts.push({file, name: rest.length ? rest.join("/") : rel});
  }
  return {parts, folder};
}

function describeSelection() {
  const {parts} = uploadParts();
  const bytes = parts.reduce((sum, p) => sum + p.file.size, 0);
  $("upload-selection").textContent = parts.length
    ? `${parts.length} file${parts.length > 1 ? "s" : ""}, ${fmtBytes(bytes)}` : "";
}

async function onUpload(ev) {
  ev.preventDefault();
  const {parts, folder} = uploadParts();
  showError($("upload-error"), null);
  $("upload-result").hidden = true;
  if (!parts.length) {
    showError($("upload-error"), new Error("choose audio files, a zip or a folder first"));
    return;
  }
  const button = $("upload-submit");
  const progress = $("upload-progress");
  button.disabled = true;
  progress.hidden = false;
  setChildren(progress, progressBar(0, 1, "upload"), h("span", {class: "muted small"}, "uploading…"));
  try {
    const ds = await uploadDataset(parts, $("upload-on-invalid").value, (loaded, total) => {
      setChildren(progress, progressBar(loaded, total, "upload"),
        h("span", {class: "muted small"}, loaded < total ? `${fmt(100 * loaded / total, 3)} %` : "checking the files…"));
    });
    const nickname = folder || (parts.length === 1 ? parts[0].name : `${parts[0].name} +${parts.length - 1}`);
    rememberDatasetName(ds.id, nickname);
    const result = $("upload-result");
    result.dataset.datasetId = ds.id;
    setChildren(result,
      h("strong", {}, "Uploaded "), h("span", {class: "name"}, nickname), " → dataset ",
      h("code", {title: ds.id, dataset: {testid: "uploaded-id"}}, shortId(ds.id, 12)),
      `: ${ds.n_files} files, ${fmtDuration(ds.total_duration_s)}`,
      ds.labels?.length ? `, labels ${ds.labels.join(", ")}` : "",
      ds.skipped?.length ? h("div", {class: "muted small"}, `ignored (not audio): ${ds.skipped.join(", ")}`) : null,
      ds.warnings?.length ? h("ul", {class: "warnings"}, ds.warnings.map((w) => h("li", {}, w))) : null);
    result.hidden = false;
    $("upload-form").reset();
    describeSelection();
    await refreshDatasets();
  } catch (err) {
    showError($("upload-error"), err);
  } finally {
    button.disabled = false;
    progress.hidden = true;
  }
}

// ---------------------------------------------------------------- new job

/** Metric names from GET /v1/metrics (metrics.js), else the OpenAPI enum (jobspec.METRIC_NAMES). */
async function loadMetricNames() {
  await loadMetricInfo();
  if (metricNames().length) return metricNames();
  try {
    const schema = await api.openapi();
    const names = schema.components.schemas.JobCreate.properties.metrics.items.enum;
    if (Array.isArray(names)) return names;
  } catch {
    // fall through: no metrics to offer, the form says the api cannot be read
  }
  return [];
}

async function setupJobForm() {
  const names = await loadMetricNames();  // names and help texts: GET /v1/metrics
  setChildren($("job-metrics"), names.map((name) => h("label", {class: "check", title: metricTitle(name)},
    h("input", {type: "checkbox", name: "metrics", value: name, id: `metric-${name}`, checked: name === "fad"}),
    h("span", {}, name))));
  await refreshModels();
}

async function refreshModels() {
  let models = [];
  try {
    models = await api.models();
  } catch (err) {
    setChildren($("job-embedding-note"), h("span", {class: "warn-text"}, `models unknown: ${err.message}`));
    return;
  }
  const select = $("job-embedding");
  const previous = select.value || "mel";
  const liveWorkers = state.health?.workers ?? 0;
  const unusable = [];
  setChildren(select, models.map((m) => {
    // A model no live worker has loaded is refused by the api (unless no worker runs: then the job waits).
    let why = m.available ? null : m.reason || "unavailable";
    if (!why && liveWorkers > 0 && !(m.workers || []).length) why = "available, but no live worker has it loaded";
    if (why) unusable.push([m.id, why]);
    return h("option", {value: m.id, disabled: Boolean(why), title: why || m.description || m.id},
      why ? `${m.id} — unavailable` : `${m.id} (${m.dim}-d)`);
  }));
  const usable = models.filter((m) => !unusable.some(([id]) => id === m.id)).map((m) => m.id);
  select.value = usable.includes(previous) ? previous : usable[0] || "";
  setChildren($("job-embedding-note"), unusable.length ? h("details", {},
    h("summary", {}, `${unusable.length} model${unusable.length > 1 ? "s" : ""} unavailable — why`),
    h("ul", {dataset: {testid: "model-reasons"}}, unusable.map(([id, why]) => h("li", {}, h("code", {}, id), `: ${why}`))))
    : "");
}

async function onSubmitJob(ev) {
  ev.preventDefault();
  const errorEl = $("job-form-error");
  showError(errorEl, null);
  const metrics = [...document.querySelectorAll("#job-metrics input:checked")].map((i) => i.value);
  let extra = {};
  const raw = $("job-options").value.trim();
  if (raw) {
    try {
      extra = JSON.parse(raw);
      if (typeof extra !== "object" || extra === null || Array.isArray(extra)) throw new Error("not an object");
    } catch (err) {
      showError(errorEl, new Error(`options must be a JSON object (${err.message})`));
      return;
    }
  }
  const options = {...extra};
  const bootstrap = $("job-bootstrap").value, ndbK = $("job-ndb-k").value;
  if (bootstrap !== "") options.bootstrap = Number(bootstrap);
  if (ndbK !== "") options.ndb = {...(options.ndb || {}), k: Number(ndbK)};
  const spec = {
    reference: $("job-reference").value, candidate: $("job-candidate").value, embedding: $("job-embedding").value,
    metrics, options,
  };
  const run = $("job-run").value.trim();  // issue 11: the job joins a run at a step (#/runs/<run>)
  if (run) Object.assign(spec, {run, step: Number($("job-step").value || 0)});
  if (!spec.reference || !spec.candidate) {
    showError(errorEl, new Error("choose a reference and a candidate dataset"));
    return;
  }
  if (!metrics.length) {
    showError(errorEl, new Error("choose at least one metric"));
    return;
  }
  $("job-submit").disabled = true;
  try {
    const job = await api.submitJob(spec);
    location.hash = `#/jobs/${job.id}`;
  } catch (err) {
    showError(errorEl, err);
  } finally {
    $("job-submit").disabled = false;
  }
}

// ---------------------------------------------------------------- jobs list

function jobRow(job) {
  const p = job.progress || {done: 0, total: 0, stage: ""};
  const spec = job.spec || {};
  return h("tr", {dataset: {testid: "job-row", jobId: job.id, status: job.status}},
    h("td", {}, h("a", {href: `#/jobs/${job.id}`, title: job.id}, h("code", {}, shortId(job.id, 8)))),
    h("td", {}, statusBadge(job.status)),
    h("td", {class: "progress-cell"}, progressBar(p.done, p.total, `job ${shortId(job.id, 8)} progress`),
      h("span", {class: "small muted"}, job.status === "failed" ? "failed" : `${p.done}/${p.total} · ${p.stage}`)),
    h("td", {}, spec.embedding || "—"),
    h("td", {class: "small"}, (spec.metrics || []).join(", ")),
    h("td", {class: "small"}, datasetName(spec.reference) || shortId(spec.reference, 8), " → ",
      datasetName(spec.candidate) || shortId(spec.candidate, 8)),
    h("td", {class: "small"}, fmtTime(job.created_at)));
}

async function refreshJobs() {
  clearTimeout(state.jobsTimer);
  state.jobsTimer = null;
  try {
    state.jobs = await api.jobs();
    showError($("jobs-error"), null);
  } catch (err) {
    showError($("jobs-error"), err);
    // Keep the last list on screen; while jobs were active, try again (the api may be restarting).
    if (state.jobs.some((j) => ACTIVE.has(j.status)) && !(err instanceof ApiError && err.status === 401)) {
      state.jobsTimer = setTimeout(refreshJobs, 3 * JOBS_EVERY_MS);
    }
    return;
  }
  const list = $("jobs-list");
  if (!state.jobs.length) {
    setChildren(list, h("p", {class: "muted"}, "No jobs yet."));
  } else {
    setChildren(list, h("div", {class: "table-wrap"}, h("table", {class: "table"},
      h("thead", {}, h("tr", {}, ["Job", "Status", "Progress", "Embedding", "Metrics", "Reference → candidate", "Created"]
        .map((t) => h("th", {scope: "col"}, t)))),
      h("tbody", {}, state.jobs.map(jobRow)))));
  }
  // Poll only while something can still change, and only while the list is on screen.
  const active = state.jobs.some((j) => ACTIVE.has(j.status));
  const visible = !$("view-home").hidden;
  $("jobs-polling").textContent = active && visible ? "· updating every second" : "";
  $("jobs-list").dataset.polling = String(active && visible);
  if (active && visible) state.jobsTimer = setTimeout(refreshJobs, JOBS_EVERY_MS);
}

// ---------------------------------------------------------------- routing

function route() {
  if (state.stopJobView) state.stopJobView();
  state.stopJobView = null;
  const match = location.hash.match(/^#\/jobs\/([^/?#]+)/);
  // comparisons: #/compare (the form) and #/comparisons/<id> (compare.js)
  const comparison = location.hash.match(/^#\/comparisons\/([^/?#]+)/);
  const compareForm = /^#\/compare\/?$/.test(location.hash);
  $("view-compare").hidden = !(comparison || compareForm);
  if (comparison || compareForm) {
    $("view-home").hidden = true;
    $("view-job").hidden = true;
    $("view-runs").hidden = true;
    document.body.dataset.view = "compare";
    clearTimeout(state.jobsTimer);
    state.stopJobView = comparison ? showComparison($("view-compare"), decodeURIComponent(comparison[1]))
      : showCompareForm($("view-compare"));
    return;
  }
  const runs = location.hash.match(/^#\/runs(?:\/([^/?#]+))?\/?$/);  // issue 11: runs list and run page
  $("view-home").hidden = Boolean(match || runs);
  $("view-job").hidden = !match;
  $("view-runs").hidden = !runs;
  document.body.dataset.view = match ? "job" : runs ? (runs[1] ? "run" : "runs") : "home";
  if (match) {
    clearTimeout(state.jobsTimer);
    state.stopJobView = showJob($("view-job"), decodeURIComponent(match[1]));
  } else if (runs) {
    clearTimeout(state.jobsTimer);
    state.stopJobView = runs[1] ? showRun($("view-runs"), decodeURIComponent(runs[1])) : showRuns($("view-runs"));
  } else {
    document.title = "soundcheck";
    refreshJobs();
    refreshDatasets();
  }
}

function refreshAll() {
  refreshHealth().then(refreshModels);
  route();
}

function start() {
  setupToken();
  $("upload-form").addEventListener("submit", onUpload);
  $("upload-files").addEventListener("change", describeSelection);
  $("upload-folder").addEventListener("change", describeSelection);
  $("job-form").addEventListener("submit", onSubmitJob);
  window.addEventListener("hashchange", route);
  // Jobs submitted elsewhere (CLI, training servers) show up when the user comes back to the tab.
  window.addEventListener("focus", () => {
    if (!$("view-home").hidden && !state.jobsTimer) refreshJobs();
  });
  refreshHealth().then(setupJobForm);
  setInterval(refreshHealth, HEALTH_EVERY_MS);
  route();
}

start();

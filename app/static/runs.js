// Runs (#/runs and #/runs/<name>): training runs whose jobs carry "run" and "step". The list page shows each
// run's size and last update; the run page draws one chart per metric over steps (value, interval band) and
// a click on a point opens that job. Metric titles and directions come from /v1/metrics, not from here.
import {ApiError, request} from "./api.js";
import {lineBandChart} from "./charts.js";
import {fmt, fmtTime, h, setChildren, shortId, statusBadge} from "./dom.js";

const POLL_MS = 2000;
const ACTIVE = new Set(["queued", "running"]);
let metricInfo = null;

async function metricsInfo() {
  if (metricInfo) return metricInfo;
  try {
    const list = await request("GET", "/v1/metrics");
    metricInfo = Object.fromEntries(list.map((m) => [m.name, m]));
  } catch {
    metricInfo = {};  // titles fall back to the series names
  }
  return metricInfo;
}

function crumbs(...more) {
  return h("nav", {class: "crumbs", "aria-label": "Breadcrumb"}, h("a", {href: "#/"}, "← Overview"),
    more.length ? " · " : null, more);
}

function problem(err, title) {
  return h("div", {class: "error", role: "alert", dataset: {testid: "runs-error"}},
    h("strong", {class: "error-title"}, title), h("span", {}, err.detail || err.message));
}

/** Mount the list of runs; returns a function that stops it. */
export function showRuns(container) {
  const controller = new AbortController();
  document.title = "runs · soundcheck";
  setChildren(container, crumbs(), h("h1", {}, "Runs"), h("p", {class: "muted"}, "Loading runs…"));
  request("GET", "/v1/runs?limit=200", undefined, {signal: controller.signal}).then((runs) => {
    const body = runs.length
      ? h("div", {class: "table-wrap"}, h("table", {class: "table", dataset: {testid: "runs-table"}},
        h("thead", {}, h("tr", {}, ["Run", "Steps", "Last step", "Updated"].map((t) => h("th", {scope: "col"}, t)))),
        h("tbody", {}, runs.map((r) => h("tr", {dataset: {testid: "run-row", run: r.name}},
          h("td", {}, h("a", {href: `#/runs/${encodeURIComponent(r.name)}`}, r.name)),
          h("td", {class: "num"}, r.steps), h("td", {class: "num"}, r.last_step ?? "—"),
          h("td", {class: "small"}, fmtTime(r.updated_at)))))))
      : h("p", {class: "muted"}, "No runs yet: submit jobs with \"run\" and \"step\" (see the README).");
    setChildren(container, crumbs(), h("h1", {}, "Runs"), h("section", {class: "card"}, body));
  }).catch((err) => {
    if (err.name !== "AbortError") setChildren(container, crumbs(), h("h1", {}, "Runs"), problem(err, "Cannot list runs"));
  });
  return () => controller.abort();
}

/** Mount one run's page; polls while a job of the run is queued or running. Returns a stop function. */
export function showRun(container, name) {
  let stopped = false, timer = null, shownKey = null;
  const controller = new AbortController();
  document.title = `run ${name} · soundcheck`;
  setChildren(container, crumbs(h("a", {href: "#/runs"}, "Runs")), h("p", {class: "muted"}, "Loading run…"));

  async function poll() {
    let run, info;
    try {
      [run, info] = await Promise.all([
        request("GET", `/v1/runs/${encodeURIComponent(name)}`, undefined, {signal: controller.signal}),
        metricsInfo()]);
    } catch (err) {
      if (stopped || err.name === "AbortError") return;
      const gone = err instanceof ApiError && (err.status === 404 || err.status === 422);
      setChildren(container, crumbs(h("a", {href: "#/runs"}, "Runs")), problem(err, gone ? "Run not found" : "Cannot read the run"));
      if (!gone) timer = setTimeout(poll, POLL_MS * 2);
      return;
    }
    if (stopped) return;
    // Re-render only when something changed (a job ended or joined): hover and focus survive polling.
    const key = JSON.stringify(run.points.map((p) => [p.job_id, p.status]));
    if (key !== shownKey) {
      setChildren(container, crumbs(h("a", {href: "#/runs"}, "Runs")), renderRun(run, info));
      shownKey = key;
    }
    const active = run.points.some((p) => ACTIVE.has(p.status));
    container.dataset.polling = String(active);
    if (active) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
    controller.abort();
  };
}

function seriesInfo(series, info) {
  const [base, part] = series.split(".");
  const meta = info[base] || {};
  const title = part ? `${meta.title || base}: ${part}` : (meta.title || series);
  return {title, better: meta.better};
}

function renderRun(run, info) {
  const open = (p) => { location.hash = `#/jobs/${encodeURIComponent(p.id)}`; };
  const counts = {};
  for (const p of run.points) counts[p.status] = (counts[p.status] || 0) + 1;
  const charts = run.metrics.map((series) => {
    const {title, better} = seriesInfo(series, info);
    const points = run.points.filter((p) => p.metrics[series]).map((p) => {
      const m = p.metrics[series];
      const interval = m.low !== null && m.high !== null ? ` [${fmt(m.low)}, ${fmt(m.high)}]` : "";
      return {x: p.step, y: m.value, low: m.low, high: m.high, id: p.job_id,
        label: `step ${p.step}: ${series} ${fmt(m.value)}${interval} · job ${shortId(p.job_id, 8)}`};
    });
    return h("figure", {class: "run-chart", dataset: {testid: "run-chart", metric: series}},
      h("figcaption", {}, h("strong", {}, title), better ? h("span", {class: "muted small"}, ` · ${better} is better`) : null),
      lineBandChart({points, title: `${title} over steps`, yLabel: series, onPoint: open,
        testid: `run-chart-${series}`}));
  });
  return h("article", {class: "run", dataset: {testid: "run-view", run: run.name}},
    h("h1", {}, "Run ", h("code", {}, run.name)),
    h("p", {class: "muted"}, `${run.steps} steps · last step ${run.last_step ?? "—"} · updated ${fmtTime(run.updated_at)} · `,
      Object.entries(counts).map(([s, n]) => `${n} ${s}`).join(", ")),
    h("section", {class: "card"}, h("h2", {}, "Metrics over steps"),
      charts.length ? h("div", {class: "run-charts"}, charts)
        : h("p", {class: "muted"}, "No finished job yet: the charts appear as jobs finish."),
      h("p", {class: "hint"}, "Band: the bootstrap interval of each job. Hover a point for its values; click it to open the job.")),
    h("section", {class: "card"}, h("h2", {}, "Jobs"), jobsTable(run)));
}

function jobsTable(run) {
  return h("div", {class: "table-wrap"}, h("table", {class: "table", dataset: {testid: "run-jobs"}},
    h("thead", {}, h("tr", {}, ["Step", "Job", "Status", ...run.metrics, "Tags"].map((t) => h("th", {scope: "col"}, t)))),
    h("tbody", {}, run.points.map((p) => h("tr", {dataset: {testid: "run-job-row", jobId: p.job_id}},
      h("td", {class: "num"}, p.step),
      h("td", {}, h("a", {href: `#/jobs/${encodeURIComponent(p.job_id)}`}, h("code", {}, shortId(p.job_id, 8)))),
      h("td", {}, statusBadge(p.status)),
      run.metrics.map((series) => {
        const m = p.metrics[series];
        if (!m) return h("td", {}, "");
        const interval = m.low !== null && m.high !== null ? ` [${fmt(m.low)}, ${fmt(m.high)}]` : "";
        return h("td", {class: "num"}, m.error ? "error" : `${fmt(m.value)}${interval}`);
      }),
      h("td", {class: "small"}, (p.tags || []).join(", ")))))));
}

// The comparison views: #/compare (pick a reference and candidates, as datasets or as finished jobs of one
// reference) and #/comparisons/<id> (status while it runs, then the pair table: values, difference, interval,
// p-value and the plain sentence of every pair and metric).
import {api, ApiError} from "./api.js";
import {fmt, fmtTime, h, progressBar, setChildren, shortId, statusBadge} from "./dom.js";
import {datasetName} from "./names.js";

const POLL_MS = 1000;
const ACTIVE = new Set(["queued", "running"]);
const METRICS = ["fad", "kad"];
const TITLES = {fad: "FAD", kad: "KAD"};

function label(id) {
  const name = datasetName(id);
  return name ? `${name} (${shortId(id, 8)})` : shortId(id, 12);
}

function crumbs() {
  return h("nav", {class: "crumbs", "aria-label": "Breadcrumb"}, h("a", {href: "#/", id: "back-link"}, "← Overview"),
    " · ", h("a", {href: "#/compare"}, "New comparison"));
}

function errorBox(err) {
  return h("div", {class: "error", role: "alert", dataset: {testid: "compare-error"}},
    h("strong", {class: "error-title"}, err.title || "Error"), h("span", {}, err.detail || err.message));
}

/** Short labels for the sentences: the remembered dataset names when they differ, else A, B, C... */
function labelsFor(ids) {
  const names = ids.map((id) => datasetName(id).slice(0, 64));
  const ok = names.every((n) => n) && new Set(names).size === names.length;
  return ok ? names : null;
}

/** #/compare: the form. Returns a stop function (nothing polls here). */
export function showCompareForm(container) {
  document.title = "compare · soundcheck";
  delete container.dataset.status;
  setChildren(container, crumbs(), h("p", {class: "muted"}, "Loading datasets and jobs…"));
  Promise.all([api.datasets(), api.jobs()]).then(([datasets, jobs]) => {
    renderForm(container, datasets || [], (jobs || []).filter((j) => j.status === "finished" && j.spec));
  }).catch((err) => setChildren(container, crumbs(), errorBox(err)));
  return () => {};
}

function renderForm(container, datasets, jobs) {
  const option = (ds) => h("option", {value: ds.id}, label(ds.id));
  const reference = h("select", {id: "compare-reference", required: true}, datasets.map(option));
  const candidates = h("div", {id: "compare-candidates", class: "checkgrid"}, datasets.map((ds) =>
    h("label", {class: "check"}, h("input", {type: "checkbox", value: ds.id}), label(ds.id))));
  const jobBoxes = h("div", {id: "compare-jobs", class: "checkgrid"}, jobs.map((j) =>
    h("label", {class: "check", title: `reference ${j.spec.reference}`},
      h("input", {type: "checkbox", value: j.id}), `${shortId(j.id, 8)} · ${label(j.spec.candidate)}`)));
  const metrics = h("div", {id: "compare-metrics", class: "checkgrid"}, METRICS.map((m) =>
    h("label", {class: "check"}, h("input", {type: "checkbox", value: m, checked: m === "fad"}), TITLES[m])));
  const resamples = h("input", {id: "compare-resamples", type: "number", min: 20, max: 2000, value: 1000});
  const embedding = h("input", {id: "compare-embedding", value: "mel"});
  const result = h("div", {id: "compare-form-result"});

  async function submit(ev) {
    ev.preventDefault();
    let ref = reference.value, cands = [...candidates.querySelectorAll("input:checked")].map((b) => b.value);
    let emb = embedding.value.trim() || "mel";
    const picked = [...jobBoxes.querySelectorAll("input:checked")].map((b) => jobs.find((j) => j.id === b.value));
    if (picked.length) {  // jobs decide the reference, candidates and embedding
      const refs = new Set(picked.map((j) => j.spec.reference)), embs = new Set(picked.map((j) => j.spec.embedding));
      if (refs.size !== 1 || embs.size !== 1) {
        setChildren(result, errorBox({title: "Jobs do not match", detail: "pick jobs of one reference and embedding"}));
        return;
      }
      ref = [...refs][0];
      emb = [...embs][0];
      cands = [...new Set(picked.map((j) => j.spec.candidate))];
    }
    const spec = {reference: ref, candidates: cands, embedding: emb,
      metrics: [...metrics.querySelectorAll("input:checked")].map((b) => b.value),
      options: {resamples: Number(resamples.value)}};
    const labels = labelsFor(cands);
    if (labels) spec.labels = labels;
    try {
      const view = await api.submitComparison(spec);
      location.hash = `#/comparisons/${view.id}`;
    } catch (err) {
      setChildren(result, errorBox(err));
    }
  }

  const form = h("form", {id: "compare-form", class: "card", onsubmit: submit},
    h("h1", {}, "Compare candidates"),
    h("p", {class: "hint"}, "Is B really better than A? Every candidate is scored against the same reference with " +
      "the same bootstrap resamples; sets with the same file names are resampled as pairs."),
    h("div", {class: "field"}, h("label", {for: "compare-reference"}, "Reference"), reference),
    h("fieldset", {class: "field"}, h("legend", {}, "Candidates (datasets)"), candidates),
    h("fieldset", {class: "field"}, h("legend", {}, "…or finished jobs of one reference"), jobBoxes),
    h("fieldset", {class: "field"}, h("legend", {}, "Metrics"), metrics),
    h("div", {class: "field inline"}, h("label", {for: "compare-resamples"}, "Bootstrap resamples"), resamples),
    h("div", {class: "field inline"}, h("label", {for: "compare-embedding"}, "Embedding"), embedding),
    h("div", {class: "actions"}, h("button", {type: "submit", id: "compare-submit"}, "Compare")), result);
  setChildren(container, crumbs(), form);
}

/** #/comparisons/<id>: poll until finished, then the pair table. Returns a function that stops polling. */
export function showComparison(container, id) {
  let stopped = false, timer = null;
  const controller = new AbortController();
  document.title = `comparison ${shortId(id, 8)} · soundcheck`;
  delete container.dataset.status;  // the view before (another comparison) may have left its status
  setChildren(container, crumbs(), h("p", {class: "muted"}, "Loading comparison…"));

  async function poll() {
    let view;
    try {
      view = await api.comparison(id, {signal: controller.signal});
    } catch (err) {
      if (stopped || err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 404) {
        setChildren(container, crumbs(), errorBox({title: "Comparison not found", detail: err.detail}));
        return;
      }
      timer = setTimeout(poll, POLL_MS * 3);
      return;
    }
    if (stopped) return;
    setChildren(container, crumbs(), render(view));
    container.dataset.status = view.status;
    if (ACTIVE.has(view.status)) timer = setTimeout(poll, POLL_MS);
  }

  poll();
  return () => {
    stopped = true;
    clearTimeout(timer);
    controller.abort();
  };
}

function render(view) {
  const p = view.progress || {done: 0, total: 0, stage: ""};
  const parts = [
    h("h1", {class: "job-title"}, "Comparison ", h("code", {id: "comparison-id", title: view.id}, view.id)),
    view.spec ? h("p", {class: "muted"}, `reference ${label(view.spec.reference)} · embedding ${view.spec.embedding} · `
      + `created ${fmtTime(view.created_at)}`) : null,
    h("div", {class: "status-block", dataset: {testid: "comparison-status"}}, statusBadge(view.status),
      progressBar(p.done, p.total, "comparison progress"),
      h("span", {class: "muted"}, p.total ? `${p.done} / ${p.total} files · ${p.stage}` : p.stage)),
  ];
  if (view.status === "failed") parts.push(errorBox({title: "The comparison failed", detail: view.error}));
  if (view.status === "finished" && view.result) parts.push(...renderResult(view.result));
  return h("article", {class: "job", dataset: {testid: "comparison-view", comparisonId: view.id}}, parts);
}

function renderResult(result) {
  const level = `${Math.round(100 * result.confidence)}%`;
  const scores = h("table", {class: "table", id: "comparison-scores"},
    h("thead", {}, h("tr", {}, h("th", {}, "candidate"), h("th", {}, "dataset"), h("th", {class: "num"}, "files"),
      Object.keys(result.candidates[0]?.metrics || {}).map((m) => h("th", {class: "num"}, TITLES[m] || m)))),
    h("tbody", {}, result.candidates.map((c) => h("tr", {},
      h("th", {}, c.label), h("td", {}, h("code", {title: c.dataset}, shortId(c.dataset, 12))),
      h("td", {class: "num"}, c.n_files),
      Object.values(c.metrics).map((s) => h("td", {class: "num"}, fmt(s.value)))))));
  const rows = [];
  for (const pair of result.pairs) {
    for (const [metric, d] of Object.entries(pair.metrics)) {
      const significant = d.p_value !== null && d.p_value < 1 - d.level;
      rows.push(h("tr", {dataset: {testid: "pair-row", metric, significant: String(significant)}},
        h("th", {}, `${pair.b} vs ${pair.a}`, pair.paired_by_name ? h("span", {class: "muted small"}, " paired") : null),
        h("td", {}, TITLES[metric] || metric),
        h("td", {class: "num"}, fmt(d.difference)),
        h("td", {class: "num"}, d.low === null ? "—" : `[${fmt(d.low)}, ${fmt(d.high)}]`),
        h("td", {class: "num", dataset: {testid: "p-value"}}, d.p_value === null ? "—" : fmt(d.p_value, 2)),
        h("td", {class: significant ? "sentence" : "sentence muted", dataset: {testid: "sentence"}}, d.sentence)));
    }
  }
  const pairs = h("table", {class: "table", id: "comparison-pairs"},
    h("thead", {}, h("tr", {}, h("th", {}, "pair"), h("th", {}, "metric"), h("th", {class: "num"}, "b − a"),
      h("th", {class: "num"}, `${level} interval`), h("th", {class: "num"}, "p"), h("th", {}, "in words"))),
    h("tbody", {}, rows));
  const method = result.pairs[0] ? Object.values(result.pairs[0].metrics)[0] : null;
  const out = [
    h("section", {class: "card"}, h("h2", {}, "Scores"), h("div", {class: "table-wrap"}, scores)),
    h("section", {class: "card"}, h("h2", {}, "Differences"), h("div", {class: "table-wrap"}, pairs),
      method ? h("p", {class: "hint"}, `${result.resamples} resamples (seed ${result.seed}); interval: ` +
        `${method.interval_method}; p-value: ${method.p_value_method}.`) : null),
  ];
  if (result.warnings?.length) {
    out.push(h("section", {class: "card warnings-card"}, h("h2", {}, "Warnings"),
      h("ul", {class: "warnings"}, result.warnings.map((w) => h("li", {}, w)))));
  }
  return out;
}

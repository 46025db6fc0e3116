"""Tables of runs and comparisons for papers and scripts: plain text, JSON, CSV and LaTeX (booktabs).

The companions of :mod:`soundcheck.export` (one job's result) for ``soundcheck runs list|show`` and
``soundcheck compare``: pure functions of the typed models (:class:`RunSummary`, :class:`RunView`,
:class:`ComparisonView`), shared by the CLI and the api (``GET /v1/runs/{name}`` and
``GET /v1/comparisons/{id}`` with ``Accept: text/csv``) so both give the same bytes. The CSVs are long (one row
per step and metric, one per pair and metric): what a plotting script or a spreadsheet pivot wants. The text and
LaTeX tables of a run are wide (one row per step, one column per metric): what a reader scans.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence

from soundcheck.comparespec import ComparisonView, MetricDifference
from soundcheck.export import FORMATS, _latex_name, _num, _short, latex_escape
from soundcheck.jobspec import RunSummary, RunView
from soundcheck.plots import RunPoint

RUNS_CSV_COLUMNS = ("run", "steps", "last_step", "updated_at")
RUN_CSV_COLUMNS = ("run", "step", "job_id", "status", "metric", "value", "low", "high", "confidence", "error")
COMPARISON_CSV_COLUMNS = ("a", "b", "paired_by_name", "metric", "a_value", "b_value", "difference", "low", "high",
                          "level", "p_value", "resamples", "valid", "interval_method", "p_value_method")


def _check(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


def aligned(header: Sequence[str], body: Sequence[Sequence[str]], left: frozenset[int] = frozenset({0})) -> str:
    """Aligned plain text like :func:`soundcheck.export.to_table`: columns in ``left`` are left-justified (names),
    the others right-justified (numbers), two spaces apart, a dashed rule under the header."""
    table = [list(header), *(list(r) for r in body)]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i in left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(table[0]), "  ".join("-" * w for w in widths), *(line(r) for r in table[1:])]) + "\n"


def _csv(header: Sequence[str], body: Sequence[Sequence[str]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(body)
    return buf.getvalue()


def _span(low: float | None, high: float | None) -> str:
    return f"[{_short(low)}, {_short(high)}]" if low is not None and high is not None else ""


def _booktabs(columns: str, header: str, body: Sequence[str]) -> str:
    return "\n".join([rf"\begin{{tabular}}{{{columns}}}", r"\toprule", header + r" \\", r"\midrule",
                      *(row + r" \\" for row in body), r"\bottomrule", r"\end{tabular}"]) + "\n"


# --- soundcheck runs list ---

def runs_csv(runs: Sequence[RunSummary]) -> str:
    return _csv(RUNS_CSV_COLUMNS, [[r.name, str(r.steps), _num(r.last_step),
                                    r.updated_at.isoformat() if r.updated_at else ""] for r in runs])


def render_runs(runs: Sequence[RunSummary], fmt: str) -> str:
    """``soundcheck runs list --format fmt``; json is the list as ``GET /v1/runs`` answers it."""
    _check(fmt)
    if fmt == "json":
        return json.dumps([r.model_dump(mode="json") for r in runs], indent=2) + "\n"
    if fmt == "csv":
        return runs_csv(runs)
    if fmt == "latex":
        return _booktabs("lrr", r"Run & Steps & Last step",
                         [f"{latex_escape(r.name)} & {r.steps} & {_num(r.last_step) or '--'}" for r in runs])
    return aligned(("run", "steps", "last step", "updated"),
                   [[r.name, str(r.steps), _num(r.last_step),
                     r.updated_at.strftime("%Y-%m-%d %H:%M:%S") if r.updated_at else ""] for r in runs],
                   left=frozenset({0, 3}))


# --- soundcheck runs show NAME ---

def run_csv(run: RunView) -> str:
    """One row per step and metric in step order; a job without metrics (queued, failed) gets one row with an
    empty metric, its status and its error, so that no job of the run goes missing from the file."""
    body = []
    for p in run.points:
        names = [m for m in run.metrics if m in p.metrics] or [""]
        for name in names:
            m = p.metrics.get(name)
            error = (m.error if m is not None else None) or p.error or ""
            body.append([run.name, str(p.step), p.job_id, p.status, name, _num(m.value if m else None),
                         _num(m.low if m else None), _num(m.high if m else None),
                         _num(m.confidence if m else None), error])
    return _csv(RUN_CSV_COLUMNS, body)


def _run_cells(run: RunView, maths: bool) -> list[list[str]]:
    rows = []
    for p in run.points:
        cells = []
        for name in run.metrics:
            m = p.metrics.get(name)
            if m is None or (m.value is None and not m.error):
                cells.append("--" if maths else "")
            elif m.error or m.value is None:
                cells.append("--" if maths else "error")
            elif maths:
                span = f" $[{_short(m.low)}, {_short(m.high)}]$" if m.low is not None and m.high is not None else ""
                cells.append(f"${_short(m.value)}${span}")
            else:
                cells.append(f"{_short(m.value)} {_span(m.low, m.high)}".rstrip())
        rows.append(cells)
    return rows


def render_run(run: RunView, fmt: str) -> str:
    """``soundcheck runs show NAME --format fmt``; json is the run as ``GET /v1/runs/{name}`` answers it."""
    _check(fmt)
    if fmt == "json":
        return run.model_dump_json(indent=2) + "\n"
    if fmt == "csv":
        return run_csv(run)
    if fmt == "latex":
        head = " & ".join(["Step", *(_latex_name(m) for m in run.metrics)])
        body = [" & ".join([str(p.step), *cells]) for p, cells in zip(run.points, _run_cells(run, True),
                                                                      strict=True)]
        return _booktabs("r" * (1 + len(run.metrics)), head, body)
    body = [[str(p.step), p.job_id[:12], p.status, *cells]
            for p, cells in zip(run.points, _run_cells(run, False), strict=True)]
    return aligned(("step", "job", "status", *run.metrics), body, left=frozenset({1, 2}))


def run_series(run: RunView) -> dict[str, list[RunPoint]]:
    """The curves of :func:`soundcheck.plots.plot_run`: per metric, (step, value, low, high) of each job that
    has a value (unfinished or failed jobs have none and are left out)."""
    series: dict[str, list[RunPoint]] = {}
    for name in run.metrics:
        points = [(p.step, m.value, m.low, m.high) for p in run.points
                  if (m := p.metrics.get(name)) is not None and m.value is not None]
        if points:
            series[name] = points
    return series


# --- soundcheck compare ---

def _pairs(view: ComparisonView) -> list[tuple[str, str, bool, str, MetricDifference]]:
    result = view.result
    return [(pair.a, pair.b, pair.paired_by_name, metric, d) for pair in (result.pairs if result else [])
            for metric, d in pair.metrics.items()]


def comparison_csv(view: ComparisonView) -> str:
    """One row per pair and metric: both values, the difference b − a, its interval and the p-value."""
    body = [[a, b, "true" if paired else "false", metric, _num(d.a_value), _num(d.b_value), _num(d.difference),
             _num(d.low), _num(d.high), _num(d.level), _num(d.p_value), str(d.resamples), str(d.valid),
             d.interval_method, d.p_value_method] for a, b, paired, metric, d in _pairs(view)]
    return _csv(COMPARISON_CSV_COLUMNS, body)


def _p(p: float | None) -> str:
    return "—" if p is None else f"{p:.3g}"


def _level(view: ComparisonView) -> int:
    if view.result is not None:
        return round(100 * view.result.confidence)
    return round(100 * view.spec.options.confidence) if view.spec else 95


def render_comparison(view: ComparisonView, fmt: str) -> str:
    """``soundcheck compare ... --format fmt``; json is the comparison as ``GET /v1/comparisons/{id}`` answers
    it; the text table is followed by each difference's plain sentence."""
    _check(fmt)
    if fmt == "json":
        return view.model_dump_json(indent=2) + "\n"
    if fmt == "csv":
        return comparison_csv(view)
    rows = _pairs(view)
    if fmt == "latex":
        head = rf"Pair & Metric & $a$ & $b$ & $b - a$ & {_level(view)}\% interval & $p$"
        body = [f"{latex_escape(f'{b} vs {a}')} & {_latex_name(metric)} & ${_short(d.a_value)}$ & "
                f"${_short(d.b_value)}$ & ${_short(d.difference)}$ & "
                + (f"$[{_short(d.low)}, {_short(d.high)}]$" if d.low is not None and d.high is not None
                   else "--") + f" & ${_p(d.p_value)}$" for a, b, _, metric, d in rows]
        return _booktabs("llrrrrr", head, body)
    body = [[f"{b} vs {a}" + (" (paired)" if paired else ""), metric, _short(d.a_value), _short(d.b_value),
             _short(d.difference), _span(d.low, d.high), _p(d.p_value)]
            for a, b, paired, metric, d in rows]
    table = aligned(("pair (b vs a)", "metric", "a", "b", "b − a", f"{_level(view)}% interval", "p"), body,
                    left=frozenset({0, 1}))
    sentences = [d.sentence for *_, d in rows]
    return table + ("\n" + "\n".join(sentences) + "\n" if sentences else "")

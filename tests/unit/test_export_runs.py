"""Exports of a known run, run list and comparison: the expected table, CSV and LaTeX are written out here from
the values themselves (never captured from our own output); the run's figures are real PNG/SVG files."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from soundcheck import export_runs
from soundcheck.comparespec import ComparisonView
from soundcheck.jobspec import RunMetric, RunPoint, RunSummary, RunView
from tests.unit.test_export import _check_figures

A, B, C, D = ("a" * 32, "b" * 32, "c" * 32, "d" * 32)
RUN = RunView(name="exp.2:a", steps=3, last_step=3000, metrics=["fad", "prdc.precision"], points=[
    RunPoint(step=0, job_id=A, status="finished", metrics={
        "fad": RunMetric(value=9.0, low=8.0, high=10.5, confidence=0.95),
        "prdc.precision": RunMetric(value=0.125)}),
    RunPoint(step=1000, job_id=B, status="finished", metrics={
        "fad": RunMetric(value=3.14159265, low=2.5, high=4.0625, confidence=0.95),
        "prdc.precision": RunMetric(error="prdc: too few files")}),
    RunPoint(step=1000, job_id=C, status="queued"),
    RunPoint(step=3000, job_id=D, status="failed", error="boom, really"),
])
RUNS = [RunSummary(name="exp.2:a", steps=3, last_step=3000, updated_at=datetime(2026, 12, 1, 11, 0, 5, tzinfo=UTC)),
        RunSummary(name="other", steps=1, last_step=7)]


def _difference(a: float, b: float, low: float, high: float, p: float, valid: int, sentence: str) -> dict:
    return {"a_value": a, "b_value": b, "difference": b - a, "low": low, "high": high, "level": 0.95, "p_value": p,
            "resamples": 1000, "valid": valid, "bias": 0.0, "interval_method": "percentile",
            "p_value_method": "bootstrap", "sentence": sentence}


FAD_SENTENCE = "noisy has higher FAD than A: 1.75 [0.5, 3], p = 0.004"
KAD_SENTENCE = "noisy and A do not differ significantly in KAD: -0.025 [-0.0625, 0.01562], p = 0.5"
COMPARISON = ComparisonView.model_validate({
    "id": "f" * 32, "status": "finished", "progress": {"stage": "finished"},
    "spec": {"reference": "r", "candidates": ["x", "y"], "labels": ["A", "noisy"], "metrics": ["fad", "kad"]},
    "result": {"reference": {"id": "r"}, "embedding": "mel", "resamples": 1000, "confidence": 0.95, "seed": 0,
               "candidates": [], "pairs": [{"a": "A", "b": "noisy", "paired_by_name": False, "metrics": {
                   "fad": _difference(2.5, 4.25, 0.5, 3.0, 0.004, 998, FAD_SENTENCE),
                   "kad": _difference(0.125, 0.1, -0.0625, 0.015625, 0.5, 1000, KAD_SENTENCE)}}]}})


def test_run_csv_has_one_row_per_step_and_metric_and_keeps_unfinished_jobs() -> None:
    expected = [
        ["run", "step", "job_id", "status", "metric", "value", "low", "high", "confidence", "error"],
        ["exp.2:a", "0", A, "finished", "fad", "9.0", "8.0", "10.5", "0.95", ""],
        ["exp.2:a", "0", A, "finished", "prdc.precision", "0.125", "", "", "", ""],
        ["exp.2:a", "1000", B, "finished", "fad", "3.14159265", "2.5", "4.0625", "0.95", ""],
        ["exp.2:a", "1000", B, "finished", "prdc.precision", "", "", "", "", "prdc: too few files"],
        ["exp.2:a", "1000", C, "queued", "", "", "", "", "", ""],
        ["exp.2:a", "3000", D, "failed", "", "", "", "", "", "boom, really"],
    ]
    text = export_runs.render_run(RUN, "csv")
    assert list(csv.reader(io.StringIO(text))) == expected
    assert text.splitlines()[-1] == f'exp.2:a,3000,{D},failed,,,,,,"boom, really"'  # quoted: it holds a comma


def test_run_table_is_wide_one_row_per_job() -> None:
    widths = (4, 12, 8, 18, 14)  # step, job (12 characters of the id), status, fad, prdc.precision

    def row(*cells: str) -> str:
        return "  ".join(c.ljust(w) if i in (1, 2) else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    assert export_runs.render_run(RUN, "table").splitlines() == [
        row("step", "job", "status", "fad", "prdc.precision"),
        "----  ------------  --------  ------------------  --------------",
        row("0", "a" * 12, "finished", "9 [8, 10.5]", "0.125"),
        row("1000", "b" * 12, "finished", "3.142 [2.5, 4.062]", "error"),
        f"1000  {'c' * 12}  queued",
        f"3000  {'d' * 12}  failed",
    ]


def test_run_latex_is_a_booktabs_tabular_with_a_column_per_metric() -> None:
    assert export_runs.render_run(RUN, "latex").splitlines() == [
        r"\begin{tabular}{rrr}", r"\toprule", r"Step & FAD & PRDC precision \\", r"\midrule",
        r"0 & $9$ $[8, 10.5]$ & $0.125$ \\",
        r"1000 & $3.142$ $[2.5, 4.062]$ & -- \\",
        r"1000 & -- & -- \\",
        r"3000 & -- & -- \\",
        r"\bottomrule", r"\end{tabular}"]


def test_run_json_is_the_run_as_the_api_answers_it() -> None:
    assert RunView.model_validate_json(export_runs.render_run(RUN, "json")) == RUN


def test_run_series_has_the_points_with_a_value() -> None:
    assert export_runs.run_series(RUN) == {"fad": [(0, 9.0, 8.0, 10.5), (1000, 3.14159265, 2.5, 4.0625)],
                                           "prdc.precision": [(0, 0.125, None, None)]}


def test_runs_list_in_every_format() -> None:
    assert list(csv.reader(io.StringIO(export_runs.render_runs(RUNS, "csv")))) == [
        ["run", "steps", "last_step", "updated_at"], ["exp.2:a", "3", "3000", "2026-12-01T11:00:05+00:00"],
        ["other", "1", "7", ""]]
    assert export_runs.render_runs(RUNS, "table").splitlines() == [
        "run      steps  last step  updated",
        "-------  -----  ---------  -------------------",
        "exp.2:a      3       3000  2026-12-01 11:00:05",
        "other        1          7"]
    assert export_runs.render_runs(RUNS, "latex").splitlines() == [
        r"\begin{tabular}{lrr}", r"\toprule", r"Run & Steps & Last step \\", r"\midrule",
        r"exp.2:a & 3 & 3000 \\", r"other & 1 & 7 \\", r"\bottomrule", r"\end{tabular}"]
    assert [RunSummary.model_validate(r) for r in __import__("json").loads(export_runs.render_runs(RUNS, "json"))
            ] == RUNS


def test_comparison_csv_has_one_row_per_pair_and_metric() -> None:
    assert list(csv.reader(io.StringIO(export_runs.render_comparison(COMPARISON, "csv")))) == [
        ["a", "b", "paired_by_name", "metric", "a_value", "b_value", "difference", "low", "high", "level",
         "p_value", "resamples", "valid", "interval_method", "p_value_method"],
        ["A", "noisy", "false", "fad", "2.5", "4.25", "1.75", "0.5", "3.0", "0.95", "0.004", "1000", "998",
         "percentile", "bootstrap"],
        ["A", "noisy", "false", "kad", "0.125", "0.1", repr(0.1 - 0.125), "-0.0625", "0.015625", "0.95", "0.5",
         "1000", "1000", "percentile", "bootstrap"]]


def test_comparison_table_then_the_sentences() -> None:
    kad_diff = f"{0.1 - 0.125:.4g}"  # -0.025
    assert kad_diff == "-0.025"
    assert export_runs.render_comparison(COMPARISON, "table").splitlines() == [
        "pair (b vs a)  metric      a     b   b − a        95% interval      p",
        "-------------  ------  -----  ----  ------  ------------------  -----",
        "noisy vs A     fad       2.5  4.25    1.75            [0.5, 3]  0.004",
        "noisy vs A     kad     0.125   0.1  -0.025  [-0.0625, 0.01562]    0.5",
        "",
        FAD_SENTENCE,
        KAD_SENTENCE]


def test_comparison_latex_is_a_booktabs_tabular() -> None:
    assert export_runs.render_comparison(COMPARISON, "latex").splitlines() == [
        r"\begin{tabular}{llrrrrr}", r"\toprule",
        r"Pair & Metric & $a$ & $b$ & $b - a$ & 95\% interval & $p$ \\", r"\midrule",
        r"noisy vs A & FAD & $2.5$ & $4.25$ & $1.75$ & $[0.5, 3]$ & $0.004$ \\",
        r"noisy vs A & KAD & $0.125$ & $0.1$ & $-0.025$ & $[-0.0625, 0.01562]$ & $0.5$ \\",
        r"\bottomrule", r"\end{tabular}"]
    assert ComparisonView.model_validate_json(export_runs.render_comparison(COMPARISON, "json")) == COMPARISON


def test_unknown_format_is_refused() -> None:
    for render, model in ((export_runs.render_run, RUN), (export_runs.render_runs, RUNS),
                          (export_runs.render_comparison, COMPARISON)):
        with pytest.raises(ValueError, match="unknown format"):
            render(model, "xlsx")  # type: ignore[operator]


def test_run_figures_one_per_metric_as_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from soundcheck.cli_runs import plot_run_view

    written = plot_run_view(RUN, tmp_path)
    assert sorted(p.name for p in written) == [f"run-exp_2_a-{m}.{s}" for m in ("fad", "prdc_precision")
                                               for s in ("png", "svg")]
    _check_figures(written)


def test_compare_and_runs_take_the_output_options() -> None:
    from soundcheck.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["compare", "ref", "a", "b", "--format", "latex"])
    assert (args.format, args.json) == ("latex", False)
    assert parser.parse_args(["compare", "ref", "a", "b"]).format == "table"
    args = parser.parse_args(["runs", "show", "exp", "--format", "csv", "--plot", "figs"])
    assert (args.name, args.format, args.plot) == ("exp", "csv", "figs")

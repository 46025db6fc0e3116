"""Exports of a known result: the expected table, CSV and LaTeX are written out here from the values themselves
(never captured from our own output), figures are real PNG/SVG files, and NDB names the files nearest a bin."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from soundcheck import export
from soundcheck.evaluation import FileEmbedding, evaluate_embeddings
from soundcheck.jobspec import MetricOptions
from soundcheck.results import EvaluationResult, FadPerFileResult, NdbResult, PrdcResult

FAD = {"value": 3.14159265, "interval": {"low": 2.5, "high": 4.0625, "confidence": 0.95, "method": "basic",
                                           "resamples": 100, "valid": 100},
       "n_reference": 72, "n_candidate": 48, "frames_reference": 700, "frames_candidate": 480}
PRDC = {"value": None, "interval": None, "k": 5, "unit": "file", "n_reference": 72, "n_candidate": 48,
        "precision": {"value": 0.875, "interval": {"low": 0.75, "high": 0.9375, "confidence": 0.95,
                                                   "method": "bias-shifted"}},
        "recall": {"value": 0.5, "interval": None}}
KAD = {"value": None, "interval": None, "error": "kad: too few frames"}
NDB = {"value": 2, "interval": None, "ndb": 2, "k": 4, "jsd": 0.125, "different_bins": [1, 3], "alpha": 0.05,
       "n_reference": 72, "n_candidate": 48,
       "bins": {"reference_proportions": [0.4, 0.3, 0.2, 0.1], "candidate_proportions": [0.45, 0.1, 0.3, 0.15],
                "standard_errors": [0.05, 0.04, 0.03, 0.02], "z": [1, -5, 3, 2], "p_values": [0.3, 0.0, 0.01, 0.04]},
       "bin_files": [{"bin": 1, "candidate": ["c1.wav"], "reference": ["r1.wav", "r2.wav"]}]}
PER_FILE = {"value": 10.5, "interval": None, "worst": [{"name": "bad_one.wav", "fad": 30.25, "frames": 10},
                                                      {"name": "sub/so_so.wav", "fad": 12.0, "frames": 9}]}
FAD_INF = {"value": 1.5, "interval": None, "slope": 200.0, "r2": 0.99,
           "points": [{"n": 100, "fad": 3.5}, {"n": 200, "fad": 2.5}, {"n": 400, "fad": 2.0}]}
RESULT = {"metrics": {"fad": FAD, "prdc": PRDC, "kad": KAD}, "warnings": ["w1"]}


def test_typed_models_read_each_metric_entry() -> None:
    result = EvaluationResult.of({"metrics": {"prdc": PRDC, "ndb": NDB, "fad_per_file": PER_FILE}})
    assert isinstance(result.metrics["prdc"], PrdcResult) and result.metrics["prdc"].precision.value == 0.875
    assert isinstance(result.metrics["ndb"], NdbResult) and result.metrics["ndb"].bin_files[0].reference[1] == "r2.wav"
    assert isinstance(result.metrics["fad_per_file"], FadPerFileResult)
    assert result.metrics["fad_per_file"].worst[0].name == "bad_one.wav"


def test_csv_has_one_row_per_estimate_with_full_precision() -> None:
    text = export.to_csv(EvaluationResult.of(RESULT))
    expected = [
        ["metric", "value", "low", "high", "confidence", "method", "n_reference", "n_candidate", "error"],
        ["fad", "3.14159265", "2.5", "4.0625", "0.95", "basic", "72", "48", ""],
        ["prdc.precision", "0.875", "0.75", "0.9375", "0.95", "bias-shifted", "72", "48", ""],
        ["prdc.recall", "0.5", "", "", "", "", "72", "48", ""],
        ["kad", "", "", "", "", "", "", "", "kad: too few frames"],
    ]
    assert list(csv.reader(io.StringIO(text))) == expected
    assert text == "".join(",".join(row) + "\n" for row in expected)  # no quoting needed for these cells


def test_table_is_aligned_plain_text_with_four_significant_digits() -> None:
    body = [("metric", "value", "interval", "n ref", "n cand"),
            ("fad", "3.142", "[2.5, 4.062]", "72", "48"),
            ("prdc.precision", "0.875", "[0.75, 0.9375]", "72", "48"),
            ("prdc.recall", "0.5", "", "72", "48"),
            ("kad", "not computed", "", "", "")]
    widths = [max(len(r[i]) for r in body) for i in range(5)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths,
                                                                                         strict=True))).rstrip()
             for r in body]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append("kad: kad: too few frames")
    assert export.to_table(EvaluationResult.of(RESULT)) == "\n".join(lines) + "\n"


def test_latex_is_a_booktabs_tabular() -> None:
    text = export.to_latex(EvaluationResult.of({"metrics": {"fad": FAD, "prdc": PRDC}}))
    assert text.splitlines() == [
        r"\begin{tabular}{lrrrr}", r"\toprule",
        r"Metric & Value & 95\% interval & $n_\mathrm{ref}$ & $n_\mathrm{cand}$ \\", r"\midrule",
        r"FAD & $3.142$ & $[2.5, 4.062]$ & 72 & 48 \\",
        r"PRDC precision & $0.875$ & $[0.75, 0.9375]$ & 72 & 48 \\",
        r"PRDC recall & $0.5$ & -- & 72 & 48 \\",
        r"\bottomrule", r"\end{tabular}"]
    assert export.latex_escape("a_b&c%") == r"a\_b\&c\%"


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        export.render(EvaluationResult(), "xlsx")


def _check_figures(paths: list[Path]) -> None:
    assert paths, "no figure written"
    for path in paths:
        data = path.read_bytes()
        assert len(data) > 1000, path
        if path.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            root = ET.fromstring(data)
            assert root.tag.endswith("svg") and any(True for _ in root.iter())


def test_figures_are_written_as_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from soundcheck.plots import plot_result, plot_run

    result = EvaluationResult.of({"metrics": {"ndb": NDB, "fad_per_file": PER_FILE, "fad_inf": FAD_INF}})
    written = plot_result(result, tmp_path, stem="t")
    assert sorted(p.name for p in written) == sorted(f"t-{f}.{s}" for f in ("ndb", "fad-per-file", "fad-inf")
                                                     for s in ("png", "svg"))
    _check_figures(written)
    run = {"fad": [(200, 2.0, 1.5, 2.5), (100, 3.0, 2.0, 4.0), (300, 1.8, None, None)], "kad": [(100, 0.5, None, None)]}
    _check_figures(plot_run(run, tmp_path / "run"))


def test_ndb_names_the_files_nearest_a_differing_bin_centre() -> None:
    """1-D embeddings (whitening keeps the order of distances): two reference clusters at 0 and 10; the candidate
    sits at 0 but for one file at 9, so the bin at 10 differs and that file is the candidate nearest it, and the
    nearest reference files are those nearest the cluster's mean, which is the k-means centre."""
    rng = np.random.default_rng(3)
    low, high = rng.normal(0, 1, 40), rng.normal(10, 1, 40)
    ref = [FileEmbedding(f"low{i}.wav", np.array([[v]])) for i, v in enumerate(low)]
    ref += [FileEmbedding(f"high{i}.wav", np.array([[v]])) for i, v in enumerate(high)]
    cand = [FileEmbedding(f"c{i}.wav", np.array([[v]])) for i, v in enumerate(rng.normal(0, 1, 40))]
    cand.append(FileEmbedding("odd.wav", np.array([[9.0]])))
    options = MetricOptions.model_validate({"bootstrap": 0, "ndb": {"k": 2}})
    ndb = evaluate_embeddings(["ndb"], ref, cand, options)["metrics"]["ndb"]
    assert ndb["different_bins"], ndb
    entry = ndb["bin_files"][0]
    high_bin = entry["bin"]
    assert entry["candidate"][0] == "odd.wav"
    expected = [f"high{i}" + ".wav" for i in np.argsort(np.abs(high - high.mean()), kind="stable")[:3]]
    assert entry["reference"] == expected, (high_bin, entry)


def test_figures_without_matplotlib_say_which_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The light client imports soundcheck.plots (and the CLI parses --plot) without matplotlib; drawing says
    what to install instead of a traceback."""
    import sys

    from soundcheck import plots

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(plots.PlotsUnavailable, match=r"soundcheck\[plots\]"):
        plots.plot_run({"fad": [(1, 1.0, None, None)]}, tmp_path / "run")
    assert not list(tmp_path.iterdir())

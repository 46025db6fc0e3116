"""Figures for papers (``soundcheck eval --plot DIR``): PNG and SVG with matplotlib, from typed results.

matplotlib is the ``plots`` extra: it is imported inside :func:`_pyplot`, so the light client imports this module
(and the CLI runs) without it and only ``--plot`` says it is missing. Each function draws one figure and writes
``<path>.png`` and ``<path>.svg``; it returns the files written.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from soundcheck.results import EvaluationResult, FadInfResult, FadPerFileResult, NdbResult

#: One point of a run curve: (step, value, interval low, interval high); low/high None when there is none.
RunPoint = tuple[int, float | None, float | None, float | None]
SUFFIXES = (".png", ".svg")
DPI = 150


class PlotsUnavailable(RuntimeError):
    """matplotlib is not installed (the light client): pip install 'soundcheck[plots]'."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, no GUI toolkit
        import matplotlib.pyplot as plt
    except ModuleNotFoundError as exc:
        raise PlotsUnavailable("figures need matplotlib: pip install 'soundcheck[plots]'") from exc
    return plt


def _save(fig: Any, path: Path) -> list[Path]:
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix in SUFFIXES:
        target = path.with_suffix(suffix)
        fig.savefig(target, dpi=DPI, bbox_inches="tight", metadata={"Date": None} if suffix == ".svg" else None)
        written.append(target)
    _pyplot().close(fig)
    return written


def plot_ndb(ndb: NdbResult, path: Path) -> list[Path]:
    """Bin proportions of reference and candidate side by side, bins by decreasing reference size, with the
    standard error of each bin's two-proportion test as error bars and the bins that differ marked: the
    histogram figure of Richardson & Weiss (NeurIPS 2018, Fig. 2)."""
    plt = _pyplot()
    bins = ndb.bins
    if bins is None or not bins.reference_proportions:
        raise ValueError("this NDB result has no bins to draw")
    k = len(bins.reference_proportions)
    x = list(range(k))
    ref = [v or 0.0 for v in bins.reference_proportions]
    cand = [v or 0.0 for v in bins.candidate_proportions]
    se = [v or 0.0 for v in bins.standard_errors] or None
    fig, ax = plt.subplots(figsize=(max(6.0, 0.12 * k + 2), 3.2))
    width = 0.4
    ax.bar([i - width / 2 for i in x], ref, width, yerr=se, capsize=1.5, label="reference", color="#4c72b0",
           error_kw={"elinewidth": 0.6})
    ax.bar([i + width / 2 for i in x], cand, width, yerr=se, capsize=1.5, label="candidate", color="#dd8452",
           error_kw={"elinewidth": 0.6})
    for b in ndb.different_bins:
        ax.axvspan(b - 0.5, b + 0.5, color="#c44e52", alpha=0.12, lw=0)
    ax.set_xlabel("bin (decreasing reference size)")
    ax.set_ylabel("proportion")
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_title(f"NDB = {ndb.ndb} of K = {k} bins differ (JSD {ndb.jsd:.3g} nats)" if ndb.jsd is not None
                 else f"NDB = {ndb.ndb} of K = {k}")
    ax.legend(frameon=False)
    return _save(fig, path)


def plot_fad_per_file(entry: FadPerFileResult, path: Path) -> list[Path]:
    """The worst candidate files by their own FAD against the reference, worst on top."""
    plt = _pyplot()
    worst = [w for w in entry.worst if w.fad is not None]
    if not worst:
        raise ValueError("this per-file FAD result lists no files")
    fig, ax = plt.subplots(figsize=(6.0, 0.25 * len(worst) + 1.2))
    ax.barh(range(len(worst)), [w.fad for w in worst], color="#4c72b0")
    ax.set_yticks(range(len(worst)), [w.name for w in worst], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("FAD of the file")
    ax.set_title("worst candidate files (per-file FAD)")
    return _save(fig, path)


def plot_fad_inf(entry: FadInfResult, path: Path) -> list[Path]:
    """FAD of candidate subsets against 1/N and the fitted line, whose intercept at 1/N = 0 is FAD-∞
    (Chong & Forsyth, CVPR 2020, Fig. 3)."""
    plt = _pyplot()
    points = [(1.0 / p.n, p.fad) for p in entry.points if p.fad is not None]
    if not points:
        raise ValueError("this FAD-inf result has no points")
    fig, ax = plt.subplots(figsize=(5.0, 3.2))
    ax.scatter([p[0] for p in points], [p[1] for p in points], label="FAD of N-frame subsets", color="#4c72b0")
    if entry.value is not None and entry.slope is not None:
        xs = [0.0, max(p[0] for p in points)]
        ax.plot(xs, [entry.value + entry.slope * v for v in xs], color="#dd8452",
                label=f"fit: FAD-∞ = {entry.value:.4g}")
        ax.scatter([0.0], [entry.value], marker="x", color="#dd8452")
    ax.set_xlabel("1 / N (frames)")
    ax.set_ylabel("FAD")
    ax.legend(frameon=False)
    return _save(fig, path)


def plot_run(series: dict[str, Sequence[RunPoint]], path: Path, title: str | None = None) -> list[Path]:
    """One panel per metric: value over training steps, the interval as a band where there is one.

    ``series`` maps a metric name to its (step, value, low, high) points (any order; sorted here). A plain
    function of plain tuples, so that any run model (``GET /v1/runs/{name}``) plugs in."""
    plt = _pyplot()
    if not series:
        raise ValueError("no metric series to draw")
    fig, axes = plt.subplots(len(series), 1, figsize=(6.0, 2.4 * len(series)), sharex=True, squeeze=False)
    for ax, (metric, points) in zip(axes[:, 0], series.items(), strict=True):
        pts = sorted((p for p in points if p[1] is not None), key=lambda p: p[0])
        steps = [p[0] for p in pts]
        ax.plot(steps, [p[1] for p in pts], marker="o", ms=3, color="#4c72b0", label=metric)
        band = [p for p in pts if p[2] is not None and p[3] is not None]
        if band:
            ax.fill_between([p[0] for p in band], [p[2] for p in band], [p[3] for p in band], color="#4c72b0",
                            alpha=0.2, lw=0, label="interval")
        ax.set_ylabel(metric)
        ax.legend(frameon=False, fontsize=7)
    axes[-1, 0].set_xlabel("step")
    if title:
        axes[0, 0].set_title(title)
    return _save(fig, path)


def plot_result(result: EvaluationResult, directory: Path, stem: str = "soundcheck") -> list[Path]:
    """Every figure the result has data for, as ``<stem>-<figure>.png/.svg`` under ``directory``."""
    written: list[Path] = []
    metrics = result.metrics
    ndb = metrics.get("ndb")
    if isinstance(ndb, NdbResult) and ndb.bins is not None and ndb.bins.reference_proportions:
        written += plot_ndb(ndb, directory / f"{stem}-ndb")
    per_file = metrics.get("fad_per_file")
    if isinstance(per_file, FadPerFileResult) and any(w.fad is not None for w in per_file.worst):
        written += plot_fad_per_file(per_file, directory / f"{stem}-fad-per-file")
    inf = metrics.get("fad_inf")
    if isinstance(inf, FadInfResult) and any(p.fad is not None for p in inf.points):
        written += plot_fad_inf(inf, directory / f"{stem}-fad-inf")
    return written

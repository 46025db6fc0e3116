"""File-level bootstrap: resample candidate FILES with replacement (frames of one file are correlated, so
resampling frames would understate the spread), seeded, B resamples.

Three intervals are built from the replicates (``interval_from_replicates``), each named in the result:
- "basic" (reverse percentile), [2 point - q_high, 2 point - q_low]: the spread of replicate - point stands in
  for the spread of point - truth, so a statistic biased at finite N (FAD: its covariance term is biased
  upward) has its interval moved down by the bootstrap bias estimate; it may then lie below the point
  estimate. FAD uses this: in the coverage simulation (tests/unit/metrics/test_interval_coverage.py) it was the
  only one near the nominal level once the bias is comparable to the standard error.
- "bias-shifted" percentile, [q_low - bias, q_high - bias] with bias = mean(replicates) - point: centred on the
  point estimate, so it keeps the point estimate's bias (it undercovered FAD); the other metrics still use it.
- "percentile", [q_low, q_high]: carries the bias twice (point and resample) for FAD.
Each is clipped to the metric's range; ``bias`` is reported with all of them.

Two forms share one draw: ``bootstrap_interval`` calls a statistic on the resampled file indices (generic);
``bootstrap_weighted`` hands all resamples at once as a [B, F] matrix of file multiplicities to a vectorised
statistic (FAD, KAD, PRDC and accuracy use this: each resample is a weighted sum of per-file terms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

METHOD = "percentile bootstrap over candidate files"
#: Said when the replicates were shifted by their bias estimate before the percentiles were taken.
SHIFTED_METHOD = "bias-shifted percentile bootstrap over candidate files"
#: The basic (reverse percentile) interval: [2 point - q_high, 2 point - q_low].
BASIC_METHOD = "basic bootstrap over candidate files"
METHOD_NAMES = {"percentile": METHOD, "bias-shifted": SHIFTED_METHOD, "basic": BASIC_METHOD}


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float
    resamples: int  # resamples drawn
    valid: int  # resamples whose statistic was finite (the interval uses these)
    bias: float | None = None  # mean(replicates) - point estimate, removed before taking percentiles
    method: str = METHOD

    def as_dict(self) -> dict:
        return asdict(self)


def resample_indices(n_files: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[B, F] file indices drawn with replacement."""
    if n_files < 1:
        raise ValueError("bootstrap needs at least one file")
    return np.random.default_rng(seed).integers(0, n_files, size=(resamples, n_files))


def resample_weights(n_files: int, resamples: int, seed: int = 0) -> np.ndarray:
    """[B, F] multiplicity of each file in each resample (the same draws as ``resample_indices``)."""
    idx = resample_indices(n_files, resamples, seed)
    weights = np.zeros((resamples, n_files))
    np.add.at(weights, (np.arange(resamples)[:, None], idx), 1.0)
    return weights


def percentile_interval(values: np.ndarray, level: float = 0.95, point: float | None = None,
                        bounds: tuple[float, float] = (-np.inf, np.inf)) -> Interval | None:
    """Percentile interval of bootstrap values (bias-shifted when ``point`` is given, clipped to ``bounds``);
    None when fewer than two values are finite."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return None
    bias = None
    if point is not None and np.isfinite(point):
        bias = float(finite.mean() - point)
        finite = finite - bias
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.clip(np.percentile(finite, [tail, 100.0 - tail]), *bounds)
    method = METHOD if bias is None else SHIFTED_METHOD
    return Interval(float(low), float(high), float(level), int(len(values)), int(len(finite)), bias, method)


def interval_from_replicates(values: np.ndarray, level: float, point: float,
                             bounds: tuple[float, float] = (-np.inf, np.inf), method: str = "basic") -> Interval | None:
    """Interval of one of ``METHOD_NAMES`` from bootstrap replicates around the point estimate; clipped to
    ``bounds``; None when fewer than two replicates are finite. ``bias`` is mean(replicates) - point."""
    if method not in METHOD_NAMES:
        raise ValueError(f"unknown interval method {method!r}; choose from {', '.join(METHOD_NAMES)}")
    if method == "bias-shifted":
        return percentile_interval(values, level, point, bounds)
    if method == "percentile":
        return percentile_interval(values, level, None, bounds)
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if len(finite) < 2 or not np.isfinite(point):
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    q_low, q_high = np.percentile(finite, [tail, 100.0 - tail])
    low, high = np.clip([2.0 * point - q_high, 2.0 * point - q_low], *bounds)
    return Interval(float(low), float(high), float(level), int(len(values)), int(len(finite)),
                    float(finite.mean() - point), METHOD_NAMES[method])


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n_files: int, resamples: int = 100,
                       level: float = 0.95, seed: int = 0, point: float | None = None,
                       bounds: tuple[float, float] = (-np.inf, np.inf)) -> Interval | None:
    """Interval of ``statistic(file_indices)`` over ``resamples`` resamples of the candidate files."""
    if resamples < 1:
        return None
    values = [statistic(idx) for idx in resample_indices(n_files, resamples, seed)]
    return percentile_interval(np.array(values, dtype=np.float64), level, point, bounds)


def bootstrap_weighted(statistic: Callable[[np.ndarray], np.ndarray], n_files: int, resamples: int = 100,
                       level: float = 0.95, seed: int = 0, point: float | None = None,
                       bounds: tuple[float, float] = (-np.inf, np.inf)) -> Interval | None:
    """Interval of a vectorised ``statistic(weights[B, F]) -> values[B]``."""
    if resamples < 1:
        return None
    return percentile_interval(statistic(resample_weights(n_files, resamples, seed)), level, point, bounds)

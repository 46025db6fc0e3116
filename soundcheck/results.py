"""Typed results: one pydantic model per metric's entry in ``JobView.result["metrics"]``.

The worker stores plain JSON (``soundcheck.evaluation`` builds dicts); these models are how the api (CSV export),
the client, the CLI (tables, figures) and the dashboard (through ``GET /v1/metrics``) read it, so a field renamed
on one side fails in the tests of all of them. Models allow extra fields: a result written by a newer worker
(a field added) still parses, and a result of an older one lacks only optional fields.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from soundcheck.jobspec import JobView


class _Result(BaseModel):
    model_config = ConfigDict(extra="allow")


class Interval(_Result):
    """A bootstrap interval (``soundcheck.metrics.bootstrap.Interval.as_dict``)."""

    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    method: str | None = None
    resamples: int | None = None
    valid: int | None = None


class Estimate(_Result):
    """A value with its interval: one scored part of a metric (PRDC's precision...)."""

    value: float | int | None = Field(None, description="int for counts (NDB), float otherwise")
    interval: Interval | None = None


class MetricResult(Estimate):
    """What every metric entry has; ``error`` is set (and ``value`` None) when it could not be computed."""

    error: str | None = None
    n_reference: int | None = None
    n_candidate: int | None = None
    frames_reference: int | None = None
    frames_candidate: int | None = None
    unit: str | None = None


class WorstFile(_Result):
    name: str
    fad: float | None = None
    frames: int | None = None


class FadPerFileResult(MetricResult):
    worst: list[WorstFile] = Field(default_factory=list, description="Worst candidate files first.")
    single_frame_files: int | None = None


class FadInfPoint(_Result):
    n: int
    fad: float | None = None


class FadInfResult(MetricResult):
    slope: float | None = None
    r2: float | None = None
    points: list[FadInfPoint] = Field(default_factory=list, description="FAD of subsets of n candidate frames.")


class NdbBins(_Result):
    """Per bin, ordered by decreasing reference size."""

    reference_proportions: list[float | None] = Field(default_factory=list)
    candidate_proportions: list[float | None] = Field(default_factory=list)
    standard_errors: list[float | None] = Field(default_factory=list)
    z: list[float | None] = Field(default_factory=list)
    p_values: list[float | None] = Field(default_factory=list)


class NdbBinFiles(_Result):
    """The files whose samples lie nearest one bin's centre: what to listen to for a bin that differs."""

    bin: int
    candidate: list[str] = Field(default_factory=list, description="Candidate files, nearest first.")
    reference: list[str] = Field(default_factory=list, description="Reference files, nearest first.")


class NdbResult(MetricResult):
    ndb: int | None = None
    ndb_over_k: float | None = None
    k: int | None = None
    jsd: float | None = None
    jsd_bits: float | None = None
    alpha: float | None = None
    z_threshold: float | None = None
    different_bins: list[int] = Field(default_factory=list)
    bins: NdbBins | None = None
    bin_files: list[NdbBinFiles] = Field(default_factory=list, description="For each bin that differs.")


class PrdcResult(MetricResult):
    k: int | None = None
    precision: Estimate | None = None
    recall: Estimate | None = None
    density: Estimate | None = None
    coverage: Estimate | None = None

    def parts(self) -> dict[str, Estimate]:
        return {name: part for name in PRDC_PARTS if (part := getattr(self, name)) is not None}


class KadResult(MetricResult):
    mmd2: float | None = None
    bandwidth: float | None = None
    scale: float | None = None


class AccuracyResult(MetricResult):
    classifier: str | None = None
    per_class: dict[str, Any] | None = None
    confusion: dict[str, Any] | None = None


class IsResult(MetricResult):
    std: float | None = None
    splits: int | None = None


class PairValue(_Result):
    name: str
    value: float | int | None = Field(None, description="int for counts (NDB), float otherwise")


class SignalResult(MetricResult):
    n_pairs: int | None = None
    per_file: list[PairValue] = Field(default_factory=list)


PRDC_PARTS = ("precision", "recall", "density", "coverage")
#: The model of each metric's entry; metrics not named here are plain :class:`MetricResult`.
RESULT_MODELS: dict[str, type[MetricResult]] = {
    "fad": MetricResult, "fad_inf": FadInfResult, "fad_per_file": FadPerFileResult, "kad": KadResult,
    "ndb": NdbResult, "prdc": PrdcResult, "accuracy": AccuracyResult, "is": IsResult, "kl": MetricResult,
    **{name: SignalResult for name in ("snr", "si_sdr", "lsd", "mcd", "mrstft", "mfcc_distance")},
}


#: Short names for tables, figures and the dashboard (GET /v1/metrics "label").
METRIC_LABELS = {
    "fad": "FAD", "fad_inf": "FAD-∞", "fad_per_file": "per-file FAD", "kad": "KAD", "ndb": "NDB", "prdc": "PRDC",
    "accuracy": "accuracy", "is": "Inception Score", "kl": "paired KL", "snr": "SNR", "si_sdr": "SI-SDR",
    "lsd": "LSD", "mcd": "MCD", "mrstft": "MR-STFT", "mfcc_distance": "MFCC distance",
}


class EvaluationResult(_Result):
    """``JobView.result`` of a finished job."""

    metrics: dict[str, MetricResult] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    diagnostics: dict[str, Any] = Field(default_factory=dict)
    reference: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    embedding: str | None = None

    @classmethod
    def of(cls, result: dict[str, Any] | None) -> EvaluationResult:
        """Parse a stored result, each metric entry with its own model (a plain dict field cannot say which)."""
        raw = dict(result or {})
        # a preset's entries are keyed by the peer's label and name their metric
        metrics = {name: RESULT_MODELS.get(name, RESULT_MODELS.get(_metric_of(entry), MetricResult))
                   .model_validate(entry) for name, entry in (raw.pop("metrics", None) or {}).items()}
        return cls.model_validate(raw).model_copy(update={"metrics": metrics})


def _metric_of(entry: Any) -> str | None:
    return entry.get("metric") if isinstance(entry, dict) else None


def job_result(view: JobView) -> EvaluationResult:
    return EvaluationResult.of(view.result)


def result_fields(metric: str) -> list[str]:
    """The fields of a metric's result model (``GET /v1/metrics`` "result_fields")."""
    return list(RESULT_MODELS.get(metric, MetricResult).model_fields)

"""The wire contract of paired comparisons (POST/GET /v1/comparisons), shared by api, worker, client, CLI and
dashboard. Pydantic only (the light client imports it)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from soundcheck.jobspec import BOOTSTRAP_MAX, SEED_MAX, JobStatus, KadOptions, Progress, _Strict

ComparedMetric = Literal["fad", "kad"]
COMPARED_METRICS: tuple[str, ...] = ("fad", "kad")
#: Candidates of one comparison: k candidates give k (k - 1) / 2 pairs, each costing nothing beyond the
#: candidates' own resamples; the bound keeps the result table readable and the job bounded.
CANDIDATES_MAX = 8


class ComparisonOptions(_Strict):
    resamples: int = Field(1000, ge=20, le=BOOTSTRAP_MAX, description=(
        "Bootstrap resamples shared by every candidate. The smallest p-value B resamples can give is 2/(B+1) "
        "(0.002 at 1000); each resample costs one Fréchet distance per candidate (~0.5 s at 2048 dimensions)."))
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the intervals of the differences.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed of the resamples.")
    kad: KadOptions = KadOptions()


class ComparisonCreate(_Strict):
    """POST /v1/comparisons body."""

    reference: str = Field(description="Reference dataset id.")
    candidates: list[str] = Field(min_length=2, max_length=CANDIDATES_MAX, description="Candidate dataset ids.")
    labels: list[str] | None = Field(None, description="A short name per candidate for the sentences "
                                     "(default: A, B, C...).")
    embedding: str = Field("mel", description="Embedding model id (GET /v1/models).")
    metrics: list[ComparedMetric] = Field(default_factory=lambda: ["fad"], min_length=1)
    options: ComparisonOptions = ComparisonOptions()

    @field_validator("metrics")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="after")
    def _check(self) -> ComparisonCreate:
        if len(set(self.candidates)) != len(self.candidates):
            raise ValueError("candidates must be different datasets")
        if self.labels is not None:
            if len(self.labels) != len(self.candidates):
                raise ValueError(f"{len(self.labels)} labels for {len(self.candidates)} candidates")
            if len(set(self.labels)) != len(self.labels) or any(not s.strip() or len(s) > 64 for s in self.labels):
                raise ValueError("labels must be different, non-empty and at most 64 characters")
        return self

    def candidate_labels(self) -> list[str]:
        return list(self.labels) if self.labels else [chr(ord("A") + i) for i in range(len(self.candidates))]


class Score(BaseModel):
    value: float | None


class CandidateScores(BaseModel):
    label: str
    dataset: str | None = None
    n_files: int
    frames: int
    metrics: dict[str, Score]


class MetricDifference(BaseModel):
    """metric(b) − metric(a) of one pair, its interval and p-value (soundcheck.metrics.paired)."""

    a_value: float | None
    b_value: float | None
    difference: float | None
    low: float | None
    high: float | None
    level: float
    p_value: float | None
    resamples: int
    valid: int
    bias: float | None
    permutations: int = Field(0, description="Relabellings behind the p-value (0: a bootstrap p-value).")
    interval_method: str
    p_value_method: str
    sentence: str


class PairResult(BaseModel):
    a: str
    b: str
    paired_by_name: bool = Field(description="True when both sets have the same file names and were resampled "
                                 "with the same file indices.")
    metrics: dict[str, MetricDifference]


class ComparisonResult(BaseModel):
    reference: dict
    embedding: str
    candidates: list[CandidateScores]
    pairs: list[PairResult]
    metric_details: dict[str, dict] = {}
    resamples: int
    confidence: float
    seed: int
    metric_versions: dict[str, str] = {}
    provenance: dict | None = None
    cache: dict[str, str] = {}
    warnings: list[str] = []
    timing_s: dict | None = None


class ComparisonView(BaseModel):
    """GET /v1/comparisons/{id}: status and progress like a job; ``result`` once finished."""

    id: str
    status: JobStatus
    spec: ComparisonCreate | None = Field(description="The request; null only for a stored record that can no "
                                          "longer be read (then status is failed and error says why).")
    progress: Progress
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    result: ComparisonResult | None = None
    error: str | None = None

"""The wire contract shared by api, worker and client: job requests, job views, datasets.

Everything crossing HTTP or Redis is one of these pydantic models, so the three sides cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

MetricName = Literal[
    "fad", "fad_inf", "fad_per_file", "kad", "ndb", "prdc", "accuracy", "is", "kl",
    "snr", "si_sdr", "lsd", "mcd", "mrstft",
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
#: Metrics computed on waveforms of files paired by name; they need no embedding model.
SIGNAL_METRICS = frozenset({"snr", "si_sdr", "lsd", "mcd", "mrstft"})
#: Metrics that need class probabilities from an AudioSet classifier (yamnet or cnn14).
CLASS_PROB_METRICS = frozenset({"is", "kl"})
JobStatus = Literal["queued", "running", "finished", "failed"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FadInfOptions(_Strict):
    sizes: list[int] | None = Field(None, description="Candidate subset sizes (default: 5 sizes up to N).")
    repeats: int = Field(1, ge=1, le=100, description="Random subsets drawn per size (FAD averaged).")


class FadPerFileOptions(_Strict):
    top: int = Field(20, ge=1, description="How many worst files to list.")


class KadOptions(_Strict):
    bandwidth: float | None = Field(None, gt=0, description="RBF bandwidth h (default: median reference distance).")
    scale: float = Field(100.0, gt=0, description="Multiplier of MMD^2 (kadtk's 100).")


SampleUnit = Literal["file", "frame"]
_UNIT_HELP = ("What one sample is: 'file' (the mean embedding of each file: the generated item, as the papers "
              "assume independent samples) or 'frame' (every frame; frames of one file are correlated).")


class NdbOptions(_Strict):
    k: int = Field(100, ge=2, description="Number of k-means bins.")
    whiten: bool = True
    alpha: float = Field(0.05, gt=0, lt=1)
    z_threshold: float | None = Field(None, gt=0)
    unit: SampleUnit = Field("file", description=_UNIT_HELP)


class PrdcOptions(_Strict):
    k: int = Field(5, ge=1, description="Nearest neighbours.")
    unit: SampleUnit = Field("file", description=_UNIT_HELP)


class AccuracyOptions(_Strict):
    classifier: str | None = Field(
        None, description="TorchScript classifier name in <model_dir>/classifiers (default: linear probe)."
    )


class IsOptions(_Strict):
    splits: int = Field(10, ge=1)


class MetricOptions(_Strict):
    """Options shared by all metrics plus one block per metric that has its own."""

    bootstrap: int = Field(100, ge=0, le=10_000, description="Bootstrap resamples of candidate files (0: off).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the percentile interval.")
    seed: int = Field(0, description="Seed for bootstrap, subsets and k-means.")
    fad_inf: FadInfOptions = FadInfOptions()
    fad_per_file: FadPerFileOptions = FadPerFileOptions()
    kad: KadOptions = KadOptions()
    ndb: NdbOptions = NdbOptions()
    prdc: PrdcOptions = PrdcOptions()
    accuracy: AccuracyOptions = AccuracyOptions()
    is_: IsOptions = Field(IsOptions(), alias="is")

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class JobCreate(_Strict):
    """POST /v1/jobs body."""

    reference: str = Field(description="Reference dataset id.")
    candidate: str = Field(description="Candidate (generated) dataset id.")
    embedding: str = Field("mel", description="Embedding model id (GET /v1/models).")
    metrics: list[MetricName] = Field(default_factory=lambda: ["fad"], min_length=1)
    options: MetricOptions = MetricOptions()

    @field_validator("metrics")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))


class Progress(BaseModel):
    done: int = 0
    total: int = 0
    stage: str = "queued"


class JobView(BaseModel):
    """GET /v1/jobs/{id}."""

    id: str
    status: JobStatus
    spec: JobCreate
    progress: Progress
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    attempts: int = Field(0, description="Attempts started so far; more than 1 when a worker died mid-job and "
                          "the job was retried (the result's warnings or the error say why each one ended).")
    result: dict[str, Any] | None = None
    error: str | None = None


class FileEntry(BaseModel):
    """One file of a dataset manifest."""

    name: str = Field(description="Relative name inside the dataset (subfolder = label).")
    sha256: str
    bytes: int
    duration_s: float
    sample_rate: int
    channels: int
    format: str
    label: str | None = None
    silent: bool = Field(False, description="Peak below -80 dBFS.")
    path: str | None = Field(None, description="Absolute path for registered server datasets; None = blob.")


class DatasetView(BaseModel):
    """A dataset manifest (POST/GET /v1/datasets)."""

    id: str
    name: str | None = Field(None, description="A human name; not part of the content id (last one given wins).")
    source: Literal["upload", "path"]
    root: str | None = None
    n_files: int
    total_duration_s: float
    sample_rates: list[int]
    channels: list[int]
    labels: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="Non-audio members that were ignored.")
    created_at: datetime
    files: list[FileEntry] | None = None


class RegisterDataset(_Strict):
    """POST /v1/datasets/register body: a directory under an operator-allowed root."""

    path: str
    name: str | None = Field(None, max_length=200, description="Human name (default: the directory name).")


#: What each metric means for a reader of results: what it needs, which direction is better, the reference.
METRIC_INFO: dict[str, dict[str, str | None]] = {
    "fad": {"title": "Fréchet Audio Distance", "needs": "embedding", "better": "lower",
            "reference": "Kilgour et al., Interspeech 2019"},
    "fad_inf": {"title": "FAD extrapolated to infinite candidates (FAD-inf)", "needs": "embedding",
                "better": "lower", "reference": "Chong & Forsyth, CVPR 2020"},
    "fad_per_file": {"title": "FAD of each candidate file against the reference", "needs": "embedding",
                     "better": "lower", "reference": "fadtk score_individual"},
    "kad": {"title": "Kernel Audio Distance (unbiased MMD², RBF, x100)", "needs": "embedding", "better": "lower",
            "reference": "Chung et al., 2025 (kadtk)"},
    "ndb": {"title": "Number of statistically different bins + JSD", "needs": "embedding", "better": "lower",
            "reference": "Richardson & Weiss, NeurIPS 2018"},
    "prdc": {"title": "Precision, recall, density, coverage", "needs": "embedding", "better": "higher",
             "reference": "Kynkäänniemi et al. 2019; Naeem et al., ICML 2020"},
    "accuracy": {"title": "Classifier accuracy on intended labels", "needs": "labels", "better": "higher",
                 "reference": "linear probe on reference embeddings or an operator TorchScript classifier"},
    "is": {"title": "Inception Score over AudioSet classes", "needs": "class probabilities", "better": "higher",
           "reference": "Salimans et al. 2016; PANNs CNN14 as classifier"},
    "kl": {"title": "Paired KL of class probabilities", "needs": "class probabilities + paired files",
           "better": "lower", "reference": "AudioLDM evaluation (Liu et al. 2023)"},
    "snr": {"title": "Signal-to-noise ratio (dB)", "needs": "paired files", "better": "higher", "reference": None},
    "si_sdr": {"title": "Scale-invariant SDR (dB)", "needs": "paired files", "better": "higher",
               "reference": "Le Roux et al., ICASSP 2019"},
    "lsd": {"title": "Log-spectral distance (dB)", "needs": "paired files", "better": "lower", "reference": None},
    "mcd": {"title": "Mel cepstral distortion (dB)", "needs": "paired files", "better": "lower",
            "reference": "Kubichek 1993"},
    "mrstft": {"title": "Multi-resolution STFT distance", "needs": "paired files", "better": "lower",
               "reference": "Yamamoto et al., ICASSP 2020"},
}

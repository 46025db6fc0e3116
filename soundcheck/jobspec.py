"""The wire contract shared by api, worker and client: job requests, job views, datasets.

Everything crossing HTTP or Redis is one of these pydantic models, so the three sides cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from soundcheck.presets import PresetName

MetricName = Literal[
    "fad", "fad_inf", "fad_per_file", "kad", "ndb", "prdc", "accuracy", "is", "kl",
    "snr", "si_sdr", "lsd", "mcd", "mrstft", "mfcc_distance", "clap_score",
]
METRIC_NAMES: tuple[str, ...] = get_args(MetricName)
#: Metrics computed on waveforms of files paired by name; they need no embedding model.
SIGNAL_METRICS = frozenset({"snr", "si_sdr", "lsd", "mcd", "mrstft", "mfcc_distance"})
#: Metrics that need class probabilities from an AudioSet classifier (yamnet or cnn14).
CLASS_PROB_METRICS = frozenset({"is", "kl"})
JobStatus = Literal["queued", "running", "finished", "failed"]


class _Strict(BaseModel):
    """Unknown fields are errors, and no float may be NaN or infinite (JSON's ``NaN``/``Infinity`` literals and
    ``1e309`` parse to such floats): a request is rejected at the door instead of failing in the worker."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# Upper limits that keep one job's metric work bounded (measured on 2 CPU cores; the default job limit is 6 h,
# SOUNDCHECK_JOB_TIMEOUT_S). The dearest unit of work is one Fréchet distance: ~0.002 s at d=128 (mel, vggish),
# ~0.08 s at d=1024 (yamnet), ~0.5 s at d=2048 (cnn14).
#: Each resample costs one Fréchet distance per interval metric (~0.5 s at d=2048: 2000 take ~18 min) and a
#: [B, files] weight matrix; 1000-2000 resamples is what percentile intervals need (Efron & Tibshirani 1993).
BOOTSTRAP_MAX = 2000
#: k-means costs ~ samples x K x dim per Lloyd iteration (3 inits): K=1000 on 20k x 128 samples took 9 s, so
#: 1M yamnet frames stay near an hour; more bins than that need more reference files than sets usually have.
NDB_K_MAX = 1000
#: PRDC's k-NN balls: Naeem et al. use k=5; with k in the hundreds every ball covers most of the set and the
#: four scores saturate at 1 (the cost is distance chunks, nearly independent of k).
PRDC_K_MAX = 100
#: FAD-inf computes len(sizes) x repeats Fréchet distances: 20 x 100 at d=2048 is ~18 min, like the bootstrap.
FAD_INF_SIZES_MAX = 20
FAD_INF_REPEATS_MAX = 100
#: A subset size is a number of candidate frames; the worker also checks it against the frames it embedded.
FAD_INF_SIZE_MAX = 10_000_000
#: Inception Score splits: 10 is the usual; each split needs its own files for a stable marginal.
IS_SPLITS_MAX = 100
#: How many worst files fad_per_file lists: bounds the size of the stored result (every file is scored anyway).
FAD_PER_FILE_TOP_MAX = 1000
#: scikit-learn's random_state (k-means, linear probe) accepts [0, 2**32 - 1]; numpy rejects negative seeds.
SEED_MAX = 2**32 - 1
#: A run name is part of a URL path (/v1/runs/{name}) and of a Redis key: letters, digits and "_.:-", no slash.
RUN_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
RUN_NAME_MAX = 100
#: Steps are training steps or checkpoint numbers; bounded to what a float64 score (the Redis sorted set that
#: orders a run) and a JavaScript number hold exactly.
STEP_MAX = 2**53
TAGS_MAX = 20
TAG_MAX = 64
#: Operator classifier names are file stems in <model_dir>/classifiers (soundcheck.embeddings.classifier).
CLASSIFIER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class FadInfOptions(_Strict):
    sizes: list[Annotated[int, Field(ge=2, le=FAD_INF_SIZE_MAX)]] | None = Field(
        None, min_length=2, max_length=FAD_INF_SIZES_MAX,
        description=f"Candidate subset sizes in frames, at least two different ones, at most {FAD_INF_SIZES_MAX} "
        "(each size costs `repeats` Fréchet distances); each must not exceed the candidate's frames "
        "(default: 5 sizes from N/5 to N).",
    )
    repeats: int = Field(1, ge=1, le=FAD_INF_REPEATS_MAX,
                         description="Random subsets drawn per size (FAD averaged); bounded like the bootstrap.")

    @field_validator("sizes")
    @classmethod
    def _two_sizes(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) < 2:
            raise ValueError("FAD-inf fits a line in 1/N: give at least two different subset sizes")
        return value


class FadPerFileOptions(_Strict):
    top: int = Field(20, ge=1, le=FAD_PER_FILE_TOP_MAX,
                     description="How many worst files to list (bounds the stored result; all files are scored).")


class KadOptions(_Strict):
    bandwidth: float | None = Field(None, gt=0, le=1e9,
                                    description="RBF bandwidth h (default: median reference distance).")
    scale: float = Field(100.0, gt=0, le=1e6, description="Multiplier of MMD^2 (kadtk's 100); bounded so the "
                         "scaled value stays a finite number.")


SampleUnit = Literal["file", "frame"]
_UNIT_HELP = ("What one sample is: 'file' (the mean embedding of each file: the generated item, as the papers "
              "assume independent samples) or 'frame' (every frame; frames of one file are correlated).")
#: Frames per set above which NDB and PRDC in frame units use a seeded subsample (their cost grows with frames^2).
SAMPLE_MAX_FRAMES = 10_000
_MAX_FRAMES_HELP = ("With unit 'frame': a set with more frames is cut to a seeded uniform subsample of this many "
                    "(options.seed; named in the result as subsampled_from); 0 = never. File units are not cut.")


class NdbOptions(_Strict):
    k: int = Field(100, ge=2, le=NDB_K_MAX,
                   description="Number of k-means bins; the reference needs at least 2K samples (files or frames, "
                   f"see unit). At most {NDB_K_MAX}: k-means costs samples x K x dim per iteration.")
    whiten: bool = Field(True, description="Standardise each dimension on the reference before k-means.")
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of each bin's two-proportion z-test.")
    z_threshold: float | None = Field(None, gt=0, le=100,
                                      description="Fixed |z| threshold instead of alpha (default: from alpha).")
    unit: SampleUnit = Field("file", description=_UNIT_HELP)
    max_frames: int = Field(SAMPLE_MAX_FRAMES, ge=0, le=10_000_000, description=_MAX_FRAMES_HELP)


class PrdcOptions(_Strict):
    k: int = Field(5, ge=1, le=PRDC_K_MAX,
                   description="Nearest neighbours; each set needs more than k samples. Naeem et al. use 5; "
                   f"at most {PRDC_K_MAX}, beyond which the k-NN balls cover the set and the scores saturate.")
    unit: SampleUnit = Field("file", description=_UNIT_HELP)
    max_frames: int = Field(SAMPLE_MAX_FRAMES, ge=0, le=10_000_000, description=_MAX_FRAMES_HELP)


class AccuracyOptions(_Strict):
    classifier: str | None = Field(
        None, pattern=CLASSIFIER_NAME, max_length=100,
        description="TorchScript classifier name in <model_dir>/classifiers (default: linear probe); letters, "
        "digits, '_', '.', '-'.",
    )

    @field_validator("classifier")
    @classmethod
    def _not_a_labels_file(cls, value: str | None) -> str | None:
        if value is not None and value.endswith(".labels"):
            raise ValueError("a classifier name cannot end in '.labels' (that is its labels file)")
        return value


#: How a file's class distribution is made from the model's class outputs (soundcheck.metrics.class_scores).
ClassActivation = Literal["model", "softmax", "sigmoid"]
_ACTIVATION_HELP = ("'model': the model's own probabilities, each frame normalised to sum 1 (soundcheck's default); "
                    "'softmax' or 'sigmoid': that function of the model's logits (models that give logits: "
                    "cnn14-16k), sigmoid outputs left unnormalised as audioldm_eval's KL_Sigmoid")
ClassPooling = Literal["mean_probabilities", "mean_logits"]
_POOLING_HELP = ("How the frames (windows) of one file are combined: 'mean_probabilities' (activation per frame, "
                 "then the mean) or 'mean_logits' (mean of the logits, then the activation; stable-audio-metrics' "
                 "PaSST KL)")


class IsOptions(_Strict):
    splits: int = Field(10, ge=1, le=IS_SPLITS_MAX,
                        description="Splits of the candidate files (needs at least this many candidate files).")
    activation: ClassActivation = Field("model", description=_ACTIVATION_HELP)
    shuffle: Literal["generator", "randomstate"] = Field(
        "generator", description="How files are shuffled before splitting, seeded by options.seed: numpy's "
        "Generator ('generator', soundcheck's default) or the legacy RandomState(seed).permutation that "
        "audioldm_eval uses with seed 2020 ('randomstate').")


class KlOptions(_Strict):
    activation: ClassActivation = Field("model", description=_ACTIVATION_HELP)
    pooling: ClassPooling = Field("mean_probabilities", description=_POOLING_HELP)
    direction: Literal["reference_candidate", "candidate_reference"] = Field(
        "reference_candidate", description="'reference_candidate': KL(p_ref || p_cand + eps), as audioldm_eval "
        "and AudioGen; 'candidate_reference': KL(p_cand || p_ref + eps), as stable-audio-metrics' passt_kld.")
    definition: Literal["soundcheck", "stable-audio-metrics", "audiocraft"] = Field(
        "soundcheck", description="Which published KL: 'soundcheck' (AudioLDM's: each file's frame probabilities "
        "renormalised and averaged, KL(reference || candidate + 1e-6)); 'stable-audio-metrics' (passt_kld: per file "
        "the softmax of the mean window logits, KL(candidate || reference + 1e-6); use passt-stable-audio); "
        "'audiocraft' (PasstKLDivergenceMetric: softmax per 10 s segment, segments paired in order, "
        "KL(reference || candidate + 1e-6) averaged over segments; use passt-audiocraft). The last two need "
        "class outputs that are a softmax per window (the passt models).")

    @model_validator(mode="after")
    def _one_way(self) -> KlOptions:
        if self.definition != "soundcheck" and (self.activation, self.pooling, self.direction) != (
                "model", "mean_probabilities", "reference_candidate"):
            raise ValueError("kl.definition names a whole published KL (activation, pooling and direction "
                             "included): leave kl.activation, kl.pooling and kl.direction at their defaults with it")
        return self


class McdOptions(_Strict):
    alignment: Literal["plain", "dtw"] = Field(
        "plain", description="How frames are paired: 'plain' (frame t with frame t, both files trimmed to the "
        "shorter) or 'dtw' (dynamic time warping of the whole files on the mel-cepstra; files up to ~20 s each).")


class MetricOptions(_Strict):
    """Options shared by all metrics plus one block per metric that has its own."""

    bootstrap: int = Field(100, ge=0, le=BOOTSTRAP_MAX,
                           description=f"Bootstrap resamples of candidate files (0: off). At most {BOOTSTRAP_MAX}: "
                           "each resample costs one Fréchet distance per interval (~0.5 s at 2048 dimensions).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Level of the percentile interval.")
    seed: int = Field(0, ge=0, le=SEED_MAX, description="Seed for bootstrap, subsets and k-means (scikit-learn "
                      "accepts 0 to 2**32 - 1).")
    fad_inf: FadInfOptions = FadInfOptions()
    fad_per_file: FadPerFileOptions = FadPerFileOptions()
    kad: KadOptions = KadOptions()
    ndb: NdbOptions = NdbOptions()
    prdc: PrdcOptions = PrdcOptions()
    accuracy: AccuracyOptions = AccuracyOptions()
    is_: IsOptions = Field(IsOptions(), alias="is")
    kl: KlOptions = KlOptions()
    mcd: McdOptions = McdOptions()

    model_config = ConfigDict(extra="forbid", populate_by_name=True, allow_inf_nan=False)


# --- Imported references (issue 10.5): statistics brought from elsewhere, named by a job ---------------------
#: Metrics an imported reference (a mean and a covariance, no frames, no files) can give: FAD, FAD-inf (subsets
#: of the candidate's frames against the reference Gaussian) and per-file FAD. Everything else reads reference
#: embeddings (KAD, PRDC, NDB, accuracy, KL) or reference waveforms (signal metrics).
IMPORTED_METRICS = ("fad", "fad_inf", "fad_per_file")
REFERENCE_ID = r"^[0-9a-f]{64}$"


class ImportedReference(_Strict):
    """``"reference": {"imported": "<id>"}``: a job against statistics imported with POST /v1/references/import."""

    imported: str = Field(pattern=REFERENCE_ID, description="Imported reference id (GET /v1/references).")


class DeclaredProvenance(_Strict):
    """What the importer says the statistics are. Shown as declared: soundcheck cannot verify any of it."""

    embedding: str = Field(min_length=1, max_length=100, description="Embedding the statistics were computed "
                           "on, e.g. a soundcheck model id (vggish) or the peer's name (clap-laion-audio).")
    model: str | None = Field(None, max_length=200, description="Checkpoint / model version, as the peer names it.")
    sample_rate: int | None = Field(None, ge=1, le=768_000)
    source: str | None = Field(None, max_length=500, description="Where they come from: tool, file, dataset.")
    declared_by: str | None = Field(None, max_length=200, description="Who imported them.")
    n_frames: int | None = Field(None, ge=2, description="Frames the statistics were computed from, if known.")
    n_files: int | None = Field(None, ge=1)
    note: str | None = Field(None, max_length=2000)


class ReferenceView(BaseModel):
    """GET /v1/references entry: imported statistics, or Gaussian statistics a worker computed and cached."""

    id: str
    kind: Literal["imported", "computed"]
    dim: int
    supports: list[str] = Field(description="Metrics a job against this reference can compute.")
    created_at: datetime | None = None
    declared: DeclaredProvenance | None = Field(None, description="imported: the importer's word, not verified.")
    verified: bool = Field(False, description="computed: true (soundcheck made them); imported: always false.")
    layout: str | None = Field(None, description="imported: the npz layout it came in (fadtk, "
                               "stable-audio-metrics).")
    dataset: str | None = Field(None, description="computed: the dataset the statistics are of.")
    embedding: str | None = Field(None, description="computed: soundcheck model id.")
    embedding_key: str | None = None
    n_frames: int | None = None
    cached: bool | None = Field(None, description="computed: whether the statistics are still in the cache "
                                "(an evicted entry is recomputed by the next job against that dataset).")


class JobCreate(_Strict):
    """POST /v1/jobs body."""

    reference: str | ImportedReference = Field(
        description="Reference dataset id, or {\"imported\": \"<id>\"} for imported statistics (FAD family only).")
    candidate: str = Field(description="Candidate (generated) dataset id.")
    embedding: str = Field("mel", description="Embedding model id (GET /v1/models).")
    metrics: list[MetricName] = Field(default_factory=lambda: ["fad"], min_length=1)
    options: MetricOptions = MetricOptions()
    preset: PresetName | None = Field(
        None, description="A published protocol in one word (GET /v1/presets): it fixes the models and the metric "
        "definitions, so leave out embedding and metrics; options.bootstrap, confidence and seed still apply "
        "where the preset does not fix them.")
    run: str | None = Field(None, pattern=RUN_NAME, max_length=RUN_NAME_MAX,
                            description="Training run this job belongs to (GET /v1/runs/{run}); needs `step`. "
                            f"Letters, digits, '_', '.', ':', '-', at most {RUN_NAME_MAX} characters.")
    step: Annotated[int, Field(strict=True, ge=0, le=STEP_MAX)] | None = Field(
        None, description="Position of this job in its run (training step, checkpoint number): an integer >= 0.")
    tags: list[Annotated[str, Field(min_length=1, max_length=TAG_MAX, pattern=r"^[^\x00-\x1f\x7f]+$")]] = Field(
        default_factory=list, max_length=TAGS_MAX,
        description=f"Free labels for people (at most {TAGS_MAX}, each 1-{TAG_MAX} printable characters).")

    @field_validator("metrics")
    @classmethod
    def _dedupe(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    @model_validator(mode="before")
    @classmethod
    def _preset_by_embedding(cls, data: Any) -> Any:
        """``"embedding": "preset:audioldm"`` asks for that preset (what the CLI's --embedding and the client pass)."""
        if isinstance(data, dict) and data.get("preset") is None and str(data.get("embedding", "")).startswith(
                "preset:"):
            data = {**data, "preset": str(data["embedding"]).removeprefix("preset:")}
        return data

    @model_validator(mode="after")
    def _preset_fixes_models(self) -> JobCreate:
        """A preset job names itself in ``embedding`` ("preset:<name>") and lists the metrics it computes, so
        listings say what ran; values given by the caller must be those (a stored spec reads back the same)."""
        if self.preset is None:
            return self
        from soundcheck.presets import PRESETS

        embedding = f"preset:{self.preset}"
        metrics = [m for m in dict.fromkeys(pm.metric for pm in PRESETS[self.preset].metrics) if m in METRIC_NAMES]
        given = {"embedding": self.embedding, "metrics": self.metrics}
        wanted = {"embedding": embedding, "metrics": metrics}
        if any(given[f] != wanted[f] for f in self.model_fields_set & {"embedding", "metrics"}):
            raise ValueError(f"preset {self.preset!r} fixes the embedding models and the metrics: leave out "
                             "'embedding' and 'metrics' (GET /v1/presets lists what each preset computes)")
        self.embedding, self.metrics = embedding, metrics
        return self

    @model_validator(mode="after")
    def _run_and_step(self) -> JobCreate:
        if (self.run is None) != (self.step is None):
            raise ValueError("run and step go together: give both (a job at step N of run R) or neither")
        return self

    @model_validator(mode="after")
    def _imported_metrics(self) -> JobCreate:
        other = [m for m in self.metrics if m not in IMPORTED_METRICS]
        if isinstance(self.reference, ImportedReference) and other:
            raise ValueError(f"an imported reference is a mean and a covariance only: it supports "
                             f"{', '.join(IMPORTED_METRICS)}, not {', '.join(other)} (they read the reference's "
                             "embeddings or audio); use a reference dataset for those")
        return self

    @property
    def reference_dataset(self) -> str | None:
        """The reference dataset id, or None when the reference is imported statistics."""
        return self.reference if isinstance(self.reference, str) else None

    @property
    def imported_reference(self) -> str | None:
        return self.reference.imported if isinstance(self.reference, ImportedReference) else None


class Progress(BaseModel):
    done: int = 0
    total: int = 0
    stage: str = "queued"


class JobView(BaseModel):
    """GET /v1/jobs/{id}."""

    id: str
    status: JobStatus
    spec: JobCreate | None = Field(description="The request; null only for a stored record that can no longer be "
                                   "read (then status is failed and error says why).")
    progress: Progress
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    worker: str | None = None
    attempts: int = Field(0, description="Attempts started so far; more than 1 when a worker died mid-job and "
                          "the job was retried (the result's warnings or the error say why each one ended).")
    result: dict[str, Any] | None = None
    error: str | None = None


class RunMetric(BaseModel):
    """One metric of one job of a run: the value and its bootstrap interval (null where the metric has none)."""

    value: float | None = None
    low: float | None = None
    high: float | None = None
    confidence: float | None = Field(None, description="Level of the interval (options.confidence).")
    error: str | None = Field(None, description="Why the metric was not computed in this job.")


class RunPoint(BaseModel):
    """One job of a run at its step. A step evaluated twice has two points (ordered by creation)."""

    step: int
    job_id: str
    status: JobStatus
    created_at: datetime | None = None
    ended_at: datetime | None = None
    tags: list[str] = Field(default_factory=list)
    metrics: dict[str, RunMetric] = Field(default_factory=dict, description="By metric; a metric with several "
                                          "scores (prdc) gives one entry per score: prdc.precision, ...")
    error: str | None = None


class RunSummary(BaseModel):
    """A run in GET /v1/runs."""

    name: str
    steps: int = Field(description="Distinct steps with at least one job.")
    last_step: int | None = None
    updated_at: datetime | None = Field(None, description="When a job of the run was last submitted or ended.")


class RunView(RunSummary):
    """GET /v1/runs/{name}: every job of the run, sorted by step, with each metric's value and interval."""

    metrics: list[str] = Field(default_factory=list, description="Series present in the points, in first-seen "
                               "order: one chart each.")
    points: list[RunPoint] = Field(default_factory=list)


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
    caption: str | None = Field(None, description="Text prompt of this file (captions.csv or PUT .../captions); "
                                "metadata, not content: it does not change the dataset id.")
    silent: bool = Field(False, description="Peak below -80 dBFS.")
    path: str | None = Field(None, description="Absolute path (or s3:// URL) of a registered file; None = blob.")


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
    n_captions: int = Field(0, description="Files with a caption (the CLAP score pairs files to captions by name).")
    warnings: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list, description="Non-audio members that were ignored.")
    created_at: datetime
    files: list[FileEntry] | None = None


class SetCaptions(_Strict):
    """PUT /v1/datasets/{id}/captions body: the caption of each file by name (replaces all captions)."""

    captions: dict[str, str] = Field(description="File name (as in the manifest) -> caption. Files not named "
                                     "get no caption; captions do not change the dataset id.")


class RegisterDataset(_Strict):
    """POST /v1/datasets/register body: a directory under an operator-allowed root."""

    path: str
    name: str | None = Field(None, max_length=200, description="Human name (default: the directory name).")


#: Metrics that report a bootstrap interval (options.bootstrap, options.confidence), as soundcheck.evaluation does.
INTERVAL_METRICS = frozenset({"fad", "kad", "prdc", "accuracy", "clap_score"}) | SIGNAL_METRICS
#: Metrics that draw random numbers from options.seed (resamples, subsets, k-means, probe, IS shuffle).
SEEDED_METRICS = INTERVAL_METRICS | {"fad_inf", "ndb", "is"}
_SHARED_USE = {"bootstrap": INTERVAL_METRICS, "confidence": INTERVAL_METRICS, "seed": SEEDED_METRICS}


def option_use(path: str, metric: str) -> bool:
    """Whether ``metric`` reads the option at ``path`` ("options.ndb.k", "options.seed")."""
    parts = path.split(".")
    if len(parts) > 2:
        return parts[1] == metric
    return metric in _SHARED_USE.get(parts[-1], METRIC_NAMES)


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
           "better": "lower", "reference": "AudioLDM evaluation (Liu et al. 2023); options.kl.definition selects "
           "stable-audio-metrics' or audiocraft's PaSST KL"},
    "snr": {"title": "Signal-to-noise ratio (dB)", "needs": "paired files", "better": "higher", "reference": None},
    "si_sdr": {"title": "Scale-invariant SDR (dB)", "needs": "paired files", "better": "higher",
               "reference": "Le Roux et al., ICASSP 2019"},
    "lsd": {"title": "Log-spectral distance (dB)", "needs": "paired files", "better": "lower", "reference": None},
    "mcd": {"title": "Mel cepstral distortion (dB), SPTK mel-cepstra of order 24", "needs": "paired files",
            "better": "lower", "reference": "Kubichek 1993; mel-cepstral analysis of Fukada et al. 1992 (SPTK mcep)"},
    "mfcc_distance": {"title": "MFCC distance (dB), the Kubichek constant on 13 log-mel MFCC", "needs": "paired files",
                      "better": "lower", "reference": "soundcheck's mcd before version 2; not comparable with MCD"},
    "clap_score": {"title": "CLAP score: mean cosine between each candidate's audio and its caption",
                   "needs": "captions + a CLAP model (clap-laion-*)", "better": "higher",
                   "reference": "stable-audio-metrics clap_score (Evans et al. 2024); LAION-CLAP (Wu et al. 2023)",
                   "definition": "mean over candidate files with a caption of cos(a, t): a the mean of the file's "
                                 "L2-normalised CLAP audio window embeddings, t the CLAP text embedding of its "
                                 "caption; files pair to captions by name; n_paired and n_unpaired reported"},
    "mrstft": {"title": "Multi-resolution STFT distance", "needs": "paired files", "better": "lower",
               "reference": "Yamamoto et al., ICASSP 2020"},
}

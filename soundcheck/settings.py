"""One settings object for api, worker, CLI and the embedded server (env prefix ``SOUNDCHECK_``).

Read once per process with :func:`get_settings`; nothing else reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_REDIS_PORT = 6399
#: RFC 6750 b64token: what a bearer token may contain.
BEARER_TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
#: Separator of SOUNDCHECK_ALLOWED_ROOTS entries besides the comma: os.pathsep, but not the one of ``s3://``.
ROOT_SEP = re.compile(re.escape(os.pathsep) + r"(?!//)")


class Settings(BaseSettings):
    """Operator configuration. Every field can be set as ``SOUNDCHECK_<NAME>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="SOUNDCHECK_", extra="ignore")

    redis_url: str = Field(
        f"redis://127.0.0.1:{DEFAULT_REDIS_PORT}/0",
        description="Redis for queue, job state, manifests and statistics. `soundcheck serve` starts one on "
        "this local port when nothing answers there.",
    )
    data_dir: Path = Field(Path("~/.soundcheck"), description="Uploaded audio, embedding cache, embedded Redis.")
    model_dir: Path | None = Field(None, description="Weight files by official name (default: <data_dir>/models).")
    allowed_roots: Annotated[list[Path], NoDecode] = Field(
        default_factory=list,
        description="Server directories that may be registered as datasets (os.pathsep- or comma-separated).",
    )
    allowed_remote_roots: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Object-store prefixes (s3://bucket/prefix) whose objects may be registered as datasets; "
        "filled from the s3:// entries of SOUNDCHECK_ALLOWED_ROOTS.",
    )
    queue_name: str = Field("soundcheck", description="RQ queue shared by api and workers.")

    # --- storage (where blobs, manifests mirror and embedding cache live; soundcheck/storage.py) ---
    storage_url: str | None = Field(
        None, description="Shared storage of blobs, manifests mirror and per-file embeddings: a local path "
        "(default: the data dir, one disk shared by every process) or s3://bucket/prefix (workers on many hosts).",
    )
    s3_endpoint_url: str | None = Field(
        None, description="S3 endpoint (MinIO, Ceph, moto: http://host:9000); unset: AWS_ENDPOINT_URL or AWS itself. "
        "Credentials and region come from the usual AWS variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, "
        "AWS_DEFAULT_REGION) or profile.",
    )
    s3_region: str | None = Field(None, description="S3 region (unset: AWS_DEFAULT_REGION / the AWS profile).")
    s3_addressing_style: str = Field("path", pattern="^(path|virtual|auto)$",
                                     description="S3 addressing: path (MinIO, Ceph; AWS accepts it), virtual, auto.")
    local_cache_max_bytes: int = Field(
        20 << 30, gt=0,
        description="Bound on a host's local read-through copies of shared blobs and embeddings "
        "(<data dir>/cache), least recently used evicted; used when the storage is an object store or a dataset "
        "is registered from one.",
    )
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_token: str | None = Field(None, description="If set, every /v1 request needs `Authorization: Bearer`.")

    job_timeout_s: int = Field(6 * 3600, gt=0, description="Hard limit for one job on a worker.")
    result_ttl_s: int = Field(30 * 24 * 3600, gt=0, description="How long RQ keeps its own data of a finished/failed "
                              "job (soundcheck's job records: job_retention_s).")

    max_upload_bytes: int = Field(2 * 1024**3, gt=0, description="Largest accepted upload request body.")
    max_files_per_dataset: int = Field(100_000, gt=0)
    zip_max_members: int = Field(50_000, gt=0)
    zip_max_uncompressed_bytes: int = Field(8 * 1024**3, gt=0)
    zip_max_ratio: float = Field(200.0, gt=1, description="Largest uncompressed/compressed ratio of a zip member.")
    max_file_seconds: float = Field(3600.0, gt=0, description="Longest accepted audio file.")

    preload: Annotated[list[str] | None, NoDecode] = Field(
        None, description="Models the worker loads at start (default: mel + every model whose weights exist)."
    )
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N")
    torch_threads: int = Field(0, ge=0, description="Threads of the worker's model runtimes: torch.set_num_threads "
                               "and onnxruntime intra-op threads (YAMNet); 0 = every core this process may use.")
    batch_size: int | None = Field(
        None, gt=0,
        description="Model input rows per forward pass, for every model (unset: each model's measured default: "
        "vggish 16 on CPU / 64 on CUDA, cnn14 1 / 8, yamnet and mel 64). A row is a 0.96 s patch (mel, yamnet, "
        "vggish) or a 10 s segment (cnn14). vggish, cnn14 and yamnet always run exactly this many rows, "
        "zero-padded, so a file's numbers do not depend on its neighbours (measured bitwise at the defaults; "
        "at other row counts torch kernels may move values by ~1e-5 relative with a row's position in the pass); "
        "a value other than the default enters their embedding provenance (another cache key).",
    )
    fanout_chunk_files: int = Field(
        64, gt=0, description="Files per chunk when a large set is embedded by several workers at once."
    )

    # --- supervision (serve, restarts, Redis outages) ---
    restart_backoff_s: float = Field(
        1.0, gt=0, description="`serve`: wait before the first restart of a child that died; doubles per restart."
    )
    restart_backoff_max_s: float = Field(30.0, gt=0, description="`serve`: longest wait between two restarts.")
    restart_reset_after_s: float = Field(
        60.0, gt=0, description="`serve`: a child up this long counts as healthy again (its backoff starts over)."
    )
    worker_redis_grace_s: float = Field(
        60.0, ge=0, description="How long a worker's Redis command retries through an outage before it gives up "
        "(the job in hand is then recorded failed once Redis is back, and RQ retries it if it has retries left; "
        "the worker process stays up).",
    )
    api_redis_timeout_s: float = Field(
        2.0, gt=0, description="Socket timeout of the api's Redis client: a request fails fast with 503 instead "
        "of hanging while Redis is down or paused.",
    )
    redis_retry_after_s: int = Field(5, gt=0, description="Retry-After (seconds) of the api's 503 while Redis is down.")

    # --- jobs (retries, liveness, locks, limits) ---
    job_max_attempts: int = Field(
        3, ge=1, description="Attempts of a job whose worker died mid-job (killed, out of memory) before it "
        "fails; bad input and cancels are never retried.",
    )
    worker_heartbeat_ttl_s: int = Field(
        30, ge=3, description="A worker not heard from for this long is dead: its job is retried and its fan-out "
        "chunks taken back. Workers beat every third of it, also while a job runs.",
    )
    maintenance_interval_s: float = Field(
        10.0, gt=0, description="How often one of the workers looks for jobs of dead workers (RQ's started-job "
        "registry) and for queued jobs that vanished.",
    )

    # --- uploads, audio safety and storage hygiene ---
    max_decoded_samples: int = Field(
        1_500_000_000, gt=0,
        description="Largest accepted file by its header: duration x sample rate x channels. Decoding streams "
        "(memory stays one block plus the mono output), so this bounds the CPU time per file (about 10 s of "
        "one core per 10^9 samples with FLAC + soxr HQ): the default admits an hour of 8-channel 48 kHz "
        "audio (1.38e9) and refuses an hour of 8-channel 192 kHz (5.5e9), minutes of one core per file.",
    )
    job_retention_s: int = Field(
        30 * 24 * 3600, gt=0,
        description="How long `soundcheck gc` keeps a finished or failed job record and its result after it ended "
        "(30 days: long enough to compare a training run with last month's).",
    )
    stats_cache_max_bytes: int = Field(
        1 << 30, gt=0,
        description="Bound on cached reference statistics and NDB bins in Redis (keys sc:stats:*); the least "
        "recently used are evicted beyond it. 1 GiB holds ~30 statistics of 2048-d embeddings (CNN14, 33 MB "
        "each) or ~8000 of 128-d ones, in the Redis that also holds the queue.",
    )
    gc_interval_s: float = Field(
        3600.0, ge=0, description="How often one worker runs garbage collection (`soundcheck gc`); 0 turns it off.",
    )
    gc_min_age_s: float = Field(
        3600.0, ge=0,
        description="Files younger than this (blobs, upload temp files, cached embeddings) are never collected, so "
        "gc cannot race an upload or a job that is writing them.",
    )
    embedding_key_ttl_s: float = Field(
        7 * 24 * 3600, gt=0,
        description="An embedding-cache directory whose key (model, weights, front end, resampler, package "
        "versions) no worker has announced for this long holds old provenance and is removed by gc. Workers "
        "announce their keys at start and at every gc run.",
    )

    # --- security (tokens, quotas, binding) ---
    api_tokens: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Accepted bearer tokens, comma-separated, newest first (rotation: add the new one, move clients, "
        "drop the old one). SOUNDCHECK_API_TOKEN is accepted too; without it this machine's clients send the first.",
    )
    allow_unauthenticated_network: bool = Field(
        False, description="Serve the api on a non-loopback address without any token (only behind a firewall or an "
        "authenticating proxy). Without it the api refuses to start that way.",
    )
    max_active_jobs_per_client: int = Field(
        100, ge=0, description="Queued + running jobs one token (or one client IP when no token is set) may have; "
        "POST /v1/jobs answers 429 past it. 0 = no cap.",
    )

    # --- metric stage (statistics, bootstrap, KAD, caches) ---
    kad_max_frames: int = Field(
        20_000, ge=0, description="KAD on CPU: a set with more frames is cut to a seeded subsample of this many "
        "(named in the result as subsampled_from; 0 = never, else at least 2). Time grows with frames^2: 10,000 + "
        "10,000 frames took 12-16 s at 128-d and 30-44 s at 1024-d with 100 resamples on 2 busy cores "
        "(benchmarks/RESULTS.md); the default cap costs ~4x that. Not applied when KAD runs on CUDA.",
    )
    kad_device: str = Field(
        "auto", description="Where KAD's kernel sums run: auto (CUDA when the worker has torch and a GPU, else "
        "numpy) | numpy | a torch device (cpu, cuda, cuda:N); float64 everywhere.",
    )

    # --- batching (one layer decides model batches) ---

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return (value.strip() or None) if isinstance(value, str) else value

    @field_validator("api_tokens", mode="before")
    @classmethod
    def _split_tokens(cls, value: object) -> object:
        if isinstance(value, str):
            return [t.strip() for t in value.split(",") if t.strip()]
        return value

    @model_validator(mode="after")
    def _check_tokens(self) -> Settings:
        for token in ([self.api_token] if self.api_token else []) + self.api_tokens:
            if not BEARER_TOKEN.fullmatch(token):
                raise ValueError("an api token must be 1+ characters of A-Z a-z 0-9 - . _ ~ + / (RFC 6750 "
                                 "b64token, e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)")
        if self.api_token is None and self.api_tokens:
            self.api_token = self.api_tokens[0]  # the token this machine's CLI and `serve` send
        return self

    @property
    def accepted_tokens(self) -> list[str]:
        """Every token the api accepts (SOUNDCHECK_API_TOKEN and SOUNDCHECK_API_TOKENS)."""
        return list(dict.fromkeys(([self.api_token] if self.api_token else []) + self.api_tokens))

    @model_validator(mode="before")
    @classmethod
    def _split_roots(cls, values: object) -> object:
        """Local roots and s3:// prefixes in one variable: split on commas and on ``:`` not in ``://``."""
        if not isinstance(values, dict):
            return values
        raw = values.get("allowed_roots") or []
        items = [p for chunk in raw.split(",") for p in ROOT_SEP.split(chunk)] if isinstance(raw, str) else raw
        items = [str(p).strip() for p in items if str(p).strip()]
        remote = [p for p in items if "://" in p and not p.startswith("file://")]
        local = [Path(p.removeprefix("file://")) for p in items if p not in remote]
        given = values.get("allowed_remote_roots") or []
        given = [p.strip() for p in given.split(",")] if isinstance(given, str) else list(given)
        return {**values, "allowed_roots": local,
                "allowed_remote_roots": list(dict.fromkeys(p.rstrip("/") for p in given + remote if p))}

    @field_validator("preload", mode="before")
    @classmethod
    def _split_preload(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @model_validator(mode="after")
    def _resolve_paths(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        self.model_dir = (self.model_dir or self.data_dir / "models").expanduser().resolve()
        self.allowed_roots = [p.expanduser().resolve() for p in self.allowed_roots]
        return self

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def embedding_cache_dir(self) -> Path:
        return self.data_dir / "embeddings"

    @property
    def storage(self) -> str:
        """The storage URL in effect (the data dir when unset)."""
        return self.storage_url or str(self.data_dir)

    @property
    def read_cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def redis_dir(self) -> Path:
        return self.data_dir / "redis"

    @property
    def models_dir(self) -> Path:
        assert self.model_dir is not None
        return self.model_dir

    def effective_threads(self) -> int:
        if self.torch_threads:
            return self.torch_threads
        try:
            return len(os.sched_getaffinity(0))  # the cores this process may use (containers, taskset)
        except AttributeError:  # not Linux
            return os.cpu_count() or 1


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()

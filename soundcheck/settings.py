"""One settings object for api, worker, CLI and the embedded server (env prefix ``SOUNDCHECK_``).

Read once per process with :func:`get_settings`; nothing else reads ``os.environ`` for configuration.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_REDIS_PORT = 6399


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
    queue_name: str = Field("soundcheck", description="RQ queue shared by api and workers.")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    api_token: str | None = Field(None, description="If set, every /v1 request needs `Authorization: Bearer`.")

    job_timeout_s: int = Field(6 * 3600, gt=0, description="Hard limit for one job on a worker.")
    result_ttl_s: int = Field(30 * 24 * 3600, gt=0, description="How long finished/failed jobs are kept.")

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

    # --- jobs (retries, liveness, locks, limits) ---

    # --- uploads, audio safety and storage hygiene ---

    # --- security (tokens, quotas, binding) ---

    # --- metric stage (statistics, bootstrap, KAD, caches) ---

    # --- batching (one layer decides model batches) ---

    @field_validator("api_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("allowed_roots", mode="before")
    @classmethod
    def _split_roots(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p for chunk in value.split(os.pathsep) for p in chunk.split(",")]
            return [Path(p.strip()) for p in parts if p.strip()]
        return value

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

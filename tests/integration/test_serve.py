"""`soundcheck serve` starts Redis, a worker and the api, and leaves no process behind when stopped.

Restarts of children that die and Redis outages: test_supervision.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port


def _children(pid: int) -> set[int]:
    """All descendants of ``pid`` (from /proc), including processes in other process groups."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return status != "Z"


def _start(tmp_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, SOUNDCHECK_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
               SOUNDCHECK_DATA_DIR=str(tmp_path / "data"), SOUNDCHECK_API_PORT=str(port),
               SOUNDCHECK_PRELOAD="mel")
    proc = subprocess.Popen([sys.executable, "-m", "soundcheck.cli", "serve"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).json().get("workers") == 1:
                return proc, url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        time.sleep(0.2)
    proc.kill()
    pytest.fail("soundcheck serve did not come up")


def test_serve_needs_at_least_one_worker() -> None:
    done = subprocess.run([sys.executable, "-m", "soundcheck.cli", "serve", "--workers", "0"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "must be at least 1" in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_everything_on_signal(tmp_path: Path, how: signal.Signals) -> None:
    proc, url = _start(tmp_path)
    children = _children(proc.pid)
    assert len(children) >= 3  # redis-server, worker, uvicorn
    assert (tmp_path / "data" / "redis" / "appendonlydir").is_dir()  # AOF on
    proc.send_signal(how)
    assert proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [pid for pid in children if _alive(pid)]


@pytest.mark.slow
def test_serve_killed_hard_leaves_no_orphans(tmp_path: Path) -> None:
    proc, _ = _start(tmp_path)
    children = _children(proc.pid)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    leftovers = [pid for pid in children if _alive(pid)]
    for pid in leftovers:
        os.kill(pid, signal.SIGKILL)
    assert not leftovers


def test_serve_stops_at_once_when_signalled_while_starting(tmp_path: Path) -> None:
    """SIGTERM while the workers still load their models: stop now, not after they come up."""
    env = dict(os.environ, SOUNDCHECK_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",
               SOUNDCHECK_DATA_DIR=str(tmp_path / "data"), SOUNDCHECK_API_PORT=str(free_port()),
               SOUNDCHECK_PRELOAD="mel")
    proc = subprocess.Popen([sys.executable, "-m", "soundcheck.cli", "serve"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(children := _children(proc.pid)) < 2 and time.monotonic() < deadline:  # Redis and a worker
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    time.sleep(0.5)
    assert not [pid for pid in children if _alive(pid)]

"""Supervision and Redis outages, against the real parts: `soundcheck serve` restarts what dies, workers and
the api ride out a Redis that is killed, restarted or paused, the api answers 503 + Retry-After meanwhile."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from soundcheck.client import Client
from soundcheck.serve import Backoff, Service, describe_exit, redis_answers, start_redis, wait_until
from tests.conftest import free_port, make_settings
from tests.integration.test_serve import _alive, _children
from worker.gpu_worker import OutageRetry


def _eventually(check: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except httpx.HTTPError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    pytest.fail(f"{what} not within {timeout:.0f} s (last: {last!r})")


def _kill(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.kill()
        proc.wait()


# ------------------------------------------------------------------ the restart rule


def test_backoff_doubles_is_capped_and_starts_over_after_a_healthy_run() -> None:
    backoff = Backoff(initial_s=1.0, max_s=8.0, reset_after_s=60.0)
    assert [backoff.next_delay(uptime_s=2.0) for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert backoff.next_delay(uptime_s=61.0) == 1.0  # it stayed up a while: healthy again
    assert backoff.next_delay(uptime_s=0.5) == 2.0


def test_exit_is_described_by_signal_name_or_code() -> None:
    assert describe_exit(-signal.SIGKILL) == "SIGKILL"
    assert describe_exit(-signal.SIGSEGV) == "SIGSEGV"
    assert describe_exit(3) == "exit code 3"


def test_check_restarts_only_the_child_that_died(tmp_path: Path) -> None:
    """Real processes: kill one of two, the other keeps its pid, the dead one comes back after its backoff."""
    settings = make_settings("redis://127.0.0.1:1/0", tmp_path, restart_backoff_s=0.3)
    service = Service(settings)
    sleeper = [sys.executable, "-c", "import time; time.sleep(120)"]
    for name in ("worker-0", "worker-1"):
        service._launch(service._child(name, sleeper, None))
    lines: list[str] = []
    try:
        first, second = service.workers
        first.send_signal(signal.SIGKILL)
        first.wait()
        service.check(lines.append)
        assert lines == ["worker-0 exited (SIGKILL); restarting in 0.3 s, restart 1"]
        assert service.workers[0] is first  # not before the backoff
        time.sleep(0.35)
        service.check(lines.append)
        restarted = service.workers[0]
        assert restarted is not first and restarted.poll() is None
        assert service.workers[1] is second and second.poll() is None
        restarted.terminate()
        restarted.wait()
        service.check(lines.append)  # died again at once: the wait doubles
        assert lines[-1] == "worker-0 exited (SIGTERM); restarting in 0.6 s, restart 2"
    finally:
        service.stop(grace_s=5)
    assert all(p.poll() is not None for p in service.workers)


# ------------------------------------------------------------------ a worker's Redis connection


@pytest.fixture()
def own_redis(tmp_path: Path) -> Iterator[tuple[int, Path, list[subprocess.Popen]]]:
    """A redis-server of this test's own (AOF on), which the test may kill and restart on the same dir."""
    port, directory = free_port(), tmp_path / "redis"
    procs = [start_redis(port, directory, env={})]
    wait_until(lambda: redis_answers(f"redis://127.0.0.1:{port}/0"), 20, "redis-server", procs[0])
    yield port, directory, procs
    for proc in procs:
        _kill(proc)


def test_worker_connection_rides_out_a_redis_restart(own_redis: tuple[int, Path, list[subprocess.Popen]]) -> None:
    port, directory, procs = own_redis
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", retry=OutageRetry(grace_s=20))
    client.set("kept", "yes")
    time.sleep(1.2)  # appendfsync everysec: on disk, not only in the page cache
    _kill(procs[0])

    got: list[object] = []
    reader = threading.Thread(target=lambda: got.append(client.get("kept")), daemon=True)
    started = time.monotonic()
    reader.start()  # waits through the outage...
    time.sleep(3)
    assert reader.is_alive()
    # (restarted from this thread: PR_SET_PDEATHSIG fires when the thread that spawned a child ends)
    procs.append(start_redis(port, directory, env={}))
    reader.join(timeout=20)
    assert got == [b"yes"]  # ...then reads the value the restarted Redis loaded from its AOF
    assert 2.5 < time.monotonic() - started < 20


def test_worker_connection_gives_up_after_its_grace(own_redis: tuple[int, Path, list[subprocess.Popen]]) -> None:
    port, _, procs = own_redis
    client = Redis.from_url(f"redis://127.0.0.1:{port}/0", retry=OutageRetry(grace_s=1.0))
    client.ping()
    _kill(procs[0])
    started = time.monotonic()
    with pytest.raises(RedisConnectionError):
        client.get("anything")
    assert 0.9 < time.monotonic() - started < 6


# ------------------------------------------------------------------ the api while Redis is down


@pytest.fixture()
def api_only(tmp_path: Path, own_redis: tuple[int, Path, list[subprocess.Popen]]) -> Iterator[str]:
    """A real uvicorn api on our own Redis (no worker: these tests are about the api's answers)."""
    port = own_redis[0]
    settings = make_settings(f"redis://127.0.0.1:{port}/0", tmp_path)
    env = dict(Service(settings).env(), SOUNDCHECK_API_PORT=str(settings.api_port))
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "app.main:app_factory", "--host",
                             "127.0.0.1", "--port", str(settings.api_port), "--log-level", "warning"], env=env)
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        _eventually(lambda: httpx.get(f"{url}/v1/health", timeout=2).status_code == 200, 60, "the api")
        yield url
    finally:
        _kill(proc)


def _assert_redis_down_answers(url: str) -> None:
    started = time.monotonic()
    jobs = httpx.get(f"{url}/v1/jobs", timeout=30)
    assert time.monotonic() - started < 8, "a request must fail fast while Redis is down, not hang"
    assert jobs.status_code == 503, jobs.text
    assert jobs.headers["content-type"].startswith("application/problem+json")
    assert int(jobs.headers["retry-after"]) > 0
    assert "Redis" in jobs.json()["detail"]
    health = httpx.get(f"{url}/v1/health", timeout=30)
    assert health.status_code == 503
    assert health.headers["retry-after"]
    assert health.json()["status"] == "degraded" and health.json()["redis"] is False


def test_api_answers_503_with_retry_after_while_redis_is_killed(
        api_only: str, own_redis: tuple[int, Path, list[subprocess.Popen]]) -> None:
    port, directory, procs = own_redis
    _kill(procs[0])
    _assert_redis_down_answers(api_only)
    dataset = httpx.get(f"{api_only}/v1/datasets/abc", timeout=30)  # a dependency-built store, same answer
    assert dataset.status_code == 503 and dataset.headers["retry-after"]
    procs.append(start_redis(port, directory, env={}))
    _eventually(lambda: httpx.get(f"{api_only}/v1/health", timeout=5).status_code == 200, 30, "health back")
    assert httpx.get(f"{api_only}/v1/jobs", timeout=5).status_code == 200


def test_api_answers_503_fast_while_redis_is_paused(
        api_only: str, own_redis: tuple[int, Path, list[subprocess.Popen]]) -> None:
    proc = own_redis[2][0]
    proc.send_signal(signal.SIGSTOP)
    try:
        _assert_redis_down_answers(api_only)
    finally:
        proc.send_signal(signal.SIGCONT)
    _eventually(lambda: httpx.get(f"{api_only}/v1/health", timeout=5).status_code == 200, 30, "health back")


# ------------------------------------------------------------------ a real `soundcheck serve`


@dataclass
class Served:
    proc: subprocess.Popen
    url: str
    redis_url: str
    data: Path
    output: Path

    def pids(self, marker: str) -> list[int]:
        found = []
        for pid in _children(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline and _alive(pid):
                found.append(pid)
        return sorted(found)

    def health(self) -> dict:
        return httpx.get(f"{self.url}/v1/health", timeout=5).json()

    def healthy(self, workers: int) -> bool:
        try:
            response = httpx.get(f"{self.url}/v1/health", timeout=5)
        except httpx.HTTPError:
            return False
        # at least: a killed worker may stay listed a little while, until its liveness lapses
        return response.status_code == 200 and response.json()["workers"] >= workers

    def log(self) -> str:
        return self.output.read_text()


WORKER, REDIS, API = "-m worker", "redis-server", "uvicorn"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`soundcheck serve --workers 2` with its own Redis, data dir and port; output to a file."""
    root = tmp_path_factory.mktemp("served")
    port = free_port()
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    env = dict(os.environ, SOUNDCHECK_REDIS_URL=redis_url,
               SOUNDCHECK_DATA_DIR=str(root / "data"), SOUNDCHECK_API_PORT=str(port), SOUNDCHECK_PRELOAD="mel",
               SOUNDCHECK_QUEUE_NAME=f"sv-{root.name}")
    env.pop("SOUNDCHECK_TORCH_THREADS", None)
    output = root / "serve.out"
    with output.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "soundcheck.cli", "serve", "--workers", "2"], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    served = Served(proc, f"http://127.0.0.1:{port}", redis_url, root / "data", output)
    try:
        deadline = time.monotonic() + 180
        while not served.healthy(workers=2):
            assert proc.poll() is None and time.monotonic() < deadline, served.log()[-3000:]
            time.sleep(0.3)
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def long_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from soundcheck.examples import write_examples

    return write_examples(tmp_path_factory.mktemp("long"), per_class=20)


def _fresh_sets(root: Path, seed: int, n_files: int = 40, seconds: float = 3.0) -> tuple[Path, Path]:
    """Noise no other test uploaded (nothing cached), so the job embeds every file: seconds of work, time to
    break Redis while it runs."""
    rng = np.random.default_rng(seed)
    sets = (root / f"ref-{seed}", root / f"cand-{seed}")
    for directory, gain in zip(sets, (0.3, 0.1), strict=True):
        directory.mkdir(parents=True)
        for i in range(n_files):
            wave = gain * rng.standard_normal(int(16000 * seconds))
            soundfile.write(directory / f"{i:03d}.wav", wave.astype(np.float32), 16000)
    return sets


def _wait_job(client: Client, job_id: str, timeout: float = 240) -> dict:
    """Poll through outages: a 503 while Redis is away is an answer to wait out, as Retry-After says."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            view = client.job(job_id)
        except Exception:  # noqa: BLE001 - 503 or a refused connection while something restarts
            time.sleep(0.5)
            continue
        if view.status in ("finished", "failed"):
            return view.model_dump(mode="json")
        time.sleep(0.3)
    pytest.fail(f"job {job_id} did not end within {timeout} s")


def _running_job(client: Client, sets: tuple[Path, Path]) -> str:
    ref, cand = client.upload(sets[0]), client.upload(sets[1])
    job = client.submit(ref.id, cand.id, "mel", ["fad", "kad"], {"bootstrap": 1000})
    _eventually(lambda: client.job(job.id).status == "running", 60, "the job running")
    return job.id


def _assert_ran_through(final: dict, broken_at: datetime, back_at: datetime) -> None:
    """The job started before Redis broke and ended after it was back: it really was in hand meanwhile."""
    assert final["status"] == "finished", final["error"]
    started, ended = datetime.fromisoformat(final["started_at"]), datetime.fromisoformat(final["ended_at"])
    assert started < broken_at, "the job started late"
    assert ended > back_at, f"the job ended at {ended}, before Redis was broken: give it more work"


@pytest.mark.slow
def test_serve_starts_the_workers_asked_for(served: Served) -> None:
    assert len(served.pids(WORKER)) == 2
    assert served.health()["workers"] == 2
    _eventually(lambda: "with 2 workers" in served.log(), 10, "the announcement")  # printed after health shows them
    # they share the cores rather than each taking all of them
    assert {w["threads"] for w in served.health()["worker_details"]} == {max(1, (os.cpu_count() or 1) // 2)}


@pytest.mark.slow
def test_serve_restarts_a_killed_worker_and_keeps_the_rest(served: Served) -> None:
    workers, redis, api = served.pids(WORKER), served.pids(REDIS), served.pids(API)
    names = {w["name"] for w in served.health()["worker_details"]}
    os.kill(workers[0], signal.SIGKILL)
    _eventually(lambda: "exited (SIGKILL); restarting in" in served.log(), 10, "the restart line")

    def new_worker_up() -> bool:
        return bool({w["name"] for w in served.health()["worker_details"]} - names)

    _eventually(new_worker_up, 30, "a new worker in health")
    assert workers[1] in served.pids(WORKER) and workers[0] not in served.pids(WORKER)
    assert served.pids(REDIS) == redis and served.pids(API) == api  # the others never stopped


@pytest.mark.slow
def test_serve_restarts_a_killed_api(served: Served) -> None:
    workers, api = served.pids(WORKER), served.pids(API)
    os.kill(api[0], signal.SIGKILL)
    _eventually(lambda: served.healthy(workers=2), 30, "the api back")
    assert served.pids(API) != api
    assert served.pids(WORKER) == workers
    assert "api exited (SIGKILL); restarting in" in served.log()


@pytest.mark.slow
def test_serve_restarts_a_killed_redis_on_its_aof(served: Served, long_sets: tuple[Path, Path]) -> None:
    workers = served.pids(WORKER)
    with Client(served.url) as client:
        ref, cand = client.upload(long_sets[0]), client.upload(long_sets[1])
        done = client.wait(client.submit(ref.id, cand.id, "mel", ["fad"], {"bootstrap": 0}).id, timeout_s=180)
        assert done.status == "finished", done.error
        time.sleep(2.5)  # appendfsync everysec: also on disk (a killed Redis keeps even the page cache)
        redis = served.pids(REDIS)
        os.kill(redis[0], signal.SIGKILL)
        _eventually(lambda: served.healthy(workers=2), 30, "health back after the Redis restart")
        assert served.pids(REDIS) != redis
        assert "redis exited (SIGKILL); restarting in" in served.log()
        assert client.dataset(ref.id).n_files == ref.n_files  # from the AOF
        again = client.job(done.id)
    assert again.status == "finished" and again.result == done.result
    assert served.pids(WORKER) == workers  # the workers reconnected; none died


@pytest.mark.slow
def test_job_finishes_through_a_paused_redis(served: Served, tmp_path: Path) -> None:
    workers = served.pids(WORKER)
    redis = served.pids(REDIS)[0]
    with Client(served.url) as client:
        job_id = _running_job(client, _fresh_sets(tmp_path, seed=1))
        os.kill(redis, signal.SIGSTOP)
        broken_at = datetime.now(UTC)
        try:
            paused_at = time.monotonic()
            jobs = httpx.get(f"{served.url}/v1/jobs", timeout=30)
            assert jobs.status_code == 503 and int(jobs.headers["retry-after"]) > 0
            health = httpx.get(f"{served.url}/v1/health", timeout=30)
            assert health.status_code == 503 and health.json()["status"] == "degraded"
            time.sleep(max(0.0, 8 - (time.monotonic() - paused_at)))
        finally:
            os.kill(redis, signal.SIGCONT)
        final = _wait_job(client, job_id)
    _assert_ran_through(final, broken_at, broken_at + timedelta(seconds=7.5))
    assert served.pids(WORKER) == workers  # no worker process exited
    assert served.pids(REDIS) == [redis]


@pytest.mark.slow
def test_job_finishes_through_a_redis_killed_and_restarted(served: Served, tmp_path: Path) -> None:
    workers = served.pids(WORKER)
    with Client(served.url) as client:
        job_id = _running_job(client, _fresh_sets(tmp_path, seed=2))
        redis = served.pids(REDIS)
        os.kill(redis[0], signal.SIGKILL)
        broken_at = datetime.now(UTC)
        _eventually(lambda: redis_answers(served.redis_url), 60, "Redis restarted")
        back_at = datetime.now(UTC)
        assert served.pids(REDIS) != redis
        final = _wait_job(client, job_id)
    _assert_ran_through(final, broken_at, back_at)
    assert served.pids(WORKER) == workers


@pytest.mark.slow
def test_sigterm_stops_everything_after_restarts(served: Served) -> None:
    """The restarted children are tied to serve like the first ones: SIGTERM stops all of them, no orphan."""
    children = _children(served.proc.pid)
    assert len(served.pids(WORKER)) == 2 and served.pids(REDIS) and served.pids(API)
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=60) == 0
    time.sleep(0.5)
    assert not [pid for pid in children if _alive(pid)]
    assert served.log().count("restarting in") >= 4  # worker, api, Redis twice: all were restarts


@pytest.mark.slow
def test_worker_outlives_an_outage_longer_than_its_grace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past SOUNDCHECK_WORKER_REDIS_GRACE_S the job in hand is given up, but it never hangs "running": the
    worker records its failure once Redis is back (RQ retries it where retries are configured), and the same
    worker process goes on with the next job."""
    for name, value in {"WORKER_REDIS_GRACE_S": "1", "PRELOAD": "mel", "TORCH_THREADS": "1"}.items():
        monkeypatch.setenv(f"SOUNDCHECK_{name}", value)
    service = Service(make_settings(f"redis://127.0.0.1:{free_port()}/0", tmp_path)).start(n_workers=1, quiet=True)
    try:
        worker = service.workers[0]
        with Client(service.url) as client:
            job_id = _running_job(client, _fresh_sets(tmp_path, seed=3))
            _kill(service.redis)
            time.sleep(6)  # several graces: the job's Redis commands give up
            assert worker.poll() is None, "the worker process must outlive a Redis outage"
            service._launch(service.children["redis"])  # the same AOF dir
            final = _wait_job(client, job_id, timeout=120)
            assert final["status"] in ("failed", "finished")
            if final["status"] == "failed":
                assert "Redis was unreachable" in final["error"], final["error"]
            ref_dir, cand_dir = _fresh_sets(tmp_path, seed=4, n_files=5, seconds=1.0)
            ref, cand = client.upload(ref_dir), client.upload(cand_dir)
            after = client.wait(client.submit(ref.id, cand.id, "mel", ["fad"], {"bootstrap": 0}).id, timeout_s=120)
        assert after.status == "finished", after.error
        assert service.workers[0] is worker and worker.poll() is None
        # a Redis that comes back without its data (no AOF): the worker registers again by itself
        _kill(service.redis)
        shutil.rmtree(service.settings.redis_dir / "appendonlydir")
        service._launch(service.children["redis"])
        _eventually(lambda: httpx.get(f"{service.url}/v1/health", timeout=5).json()["workers"] == 1, 60,
                    "the worker registered again")
        assert worker.poll() is None
    finally:
        service.stop()
        for log in (tmp_path / "data" / "logs").glob("worker-*.log"):
            print(log.read_text()[-4000:])

"""A real S3 endpoint on loopback: moto's standalone server (a subprocess on a free port), one fresh bucket per
test. MinIO is used where a `minio` binary is on PATH (tests skip otherwise). Nothing leaves the machine."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from soundcheck.storage import s3_options
from tests.conftest import free_port

#: The usual AWS variables, as an operator sets them (README "Multi-host deployment").
AWS_ENV = {"AWS_ACCESS_KEY_ID": "soundcheck-test", "AWS_SECRET_ACCESS_KEY": "soundcheck-test-secret",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}


def _wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


@pytest.fixture(scope="session")
def aws_env() -> Iterator[dict[str, str]]:
    """The AWS variables in this process too (the in-process api and the s3fs clients of the tests)."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in AWS_ENV.items():
            mp.setenv(key, value)
        yield dict(AWS_ENV)


@pytest.fixture(scope="session")
def s3_endpoint(aws_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """moto_server on 127.0.0.1:<free port>."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    binary = Path(sys.executable).parent / "moto_server"
    cmd = [str(binary)] if binary.exists() else [sys.executable, "-m", "moto.server"]
    with log.open("ab") as out:
        proc = subprocess.Popen([*cmd, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **aws_env})
    try:
        _wait_port(port, proc, "moto_server")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def make_bucket(endpoint: str) -> str:
    import s3fs

    name = f"sc-{uuid.uuid4().hex[:12]}"
    s3fs.S3FileSystem(**s3_options(endpoint, None, "path")).mkdir(name)  # us-east-1: no constraint
    return name


@pytest.fixture()
def bucket(s3_endpoint: str) -> str:
    return make_bucket(s3_endpoint)


@pytest.fixture()
def s3fs_client(s3_endpoint: str):
    import s3fs

    return s3fs.S3FileSystem(**s3_options(s3_endpoint, "us-east-1", "path"))


@pytest.fixture(scope="session")
def minio_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MinIO server where the binary exists (credentials = AWS_ENV)."""
    binary = shutil.which("minio")
    if binary is None:
        pytest.skip("no minio binary on PATH")
    port, console = free_port(), free_port()
    root = tmp_path_factory.mktemp("minio")
    env = {**os.environ, "MINIO_ROOT_USER": AWS_ENV["AWS_ACCESS_KEY_ID"],
           "MINIO_ROOT_PASSWORD": AWS_ENV["AWS_SECRET_ACCESS_KEY"]}
    with (root / "minio.log").open("ab") as out:
        proc = subprocess.Popen([binary, "server", str(root / "data"), "--address", f"127.0.0.1:{port}",
                                 "--console-address", f"127.0.0.1:{console}"], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    try:
        _wait_port(port, proc, "minio", 60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)

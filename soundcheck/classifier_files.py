"""Where operator classifiers live and what their files must hold; torch-free, so the api checks them at the door
with the same rules the worker loads them by (soundcheck.embeddings.classifier).

A classifier ``NAME`` is ``<model_dir>/classifiers/NAME.pt`` (TorchScript) plus ``NAME.labels.json``
(``{"sample_rate": 16000, "labels": [...]}``, labels in output order).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from soundcheck.jobspec import CLASSIFIER_NAME

CLASSIFIER_DIR = "classifiers"
_NAME = re.compile(CLASSIFIER_NAME)


def classifier_paths(model_dir: Path, name: str) -> tuple[Path, Path]:
    """(``NAME.pt``, ``NAME.labels.json``) under ``<model_dir>/classifiers``; rejects names that are paths."""
    if not _NAME.match(name) or name.endswith(".labels"):
        raise ValueError(f"invalid classifier name {name!r}: letters, digits, '_', '.', '-' only")
    folder = Path(model_dir) / CLASSIFIER_DIR
    return folder / f"{name}.pt", folder / f"{name}.labels.json"


def list_classifiers(model_dir: Path) -> list[str]:
    """Names of the classifiers whose module and labels file are both present."""
    folder = Path(model_dir) / CLASSIFIER_DIR
    if not folder.is_dir():
        return []
    names = (p.name[: -len(".pt")] for p in folder.glob("*.pt"))
    return sorted(n for n in names if _NAME.match(n) and (folder / f"{n}.labels.json").is_file())


def labels_problem(path: Path) -> str | None:
    """What is wrong with a ``NAME.labels.json``, or None when it is usable."""
    try:
        spec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return f"is not readable JSON ({exc})"
    if not isinstance(spec, dict):
        return "expected an object with 'sample_rate' and 'labels'"
    rate, labels = spec.get("sample_rate"), spec.get("labels")
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        return f"needs 'sample_rate' as a positive integer, not {rate!r}"
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        return "needs 'labels' as a non-empty list of strings"
    if len(set(labels)) != len(labels):
        return "has duplicate labels (remove the duplicates: outputs must be told apart)"
    return None


def read_labels(path: Path) -> tuple[int, list[str]]:
    """(sample rate, labels) from a ``NAME.labels.json``; ValueError saying what is wrong."""
    problem = labels_problem(path)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    spec = json.loads(path.read_text(encoding="utf-8"))
    return spec["sample_rate"], spec["labels"]

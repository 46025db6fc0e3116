"""What `soundcheck eval/jobs` print and write for a finished job: a table, JSON, CSV or LaTeX on stdout,
figures under ``--plot DIR``, and the exit code (see :data:`EXIT`). Progress while waiting: a rich bar on a
terminal, one plain line per change of stage in a log or a pipe (a bar there would be carriage-return noise).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from soundcheck import export
from soundcheck.jobspec import JobView
from soundcheck.results import job_result

#: Exit codes of the CLI: 0 ok, 2 usage (bad arguments or options the api refused), 3 the job failed,
#: 4 no api answered.
EXIT = {"ok": 0, "usage": 2, "job_failed": 3, "unreachable": 4}


def wait_with_progress(wait: Callable[[Callable[[JobView], None]], JobView], console: Console) -> JobView:
    """``wait(on_progress)`` with a bar on a terminal, else a line per new stage (or file count, by tens)."""
    if console.is_terminal:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("queued", total=None)

            def show(view: JobView) -> None:
                bar.update(task, description=view.progress.stage, completed=view.progress.done,
                           total=view.progress.total or None)

            return wait(show)
    last: list[tuple[str, int]] = []

    def line(view: JobView) -> None:
        p = view.progress
        key = (p.stage, p.done * 10 // p.total if p.total else 0)
        if not last or last[-1] != key:
            last.append(key)
            count = f" {p.done}/{p.total}" if p.total else ""
            print(f"{view.status}: {p.stage}{count}", file=sys.stderr, flush=True)

    return wait(line)


def print_result(view: JobView, fmt: str, plot_dir: str | None, out: Console, console: Console) -> int:
    """Write the job's result as ``fmt`` to stdout (``json``: the whole job), figures to ``plot_dir``."""
    if view.status == "failed":
        console.print(f"[red]job failed:[/] {view.error}", soft_wrap=True)
        if fmt == "json":
            sys.stdout.write(view.model_dump_json(indent=2) + "\n")
        return EXIT["job_failed"]
    if view.status != "finished":
        console.print(f"job {view.id} is {view.status}; `soundcheck jobs wait {view.id}` waits for it")
        return EXIT["ok"]
    result = job_result(view)
    if fmt == "json":
        sys.stdout.write(view.model_dump_json(indent=2) + "\n")
    else:
        sys.stdout.write(export.render(result, fmt))
    sys.stdout.flush()
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    if plot_dir:
        from soundcheck.plots import PlotsUnavailable, plot_result

        try:
            written = plot_result(result, Path(plot_dir), stem=f"job-{view.id[:12]}")
        except PlotsUnavailable as exc:
            console.print(f"[red]error:[/] {exc}")
            return EXIT["usage"]
        for path in written:
            console.print(f"wrote {path}")
        if not written:
            console.print("no figures: the result has no NDB bins, per-file FAD or FAD-inf points")
    return EXIT["ok"]

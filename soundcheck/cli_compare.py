"""`soundcheck compare REF CAND_A CAND_B ...`: the paired comparison of POST /v1/comparisons on the terminal.

Kept out of cli.py (which registers it) so the comparison's arguments live in one place; its tables
(``--format table|json|csv|latex``) are :func:`soundcheck.export_runs.render_comparison`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from soundcheck.cli_output import EXIT
from soundcheck.comparespec import COMPARED_METRICS, ComparisonView
from soundcheck.export import FORMATS
from soundcheck.export_runs import render_comparison


def _label(source: str, used: set[str]) -> str:
    """A candidate's name in the sentences: its directory name when it is a path, else A, B, C..."""
    path = Path(source)
    name = path.name if path.exists() and path.name else ""
    if not name or name in used:
        name = chr(ord("A") + len(used))
    used.add(name)
    return name


def cmd_compare(args: argparse.Namespace) -> int:
    from soundcheck.cli import _dataset_id, console, service_for

    options = json.loads(args.options) if args.options else {}
    if args.resamples is not None:
        options["resamples"] = args.resamples
    used: set[str] = set()
    labels = [_label(c, used) for c in args.candidates]
    with service_for(args) as client:
        ref = _dataset_id(client, args.reference, "reference")
        cands = [_dataset_id(client, c, f"candidate {label}") for c, label in zip(args.candidates, labels,
                                                                                 strict=True)]
        view = client.submit_comparison(ref, cands, args.embedding, args.metrics.split(","), options, labels)
        console.print(f"comparison {view.id} queued")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=True) as bar:
            task = bar.add_task("queued", total=None)

            def show(v: ComparisonView) -> None:
                bar.update(task, description=v.progress.stage, completed=v.progress.done,
                           total=v.progress.total or None)

            view = client.wait_comparison(view.id, poll_s=0.3, on_progress=show)
    fmt = "json" if args.json else args.format
    if view.status == "failed":
        console.print(f"[red]comparison failed:[/] {view.error}", soft_wrap=True)
        if fmt == "json":
            sys.stdout.write(render_comparison(view, "json"))
        return EXIT["job_failed"]
    sys.stdout.write(render_comparison(view, fmt))
    sys.stdout.flush()
    for warning in view.result.warnings if view.result is not None else []:
        console.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)
    return EXIT["ok"]


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired comparison of CANDIDATES against REFERENCE: difference, interval, "
                                       "p-value per pair (directories, zips or dataset ids)")
    p.add_argument("reference")
    p.add_argument("candidates", nargs="+", help="two or more candidate sets")
    p.add_argument("--embedding", default="mel", help="embedding model id (soundcheck models list)")
    p.add_argument("--metrics", default="fad", help=f"comma-separated, of: {', '.join(COMPARED_METRICS)}")
    p.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default 1000)")
    p.add_argument("--options", default=None, help='JSON comparison options, e.g. \'{"seed": 1}\'')
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default, then one sentence per "
                   "difference), json (the whole comparison), csv (one row per pair and metric) or latex "
                   "(booktabs) on stdout; exit 0 ok, 2 usage, 3 comparison failed, 4 no api answers")
    p.add_argument("--json", action="store_true", help="print the whole comparison as JSON (= --format json)")
    p.add_argument("--no-start", action="store_true", help="fail instead of starting the embedded service")
    p.set_defaults(func=cmd_compare)

"""`soundcheck compare REF CAND_A CAND_B ...`: the paired comparison of POST /v1/comparisons on the terminal.

Kept out of cli.py (which registers it) so the comparison's table and arguments live in one place."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from soundcheck.comparespec import COMPARED_METRICS, ComparisonView


def _label(source: str, used: set[str]) -> str:
    """A candidate's name in the sentences: its directory name when it is a path, else A, B, C..."""
    path = Path(source)
    name = path.name if path.exists() and path.name else ""
    if not name or name in used:
        name = chr(ord("A") + len(used))
    used.add(name)
    return name


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def comparison_table(view: ComparisonView) -> Table:
    """One row per pair and metric: both values, the difference b − a, its interval and p-value."""
    result = view.result
    embedding = view.spec.embedding if view.spec else "?"
    level = round(100 * view.spec.options.confidence) if view.spec else 95
    table = Table(title=f"soundcheck comparison {view.id[:12]} — embedding {embedding}")
    for col in ("pair (b vs a)", "metric", "a", "b", "b − a", f"{level}% interval", "p"):
        table.add_column(col, justify="left" if col in ("pair (b vs a)", "metric") else "right")
    for pair in result.pairs if result is not None else []:
        for metric, d in pair.metrics.items():
            span = f"[{_fmt(d.low)}, {_fmt(d.high)}]" if d.low is not None else ""
            table.add_row(f"{pair.b} vs {pair.a}" + (" (paired)" if pair.paired_by_name else ""), metric,
                          _fmt(d.a_value), _fmt(d.b_value), _fmt(d.difference), span,
                          "—" if d.p_value is None else f"{d.p_value:.3g}")
    return table


def cmd_compare(args: argparse.Namespace) -> int:
    from soundcheck.cli import _dataset_id, console, out, service_for

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
    if args.json:
        out.print_json(view.model_dump_json())
        return 0 if view.status == "finished" else 1
    if view.status == "failed":
        console.print(f"[red]comparison failed:[/] {view.error}")
        return 1
    out.print(comparison_table(view))
    for pair in view.result.pairs if view.result is not None else []:
        for d in pair.metrics.values():
            out.print(d.sentence, soft_wrap=True)
    for warning in view.result.warnings if view.result is not None else []:
        console.print(f"[yellow]warning:[/] {warning}")
    return 0


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="paired comparison of CANDIDATES against REFERENCE: difference, interval, "
                                       "p-value per pair (directories, zips or dataset ids)")
    p.add_argument("reference")
    p.add_argument("candidates", nargs="+", help="two or more candidate sets")
    p.add_argument("--embedding", default="mel", help="embedding model id (soundcheck models list)")
    p.add_argument("--metrics", default="fad", help=f"comma-separated, of: {', '.join(COMPARED_METRICS)}")
    p.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default 1000)")
    p.add_argument("--options", default=None, help='JSON comparison options, e.g. \'{"seed": 1}\'')
    p.add_argument("--json", action="store_true", help="print the whole comparison as JSON")
    p.add_argument("--no-start", action="store_true", help="fail instead of starting the embedded service")
    p.set_defaults(func=cmd_compare)

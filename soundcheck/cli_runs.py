"""`soundcheck runs list` and `soundcheck runs show NAME`: tables built from the typed models (RunSummary,
RunView), so another output format (csv, latex, json) is a function of the same model."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

from soundcheck.jobspec import RunSummary, RunView


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4g}"


def runs_table(runs: list[RunSummary]) -> Table:
    table = Table(title="soundcheck runs")
    for col in ("run", "steps", "last step", "updated"):
        table.add_column(col, justify="right" if col in ("steps", "last step") else "left")
    for run in runs:
        updated = run.updated_at.strftime("%Y-%m-%d %H:%M:%S") if run.updated_at else ""
        table.add_row(run.name, str(run.steps), "" if run.last_step is None else str(run.last_step), updated)
    return table


def run_table(run: RunView) -> Table:
    """One row per job (step order), one column per metric: value [low, high]."""
    table = Table(title=f"soundcheck run {run.name} — {run.steps} steps")
    table.add_column("step", justify="right")
    table.add_column("job")
    table.add_column("status")
    for name in run.metrics:
        table.add_column(name, justify="right")
    for point in run.points:
        cells = []
        for name in run.metrics:
            m = point.metrics.get(name)
            if m is None:
                cells.append("")
            elif m.error:
                cells.append("error")
            else:
                span = f" [{_fmt(m.low)}, {_fmt(m.high)}]" if m.low is not None and m.high is not None else ""
                cells.append(f"{_fmt(m.value)}{span}")
        table.add_row(str(point.step), point.job_id[:12], point.status, *cells)
    return table


def add_parser(sub: Any, client_for: Callable[[argparse.Namespace], Any], out: Console) -> None:
    """Register `runs` on the CLI's subparsers; ``client_for(args)`` opens a Client to the api."""

    def cmd_runs(args: argparse.Namespace) -> int:
        with client_for(args) as client:
            if args.action == "list":
                out.print(runs_table(client.runs()))
                return 0
            if not args.name:
                raise SystemExit("soundcheck runs show NAME (see `soundcheck runs list`)")
            out.print(run_table(client.run(args.name)))
        return 0

    p = sub.add_parser("runs", help="list | show NAME: training runs (jobs submitted with run and step)")
    p.add_argument("action", choices=("list", "show"))
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_runs)

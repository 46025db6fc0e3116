"""`soundcheck runs list` and `soundcheck runs show NAME`: ``--format table|json|csv|latex`` on stdout, rendered by
:mod:`soundcheck.export_runs` from the typed models (RunSummary, RunView), and ``--plot DIR``: one figure per
metric (value over steps with the interval band, PNG and SVG) drawn by :func:`soundcheck.plots.plot_run`."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from soundcheck.cli_output import EXIT
from soundcheck.export import FORMATS
from soundcheck.export_runs import render_run, render_runs, run_series
from soundcheck.jobspec import RunView


def _stem(text: str) -> str:
    """A file-name part: run and metric names may hold '.' and ':' (``prdc.recall``, ``exp.2:a``), which a file
    suffix or a Windows path would misread."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text)


def plot_run_view(run: RunView, directory: Path) -> list[Path]:
    """``run-<name>-<metric>.png/.svg`` under ``directory`` for each metric that has at least one value."""
    from soundcheck.plots import plot_run

    written: list[Path] = []
    for metric, points in run_series(run).items():
        written += plot_run({metric: points}, directory / f"run-{_stem(run.name)}-{_stem(metric)}",
                            title=f"run {run.name}: {metric}")
    return written


def _plot(run: RunView, plot_dir: str, console: Console) -> int:
    from soundcheck.plots import PlotsUnavailable

    try:
        written = plot_run_view(run, Path(plot_dir))
    except PlotsUnavailable as exc:
        console.print(f"[red]error:[/] {exc}")
        return EXIT["usage"]
    for path in written:
        console.print(f"wrote {path}", soft_wrap=True)  # a path on one line, to copy or grep
    if not written:
        console.print("no figures: no job of the run has a metric value yet")
    return EXIT["ok"]


def add_parser(sub: Any, client_for: Callable[[argparse.Namespace], Any], out: Console,
               console: Console | None = None) -> None:
    """Register `runs` on the CLI's subparsers; ``client_for(args)`` opens a Client to the api."""
    err = console or Console(stderr=True)

    def cmd_runs(args: argparse.Namespace) -> int:
        if args.action == "show" and not args.name:
            err.print("[red]error:[/] soundcheck runs show NAME (see `soundcheck runs list`)")
            return EXIT["usage"]
        if args.action == "list" and args.plot:
            err.print("[red]error:[/] --plot draws one run: soundcheck runs show NAME --plot DIR")
            return EXIT["usage"]
        with client_for(args) as client:
            if args.action == "list":
                sys.stdout.write(render_runs(client.runs(), args.format))
                return EXIT["ok"]
            run = client.run(args.name)
        sys.stdout.write(render_run(run, args.format))
        sys.stdout.flush()
        return _plot(run, args.plot, err) if args.plot else EXIT["ok"]

    p = sub.add_parser("runs", help="list | show NAME: training runs (jobs submitted with run and step)")
    p.add_argument("action", choices=("list", "show"))
    p.add_argument("name", nargs="?")
    p.add_argument("--format", choices=FORMATS, default="table", help="table (default), json, csv (one row per "
                   "step and metric) or latex (booktabs) on stdout; exit 0 ok, 2 usage, 4 no api answers")
    p.add_argument("--plot", metavar="DIR", default=None, help="runs show: write one PNG and SVG figure per "
                   "metric (value over steps with the interval band) to DIR (needs matplotlib: the plots extra)")
    p.set_defaults(func=cmd_runs)

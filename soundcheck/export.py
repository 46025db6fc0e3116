"""Tables of a job's result for papers and scripts: plain text, JSON, CSV and LaTeX (booktabs).

Pure functions of :class:`soundcheck.results.EvaluationResult` (no IO, no service packages), shared by the CLI
(``soundcheck eval --format``) and the api (``GET /v1/jobs/{id}`` with ``Accept: text/csv``), so both give the
same bytes. One row per estimate: a metric with scored parts (PRDC) gives one row per part (``prdc.recall``).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from soundcheck.results import EvaluationResult, MetricResult, PrdcResult

FORMATS = ("table", "json", "csv", "latex")
CSV_COLUMNS = ("metric", "value", "low", "high", "confidence", "method", "n_reference", "n_candidate", "error")
TABLE_COLUMNS = ("metric", "value", "interval", "n ref", "n cand")
#: LaTeX names of metrics; the rest are typeset as given (escaped).
LATEX_NAMES = {"fad": "FAD", "fad_inf": r"FAD$_\infty$", "fad_per_file": "per-file FAD", "kad": "KAD",
               "ndb": "NDB", "is": "IS", "kl": "KL", "snr": "SNR", "si_sdr": "SI-SDR", "lsd": "LSD", "mcd": "MCD",
               "mrstft": "MR-STFT", "accuracy": "accuracy", "mfcc_distance": "MFCC distance"}


@dataclass(frozen=True)
class Row:
    metric: str
    value: float | None
    low: float | None
    high: float | None
    confidence: float | None
    method: str | None
    n_reference: int | None
    n_candidate: int | None
    error: str | None = None


def rows(result: EvaluationResult) -> list[Row]:
    """The estimates of a result, in the order the job asked for its metrics."""
    out = []
    for name, entry in result.metrics.items():
        parts = entry.parts() if isinstance(entry, PrdcResult) else {}
        items: dict[str, MetricResult] = ({f"{name}.{k}": v for k, v in parts.items()}  # type: ignore[misc]
                                          if entry.value is None and parts and not entry.error else {name: entry})
        for label, item in items.items():
            iv = item.interval
            out.append(Row(label, item.value, iv.low if iv else None, iv.high if iv else None,
                           iv.confidence if iv else None, iv.method if iv else None, entry.n_reference,
                           entry.n_candidate, entry.error))
    return out


def _num(value: float | int | None) -> str:
    """Full precision for machines: the shortest text that reads back as the same float."""
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


def _short(value: float | int | None) -> str:
    """Four significant digits for readers."""
    if value is None:
        return "—"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def to_csv(result: EvaluationResult) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows(result):
        writer.writerow([r.metric, _num(r.value), _num(r.low), _num(r.high), _num(r.confidence), r.method or "",
                         _num(r.n_reference), _num(r.n_candidate), r.error or ""])
    return buf.getvalue()


def to_json(result: EvaluationResult) -> str:
    return json.dumps([r.__dict__ for r in rows(result)], indent=2) + "\n"


def to_table(result: EvaluationResult) -> str:
    """Aligned plain text (no colours, no box characters): the same in a terminal, a log or a diff."""
    body = [[r.metric, _short(r.value) if not r.error else "not computed",
             f"[{_short(r.low)}, {_short(r.high)}]" if r.low is not None or r.high is not None else "",
             _short(r.n_reference) if r.n_reference is not None else "",
             _short(r.n_candidate) if r.n_candidate is not None else ""] for r in rows(result)]
    table = [list(TABLE_COLUMNS), *body]
    widths = [max(len(row[i]) for row in table) for i in range(len(TABLE_COLUMNS))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths,
                                                                                            strict=True))).rstrip()

    out = [line(table[0]), "  ".join("-" * w for w in widths), *(line(r) for r in body)]
    out += [f"{r.metric}: {r.error}" for r in rows(result) if r.error]
    return "\n".join(out) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    """Text as LaTeX typesets it literally (file names, metric names with underscores)."""
    return "".join(_LATEX_SPECIAL.get(c, c) for c in text)


def _latex_name(metric: str) -> str:
    head, _, part = metric.partition(".")
    name = LATEX_NAMES.get(head, latex_escape(head.upper() if head == "prdc" else head))
    return f"{name} {latex_escape(part)}" if part else name


def to_latex(result: EvaluationResult) -> str:
    """A booktabs ``tabular``: value and interval in ``$\\cdot$`` maths, four significant digits."""
    level = next((r.confidence for r in rows(result) if r.confidence is not None), None)
    head = f"{round(100 * level)}\\% interval" if level is not None else "interval"
    lines = [r"\begin{tabular}{lrrrr}", r"\toprule", f"Metric & Value & {head} & $n_\\mathrm{{ref}}$ & "
             r"$n_\mathrm{cand}$ \\", r"\midrule"]
    for r in rows(result):
        value = "--" if r.value is None else f"${_short(r.value)}$"
        span = f"$[{_short(r.low)}, {_short(r.high)}]$" if r.low is not None and r.high is not None else "--"
        lines.append(f"{_latex_name(r.metric)} & {value} & {span} & {_num(r.n_reference) or '--'} & "
                     f"{_num(r.n_candidate) or '--'} \\\\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def render(result: EvaluationResult, fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    return {"table": to_table, "json": to_json, "csv": to_csv, "latex": to_latex}[fmt](result)

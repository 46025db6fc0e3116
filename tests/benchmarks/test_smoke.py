"""Every benchmark script runs in its --smoke mode and prints its figures in the one summary form.

The figures themselves are not asserted (timings on a shared CI machine mean nothing); what is checked is that
the scripts still run against today's code and say `ok` or `short` for each target, so RESULTS.md can be
regenerated at any time.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[2] / "benchmarks").glob("bench_*.py"))
#: `name: ours=…, limit|peer=…, ratio=…, target…, ok|short`
SUMMARY = re.compile(r"^\S.*?: ours=.+?, (limit|peer)=.+?, ratio=.+?, target.+?, (ok|short)\b")


def test_there_are_benchmarks() -> None:
    assert BENCHMARKS


@pytest.mark.slow
@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.stem)
def test_benchmark_smoke_mode_prints_summary_lines(script: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(script.parents[1]),
                                                                     os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, str(script), "--smoke"], capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if SUMMARY.match(line.strip())]
    assert lines, f"{script.name} printed no summary line:\n{proc.stdout[-3000:]}"

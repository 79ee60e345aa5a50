"""bench/admission.py runs against the gateway as it is (a short run, nothing written).

The pure parts of the other benchmarks have their own tests; this one drives
``Gateway.authenticate`` itself, so a change to the gateway's keyset or Redis
interfaces must not leave it broken until the next time someone measures.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_admission_benchmark_runs_a_short_round_and_reports_every_arm() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.admission", "--rounds", "2", "--batch", "5", "--no-write"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| gateway CPU, µs |" in result.stdout
    assert "Consumed-jti memory:" in result.stdout

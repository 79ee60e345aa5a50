"""bench/session.py runs end to end with tiny counts and writes sane figures (no timing checks)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.session import main


def test_a_smoke_run_of_the_session_benchmark_writes_both_ratios(tmp_path: Path) -> None:
    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "session.json").read_text())
    refresh, memory = results["refresh"], results["memory"]
    for kind in ("handshake", "refresh"):
        assert refresh[kind]["operations"] == 20
        assert refresh[kind]["client_p50_ms"] > 0
    assert math.isfinite(refresh["refresh_over_handshake_cpu"])
    assert memory["subscriptions"] == 50
    assert "refresh / handshake" in (tmp_path / "session.md").read_text()

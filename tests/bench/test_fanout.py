"""bench/fanout.py runs end to end with tiny counts and its figures are sane (no timing checks)."""

from __future__ import annotations

import json
from pathlib import Path

from bench.fanout import measure


def test_a_small_fanout_run_delivers_everything_and_the_node_reads_no_event_it_does_not_hold(
    tmp_path: Path,
) -> None:
    results = measure(tmp_path, events=300, subscribers=10, rounds=1, burst=5, paced=3, quiet=True)
    held = results["not_held"]
    assert held["broadcast"]["events_read_by_gateway"] == 300
    # The per-topic path: not one of the events reached the gateway process.
    assert held["topics"]["events_read_by_gateway"] == 0
    for kind in ("baseline", "wsauth"):
        for run in ("burst", "paced"):
            figures = results[kind][run]
            assert figures["deliveries"] == figures["expected"] > 0
            assert figures["p50_ms"] > 0
    assert set(json.loads((tmp_path / "fanout.json").read_text())["ratios"]) == set(
        results["ratios"]
    )
    assert "Gateway CPU per event" in (tmp_path / "fanout.md").read_text()

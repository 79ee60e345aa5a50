"""The benchmark runs end to end with tiny counts and its figures are sane (no timing checks)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.run import SMOKE, run


def test_a_smoke_run_succeeds_and_writes_sane_results(tmp_path: Path) -> None:
    results = run(SMOKE, tmp_path, mode="smoke", quiet=True)

    for part, kinds in (
        ("gateway", {"baseline", "ticket", "wsauth"}),
        ("issuer", {"bare_flask", "issuer"}),
    ):
        summary = results[part]["summary"]
        assert set(summary) == kinds
        for row in summary.values():
            assert row["requests"] > 0
            assert row["succeeded"] == row["requests"]
            assert row["rate"] > 0
            assert math.isfinite(row["rate_ratio"]) and row["rate_ratio"] > 0
            assert math.isfinite(row["p50_ms"]) and row["p50_ms"] > 0
            assert row["server_cpu_us"] >= 0

    for kind in ("baseline", "wsauth"):
        memory = results["memory"][kind]
        assert memory["connections"] == SMOKE.idle_connections
        assert memory["failed"] == 0
        assert isinstance(memory["bytes_per_connection"], int)

    tokens = results["redis_tokens"]
    assert tokens["tokens"] == SMOKE.redis_tokens
    assert tokens["bytes_per_token"] > 0

    abuse = results["abuse"]
    assert abuse["ok"], abuse
    assert abuse["forged"]["forged"]["statuses"] == {"401": SMOKE.abuse_forged}
    assert abuse["forged"]["redis_commands"]["getdel"] == SMOKE.abuse_valid
    assert abuse["storm"]["failures"] == 0
    assert "## Reconnect storm" in (tmp_path / "abuse.md").read_text()

    assert json.loads((tmp_path / "results.json").read_text())["mode"] == "smoke"
    assert "| wsauth gateway" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "results.png").read_bytes().startswith(b"\x89PNG")

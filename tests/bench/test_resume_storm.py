"""The pure parts of bench/resume_storm.py and bench/history.py: summary, ratios, report."""

from __future__ import annotations

from bench.history import markdown as history_markdown
from bench.resume_storm import markdown, summarise

MACHINE = {"cpu": "cpu", "cores": 2, "python": "3.11", "versions": {}, "commit": "abc"}


def _row(arm: str, number: int, seconds: float, cpu: float, issuer: int) -> dict[str, object]:
    return {
        "arm": arm,
        "round": number,
        "clients": 10,
        "all_reconnected_s": seconds,
        "median_reconnected_s": seconds / 2,
        "issuer_requests": issuer,
        "retries_503": 0,
        "lost_handshakes": 1,
        "gateway_cpu_us_per_reconnect": cpu,
        "client_cpu_s": 1.0,
    }


def test_the_storm_summary_takes_medians_per_arm_and_ratios_tickets_over_tokens() -> None:
    rows = [
        _row("tickets", 0, 1.0, 400.0, 0),
        _row("tokens", 0, 4.0, 800.0, 10),
        _row("tokens", 1, 6.0, 1000.0, 10),
        _row("tickets", 1, 2.0, 600.0, 0),
    ]
    summary = summarise(rows)
    assert summary["tickets"]["all_reconnected_s"] == 1.5
    assert summary["tokens"]["issuer_requests"] == 10
    assert summary["ratio"] == {"all_reconnected": 0.3, "gateway_cpu_per_reconnect": 0.556}
    text = markdown({"machine": MACHINE, "clients": 10, "rounds": rows, "summary": summary})
    assert "| tickets | 1.50 s | 0.75 s | 0 | 0 | 1 | 500 µs |" in text


def test_the_history_report_names_every_measure() -> None:
    text = history_markdown(
        {
            "machine": MACHINE,
            "messages": 100,
            "missed": 1000,
            "memory": {"bytes_per_message": 150.0},
            "publish": {"plain_us": 50.0, "history_us": 75.0, "ratio": 1.5},
            "recovery": {"missed": 1000, "median_ms": 40.0},
            "pushes": {"missed": 1000, "recovering_ms": 60.0, "plain_ms": 8.0},
        }
    )
    assert "| Redis memory per stored message" in text
    assert "| publish cost, history ÷ plain | 1.50x |" in text
    assert "| recovery of 1,000 missed messages (subscribe → reply) | 40 ms |" in text
    assert "1,000 missed pushes (connect → last one) | 60 ms |" in text

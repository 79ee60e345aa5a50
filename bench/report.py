"""The results: machine and versions, JSON, a Markdown table and a PNG chart."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from wsauth.shared.state.redis_server import find_redis_server

PACKAGES = (
    "tornado", "redis", "hiredis", "PyJWT", "cryptography", "Flask", "Werkzeug", "gunicorn",
)  # fmt: skip
LABELS = {
    "baseline": "Tornado WebSocket, no auth",
    "ticket": "opaque ticket (Redis GET)",
    "wsauth": "wsauth gateway (EdDSA + GETDEL)",
    "bare_flask": "bare Flask JSON endpoint",
    "issuer": "wsauth issuer /api/tokens",
}


def machine() -> dict[str, Any]:
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as handle:
            memory_kib = int(handle.readline().split()[1])
    except OSError:
        memory_kib = 0
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        from cryptography.hazmat.backends.openssl.backend import backend

        versions["OpenSSL"] = backend.openssl_version_text()
    except Exception:  # informative only
        versions["OpenSSL"] = None
    try:
        redis_server: str | None = subprocess.run(
            [find_redis_server(), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except Exception:  # informative only
        redis_server = None
    versions["redis-server"] = redis_server
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "versions": versions,
        "commit": _git_commit(),
    }


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parent.parent
    git = shutil.which("git")
    if git is None:
        return None
    try:
        head = subprocess.run(
            [git, "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        # The results being rewritten are not a change to what is measured.
        dirty = subprocess.run(
            [git, "status", "--porcelain", "--untracked-files=no", "--", ".",
             ":(exclude)bench/results"],
            cwd=root, capture_output=True, text=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}{' (with uncommitted changes)' if dirty else ''}" if head else None


def write_json(results: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, sort_keys=False) + "\n")


def _fmt(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    versions = ", ".join(f"{name} {value}" for name, value in info["versions"].items() if value)
    lines = [
        "# wsauth benchmark results",
        "",
        f"- when: {results['started']} (took {results['duration_s']:.0f} s; "
        f"mode: {results['mode']})",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB, "
        f"Linux {info['kernel']}, Python {info['python']}",
        f"- versions: {versions}",
        f"- commit: {info['commit']}",
        "- numbers are medians over alternating rounds; ratios are taken within each round "
        "(same machine load) and then the median. The machine may be shared with other "
        "work: compare ratios, not absolute rates.",
        "",
    ]
    gateway = results.get("gateway")
    if gateway:
        lines += [
            f"## Gateway handshakes ({gateway['handshakes_per_round']} per round, "
            f"concurrency {gateway['concurrency']}, {gateway['rounds']} rounds)",
            "",
            "| server | handshakes/s | x baseline (min-max) | p50 ms | p50 x baseline | p99 ms "
            "| server CPU µs/hs | Redis CPU µs/hs | client CPU µs/hs | succeeded |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for kind, row in gateway["summary"].items():
            lines.append(
                f"| {LABELS.get(kind, kind)} | {_fmt(row['rate'])} | "
                f"{_fmt(row['rate_ratio'], 2)} ({_fmt(row['rate_ratio_min'], 2)}-"
                f"{_fmt(row['rate_ratio_max'], 2)}) | {_fmt(row['p50_ms'], 2)} | "
                f"{_fmt(row['p50_ratio'], 2)} | {_fmt(row['p99_ms'], 2)} | "
                f"{_fmt(row['server_cpu_us'])} | {_fmt(row['redis_cpu_us'])} | "
                f"{_fmt(row['client_cpu_us'])} | {row['succeeded']}/{row['requests']} |"
            )
        lines.append("")
    issuer = results.get("issuer")
    if issuer:
        lines += [
            f"## Token issuance (gunicorn, {issuer['workers']} sync workers, "
            f"{issuer['requests_per_round']} requests per round, concurrency "
            f"{issuer['concurrency']}, {issuer['rounds']} rounds)",
            "",
            "| endpoint | requests/s | x bare Flask (min-max) | p50 ms | server CPU µs/req "
            "| Redis CPU µs/req | succeeded |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for kind, row in issuer["summary"].items():
            lines.append(
                f"| {LABELS.get(kind, kind)} | {_fmt(row['rate'])} | "
                f"{_fmt(row['rate_ratio'], 2)} ({_fmt(row['rate_ratio_min'], 2)}-"
                f"{_fmt(row['rate_ratio_max'], 2)}) | {_fmt(row['p50_ms'], 2)} | "
                f"{_fmt(row['server_cpu_us'])} | {_fmt(row['redis_cpu_us'])} | "
                f"{row['succeeded']}/{row['requests']} |"
            )
        lines.append("")
    memory = results.get("memory")
    if memory:
        lines += [
            "## Memory",
            "",
            "| what | count | per item |",
            "|---|---:|---:|",
        ]
        for kind in ("baseline", "wsauth"):
            row = memory.get(kind)
            if row:
                per = row["bytes_per_connection"]
                lines.append(
                    f"| gateway RSS per idle connection: {LABELS[kind]} | "
                    f"{row['connections']:,} | {_fmt(per / 1024 if per else None, 1, ' KiB')} |"
                )
        if memory.get("fd_limit", 0) < memory.get("connections_wanted", 0):
            lines.append(f"| (open-files limit {memory['fd_limit']}: fewer connections) | | |")
    tokens = results.get("redis_tokens")
    if tokens:
        if not memory:
            lines += ["## Memory", "", "| what | count | per item |", "|---|---:|---:|"]
        lines.append(
            f"| Redis used_memory per outstanding token ({tokens['allocator']}) | "
            f"{tokens['tokens']:,} | {_fmt(tokens['bytes_per_token'], 0, ' bytes')} |"
        )
    if memory or tokens:
        lines.append("")
    targets = results.get("targets")
    if targets:
        lines += ["## Targets (issue 6)", "", "| target | measured | met |", "|---|---:|---|"]
        for row in targets:
            lines.append(
                f"| {row['target']} | {row['measured']} | {'yes' if row['met'] else 'no'} |"
            )
        lines.append("")
    return "\n".join(lines)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(target: str, value: float | None, ok: bool | None, text: str) -> None:
        if value is not None and ok is not None:
            rows.append({"target": target, "measured": text, "met": ok})

    gateway = results.get("gateway", {}).get("summary", {})
    wsauth, ticket = gateway.get("wsauth"), gateway.get("ticket")
    if wsauth:
        ratio = wsauth["rate_ratio"]
        add("gateway handshakes/s >= 0.80 x baseline", ratio, ratio and ratio >= 0.80,
            f"{ratio:.2f} x")  # fmt: skip
        if ticket:
            add("gateway handshakes/s >= opaque ticket", ratio,
                ratio and ticket["rate_ratio"] and ratio >= ticket["rate_ratio"],
                f"{ratio:.2f} x vs {ticket['rate_ratio']:.2f} x")  # fmt: skip
        p50 = wsauth["p50_ratio"]
        add("gateway p50 <= 1.3 x baseline", p50, p50 and p50 <= 1.3, f"{p50:.2f} x")
    issuer = results.get("issuer", {}).get("summary", {}).get("issuer")
    if issuer:
        ratio = issuer["rate_ratio"]
        add("issuer tokens/s >= 0.80 x bare Flask", ratio, ratio and ratio >= 0.80,
            f"{ratio:.2f} x")  # fmt: skip
    memory = results.get("memory", {}).get("wsauth")
    if memory and memory["bytes_per_connection"]:
        per = memory["bytes_per_connection"] / 1024
        add("gateway memory <= 50 KiB per idle connection", per, per <= 50, f"{per:.1f} KiB")
    tokens = results.get("redis_tokens")
    if tokens and tokens["bytes_per_token"]:
        per = tokens["bytes_per_token"]
        add("Redis memory <= 200 bytes per token", per, per <= 200, f"{per:.0f} bytes")
    return rows


def chart(results: dict[str, Any], path: Path) -> None:
    """Three panels: handshakes/s, server CPU per handshake, issuer requests/s."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gateway = results.get("gateway", {}).get("summary", {})
    issuer = results.get("issuer", {}).get("summary", {})
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.8))
    colours = {"baseline": "#7f7f7f", "ticket": "#ff7f0e", "wsauth": "#1f77b4",
               "bare_flask": "#7f7f7f", "issuer": "#1f77b4"}  # fmt: skip

    def bars(axis: Any, rows: dict[str, Any], field: str, title: str, ratio: bool) -> None:
        kinds = [kind for kind in rows if rows[kind].get(field) is not None]
        values = [rows[kind][field] for kind in kinds]
        names = [LABELS.get(kind, kind).replace(" (", "\n(") for kind in kinds]
        drawn = axis.bar(names, values, color=[colours.get(kind, "#1f77b4") for kind in kinds])
        for bar, kind in zip(drawn, kinds, strict=True):
            label = f"{rows[kind][field]:,.0f}"
            if ratio and rows[kind].get("rate_ratio") is not None:
                label += f"\n{rows[kind]['rate_ratio']:.2f}x"
            axis.annotate(label, (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                          ha="center", va="bottom", fontsize=9)  # fmt: skip
        axis.set_title(title, fontsize=11)
        axis.tick_params(axis="x", labelsize=8)
        axis.margins(y=0.2)

    bars(axes[0], gateway, "rate", "Gateway handshakes/s (x baseline)", True)
    bars(axes[1], gateway, "server_cpu_us", "Gateway server CPU µs per handshake", False)
    bars(axes[2], issuer, "rate", "Issuer requests/s, gunicorn 2 workers (x bare)", True)
    info = results["machine"]
    figure.suptitle(
        f"wsauth benchmark: {info['cpu']}, {info['cores']} cores, Python {info['python']} "
        f"({results['mode']}, medians of alternating rounds)",
        fontsize=10,
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)

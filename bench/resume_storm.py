"""Reconnect storm after a gateway restart: resume tickets against fresh tokens.

``python -m bench.resume_storm [--clients 2000] [--rounds 2] [--name resume-storm]``
(about four minutes; ``--clients 10000 --name resume-storm-10000``: about ten).

N clients hold a connection to gateway A (a real ``python -m bench.servers wsauth``
process, the same code as ``wsauth gateway``). A gets SIGTERM and closes every
connection with 1001; each client reconnects with the bundled clients' backoff
(full jitter in [0, 0.5 s), then doubling on 503 or 429: ``RECONNECT_BACKOFF``) to
gateway B (another process: the node a load balancer sends them to):

``tickets``  with the resume ticket of A's welcome (``Authorization: Resume``);
``tokens``   with a fresh token from the real issuer (``POST /api/tokens``, gunicorn
             with 2 sync workers) and ``Authorization: Bearer``.

Measured per arm, side by side in the same run (the arms alternate per round):
time from A's SIGTERM until every client had B's welcome, requests the issuer
served, 503/429 answers retried (a gateway whose loop is saturated by the burst
answers 503 when Redis replies arrive later than ``WSAUTH_REDIS_TIMEOUT``), and
B's CPU time per reconnect (``/proc`` utime + stime of B over the storm,
divided by N). Writes ``bench/results/resume-storm.json`` and ``.md`` with the
machine and versions; ratios are tickets ÷ tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import time
from pathlib import Path
from typing import Any

import tornado.httpclient
import tornado.websocket
from tornado.websocket import WebSocketClientConnection

from bench.procs import ServerProcess, raise_fd_limit
from bench.report import machine, write_json
from bench.scenarios import HOST, Environment, Gunicorn, environment, wsauth_tokens
from wsauth.ws.client import RECONNECT_BACKOFF

RESULTS = Path(__file__).resolve().parent / "results"
ARMS = ("tickets", "tokens")


class Client:
    """One client: its socket to A, then to B; its ticket; what it cost."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.ticket: str | None = None
        self.socket: WebSocketClientConnection | None = None
        self.issuer_requests = 0
        self.retries = 0  # 503/429 answers, retried after a jittered backoff
        self.lost = 0  # handshakes lost before an answer (599, reset), retried the same way


async def _open(url: str, authorization: str) -> tuple[WebSocketClientConnection, dict[str, Any]]:
    """Tornado's client (as ``wsauth.ws.client``): a close frame from the gateway ends
    ``read_message`` at once, so a client reconnects when it is told, not at A's exit."""
    request = tornado.httpclient.HTTPRequest(
        url, headers={"Authorization": authorization}, connect_timeout=60, request_timeout=60
    )
    socket = await tornado.websocket.websocket_connect(request)
    welcome = json.loads(await socket.read_message() or "null")
    return socket, welcome


async def _fresh_token(http: tornado.httpclient.AsyncHTTPClient, issuer: str, basic: str) -> str:
    answer = await http.fetch(
        f"{issuer}/api/tokens",
        method="POST",
        body=b"",
        headers={"Authorization": f"Basic {basic}"},
        request_timeout=120,
        connect_timeout=60,
    )
    return str(json.loads(answer.body)["token"])


async def _storm(
    env: Environment,
    arm: str,
    count: int,
    gateway_b: ServerProcess,
    issuer: ServerProcess,
) -> dict[str, Any]:
    gateway_a = env.server("wsauth")
    gateway_a.start()
    url_a = f"ws://{HOST}:{gateway_a.port}/ws"
    url_b = f"ws://{HOST}:{gateway_b.port}/ws"
    clients = [Client(token) for token in wsauth_tokens(env, count)]
    try:
        for start in range(0, count, 200):  # connect to A in waves: not what is measured
            batch = clients[start : start + 200]
            opened = await asyncio.gather(*(_open(url_a, f"Bearer {c.token}") for c in batch))
            for client, (socket, welcome) in zip(batch, opened, strict=True):
                # No ticket when A's SET timed out under load: that client takes a token.
                client.socket, client.ticket = socket, welcome.get("resume")
            await asyncio.sleep(0.2)
    except BaseException:
        gateway_a.stop()
        raise
    http = tornado.httpclient.AsyncHTTPClient(force_instance=True, max_clients=64)
    basic = base64.b64encode(f"{env.client_id}:{env.client_secret}".encode()).decode()
    issuer_url = f"http://{HOST}:{issuer.port}"
    done: list[float] = []

    async def reconnect(client: Client) -> None:
        """As the bundled clients do: the ticket first (kept over a 503 or 429), a fresh
        token when it is refused; a token spent on a 503 is not reused."""
        assert client.socket is not None
        while await client.socket.read_message() is not None:  # until A's 1001
            pass
        ticket = client.ticket if arm == "tickets" else None
        # The bundled clients' backoff after a 1001: full jitter in [0, 0.5 s), doubling.
        attempt = 0
        await asyncio.sleep(RECONNECT_BACKOFF.delay(attempt))
        while True:
            if ticket is not None:
                authorization = f"Resume {ticket}"
            else:
                client.issuer_requests += 1
                authorization = f"Bearer {await _fresh_token(http, issuer_url, basic)}"
            try:
                socket, welcome = await _open(url_b, authorization)
                break
            except tornado.httpclient.HTTPClientError as error:
                status = error.code
                if status == 401:
                    ticket = None  # refused: a fresh token, at once
                    continue
                if status == 599:  # no answer (as wsauth.ws.client: "unreachable")
                    client.lost += 1
                elif status in (429, 503):
                    client.retries += 1
                else:
                    raise
            except (OSError, tornado.websocket.WebSocketError):
                client.lost += 1  # the ticket may still be good: kept, as the clients do
            attempt += 1
            await asyncio.sleep(RECONNECT_BACKOFF.delay(attempt))
        assert welcome["type"] == "welcome", welcome
        client.socket = socket
        done.append(time.perf_counter())

    cpu_before = gateway_b.cpu_seconds()
    client_before = time.process_time()
    waiting = [asyncio.ensure_future(reconnect(client)) for client in clients]
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    await asyncio.to_thread(gateway_a.stop)  # SIGTERM: 1001 to every connection
    try:
        await asyncio.gather(*waiting)
        cpu = gateway_b.cpu_seconds() - cpu_before
        client_cpu = time.process_time() - client_before
    finally:
        http.close()
        for client in clients:
            if client.socket is not None:
                client.socket.close()
        await asyncio.sleep(0.5)
    return {
        "clients": count,
        "all_reconnected_s": round(max(done) - started, 3),
        "median_reconnected_s": round(statistics.median(done) - started, 3),
        "issuer_requests": sum(c.issuer_requests for c in clients),
        "retries_503": sum(c.retries for c in clients),
        "lost_handshakes": sum(c.lost for c in clients),
        "gateway_cpu_us_per_reconnect": round(1e6 * cpu / count, 1),
        # The one process that plays every client: when its CPU time nears the wall
        # time, it (not the gateway) bounds how fast the clients get back.
        "client_cpu_s": round(client_cpu, 2),
    }


def run(count: int, rounds: int, *, log: Any = print) -> dict[str, Any]:
    raise_fd_limit(4 * count + 1024)
    results: dict[str, Any] = {"machine": machine(), "clients": count, "rounds": []}
    with environment() as env:
        gateway_b = env.server("wsauth")
        issuer = Gunicorn("issuer", env, 2)
        with gateway_b, issuer:
            # Warm B and the issuer up (imports, caches, first connections): not measured.
            for arm in ARMS:
                asyncio.run(_storm(env, arm, min(count, 200), gateway_b, issuer))
            for number in range(rounds):
                order = ARMS if number % 2 == 0 else ARMS[::-1]
                for arm in order:
                    row = asyncio.run(_storm(env, arm, count, gateway_b, issuer))
                    row["arm"], row["round"] = arm, number
                    log(f"round {number} {arm}: {row}")
                    results["rounds"].append(row)
                    time.sleep(1.0)
    results["summary"] = summarise(results["rounds"])
    return results


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for arm in ARMS:
        mine = [row for row in rows if row["arm"] == arm]
        summary[arm] = {
            field: statistics.median(row[field] for row in mine)
            for field in (
                "all_reconnected_s",
                "median_reconnected_s",
                "issuer_requests",
                "retries_503",
                "lost_handshakes",
                "gateway_cpu_us_per_reconnect",
                "client_cpu_s",
            )
        }
    tickets, tokens = summary["tickets"], summary["tokens"]
    summary["ratio"] = {
        "all_reconnected": round(tickets["all_reconnected_s"] / tokens["all_reconnected_s"], 3),
        "gateway_cpu_per_reconnect": round(
            tickets["gateway_cpu_us_per_reconnect"] / tokens["gateway_cpu_us_per_reconnect"], 3
        ),
    }
    return summary


def markdown(results: dict[str, Any]) -> str:
    info = results["machine"]
    summary = results["summary"]
    lines = [
        "# Reconnect storm: resume tickets against fresh tokens",
        "",
        f"`python -m bench.resume_storm --clients {results['clients']}"
        f" --rounds {len(results['rounds']) // 2}`, commit {info['commit']}.",
        f"Machine: {info['cpu']}, {info['cores']} cores (shared), Python {info['python']}, "
        f"{info['versions'].get('redis-server')}.",
        "",
        "Every client reconnects after gateway A's SIGTERM (1001), to gateway B, with the "
        "bundled clients' backoff (full jitter in [0, 0.5 s), doubling on 503).",
        "Medians over the rounds; the arms alternate.",
        "",
        "| arm | all reconnected | half reconnected | issuer requests | 503 retries"
        " | lost handshakes | B CPU per reconnect |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm in ARMS:
        row = summary[arm]
        lines.append(
            f"| {arm} | {row['all_reconnected_s']:.2f} s | {row['median_reconnected_s']:.2f} s"
            f" | {row['issuer_requests']:,.0f} | {row['retries_503']:,.0f}"
            f" | {row['lost_handshakes']:,.0f} | {row['gateway_cpu_us_per_reconnect']:.0f} µs |"
        )
    ratio = summary["ratio"]
    lines += [
        "",
        f"tickets ÷ tokens: time to all reconnected {ratio['all_reconnected']:.2f}x, "
        f"gateway CPU per reconnect {ratio['gateway_cpu_per_reconnect']:.2f}x.",
        "",
        "| round | arm | all reconnected | issuer requests | 503 retries | lost handshakes"
        " | B CPU per reconnect | client CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rounds"]:
        lines.append(
            f"| {row['round']} | {row['arm']} | {row['all_reconnected_s']:.2f} s"
            f" | {row['issuer_requests']} | {row['retries_503']} | {row['lost_handshakes']}"
            f" | {row['gateway_cpu_us_per_reconnect']:.0f} µs | {row['client_cpu_s']:.1f} s |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resume_storm")
    parser.add_argument("--clients", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--name", default="resume-storm", help="file names of the results (.json, .md)"
    )
    args = parser.parse_args(argv)
    results = run(args.clients, args.rounds)
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(results, args.out / f"{args.name}.json")
    (args.out / f"{args.name}.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

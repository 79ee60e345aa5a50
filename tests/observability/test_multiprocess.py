"""docs/howto/observability.md, several processes: gunicorn workers with
``PROMETHEUS_MULTIPROC_DIR`` answer ``/metrics`` with the sum over every worker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests
from prometheus_client.multiprocess import MultiProcessCollector

from tests.conftest import TEST_SECRET
from tests.observability.conftest import scrape, value, wait_until
from tests.support.processes import stop_process
from wsauth.issuer.clients import ClientStore
from wsauth.shared.core.config import Settings
from wsauth.shared.state.redis_server import free_port

BIN = Path(sys.executable).parent


def _issued_per_worker(metrics_dir: Path) -> list[float]:
    """The api tokens counted by each worker, read from its own counter file."""
    counts = []
    for path in sorted(metrics_dir.glob("counter_*.db")):
        total = 0.0
        merged = MultiProcessCollector.merge([str(path)], accumulate=False)  # type: ignore[no-untyped-call]
        for metric in merged:
            for sample in metric.samples:
                if sample.name == "wsauth_issuer_tokens_issued_total" and sample.labels == {
                    "client": "api"
                }:
                    total += sample.value
        counts.append(total)
    return counts


def test_gunicorn_workers_in_multiprocess_mode_report_the_tokens_of_every_worker(
    settings: Settings, tmp_path: Path
) -> None:
    client = ClientStore.in_dir(settings.keys_dir).add("multiprocess")
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSAUTH_")}
    env.update(
        WSAUTH_SECRET_KEY=TEST_SECRET,
        WSAUTH_REDIS_URL=str(settings.redis_url),
        WSAUTH_KEYS_DIR=str(settings.keys_dir),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    argv = [
        str(BIN / "gunicorn"),
        "-w",
        "2",
        "-b",
        f"127.0.0.1:{port}",
        "wsauth.issuer:create_app()",
    ]
    server = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert server.poll() is None, "gunicorn exited"
            try:
                return requests.get(f"{url}/readyz", timeout=1).status_code == 200
            except (requests.ConnectionError, requests.Timeout):  # booting, or a busy machine
                return False

        wait_until(up, timeout=30, what="gunicorn to serve")
        issued = 0

        def both_workers_issued() -> bool:
            nonlocal issued
            # A new connection each time: the kernel hands it to either worker.
            with requests.Session() as session:
                answer = session.post(f"{url}/api/tokens", auth=client, timeout=5)
            assert answer.status_code == 200
            issued += 1
            per_worker = _issued_per_worker(metrics_dir)
            return len(per_worker) == 2 and all(per_worker)

        wait_until(both_workers_issued, timeout=30, what="tokens issued by both workers")
        for _ in range(4):  # whichever worker answers, it reports the sum
            samples = scrape(url)
            assert value(samples, "wsauth_issuer_tokens_issued_total", client="api") == issued
            assert value(samples, "wsauth_issuer_keys", state="current") == 1
    finally:
        stop_process(server, timeout=30)

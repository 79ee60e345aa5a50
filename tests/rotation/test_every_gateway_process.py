"""The runbook's checks reach every gateway process, not the one a load balancer picks.

``wsauth gateway --processes 2`` (the real console script, two workers behind
one port); ``wsauth keys gateways`` asks every subscribed process for its
keyset and checks all of them: it fails while any worker lacks a new key or
still holds a revoked one, naming that worker, and passes once every worker
agrees. Nothing is written to Redis unless a check asks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.scaleout.test_processes import gateway_processes
from wsauth.shared.core.config import Settings
from wsauth.shared.state.keyset_reports import fingerprint, judge
from wsauth.shared.store.keystore import KeyStore

WSAUTH = str(Path(sys.executable).with_name("wsauth"))


def keys(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("WSAUTH_")}
    env.update(
        WSAUTH_REDIS_URL=settings.effective_redis_url,
        WSAUTH_KEYS_DIR=str(settings.keys_dir),
        WSAUTH_JWKS_CACHE="1",
    )
    return subprocess.run(
        [WSAUTH, "keys", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_every_worker_of_processes_2_is_checked_after_a_generate_and_a_revoke(
    make_settings: Callable[..., Settings], key_store: KeyStore
) -> None:
    settings = make_settings(jwks_cache=1)
    current = key_store.records()[0].kid
    with gateway_processes(settings, 2) as supervisor:
        ready = keys(settings, "gateways", "--expect", "2", "--has", current, "--wait", "15")
        assert ready.returncode == 0, ready.stderr
        lines = ready.stdout.splitlines()
        assert len(lines) == 2 and all(current in line for line in lines)
        assert {line.split(":")[1] for line in lines} == {str(p) for p in supervisor.workers()}

        # A check asking for 3 processes fails and says why.
        short = keys(settings, "gateways", "--expect", "3")
        assert short.returncode == 2
        assert "2 gateway process(es) reported, 3 expected" in short.stderr
        assert short.stderr.count("\n") == 1

        new = keys(settings, "generate", "-q").stdout.strip()
        both = keys(settings, "gateways", "--expect", "2", "--has", new, "--wait", "15", "--json")
        assert both.returncode == 0, both.stderr
        documents = json.loads(both.stdout)["gateways"]
        assert {d["fingerprint"] for d in documents} == {fingerprint([current, new])}

        assert keys(settings, "revoke", new).returncode == 0
        # Straight after the revoke, not every worker has had time to drop it: the
        # check may fail, but when it passes, every worker has dropped the key.
        gone = keys(settings, "gateways", "--expect", "2", "--lacks", new, "--wait", "15")
        assert gone.returncode == 0, gone.stderr
        still = keys(settings, "gateways", "--lacks", current)
        assert still.returncode == 2
        assert still.stderr.count("still holds") == 2  # each worker named


def test_a_check_names_each_process_that_fails() -> None:
    reports = [
        {"node": "a:1:x", "kids": ["old", "new"], "stale": False, "last_error": None},
        {"node": "b:2:y", "kids": ["old"], "stale": True, "last_error": "HTTP 500"},
    ]
    verdict = judge(reports, has=["new"], lacks=["old"], expect=3, asked=4)
    assert verdict.problems == [
        "2 of 4 gateway process(es) did not answer",
        "2 gateway process(es) reported, 3 expected",
        "a:1:x still holds old",
        "b:2:y lacks new",
        "b:2:y still holds old",
        "b:2:y holds a stale keyset",
        "b:2:y: the latest JWKS did not load: HTTP 500",
    ]
    assert judge([]).problems == [
        "no gateway process has reported (is any running, with this Redis?)"
    ]


def test_nothing_is_written_to_redis_unless_a_check_asks(
    make_settings: Callable[..., Settings], redis_client: redis.Redis
) -> None:
    settings = make_settings(jwks_cache=1)
    with gateway_processes(settings, 2):
        time.sleep(3)
        assert list(redis_client.scan_iter("wsauth:gateways*")) == []
        done = keys(settings, "gateways", "--expect", "2", "--wait", "15")
        assert done.returncode == 0, done.stderr
        (key,) = redis_client.scan_iter("wsauth:gateways:*")
        assert 0 < redis_client.ttl(key) <= 30  # every key has a TTL

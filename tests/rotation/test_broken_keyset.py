"""A running gateway fed a broken ``jwks.json`` keeps working on the last good keyset.

(The URL source's twin is in tests/ws/test_jwks_url.py; the file source's
unit tests, one per kind of breakage, are in tests/ws/test_keys.py.)
"""

from __future__ import annotations

import json
import logging
import os

import pytest

from tests.rotation.conftest import Stack, poll


@pytest.mark.parametrize("stack", ["file"], indirect=True)
def test_a_gateway_fed_a_broken_jwks_file_keeps_the_last_good_keyset(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="wsauth.gateway")
    jwks = stack.keys_dir / "jwks.json"
    good = jwks.read_bytes()
    document = json.loads(good)
    document["keys"][0]["d"] = "AAAA"  # a private member: never loaded
    broken = jwks.with_name(".jwks.broken")
    broken.write_text(json.dumps(document))
    os.replace(broken, jwks)

    poll(lambda: stack.readyz()["keyset"]["last_error"] is not None, what="the error")
    ready = stack.readyz()
    assert ready["status"] == "ok"
    assert ready["keyset"]["keys"] == 1
    assert "private members" in ready["keyset"]["last_error"]
    assert stack.outcome(stack.token()) == "welcome"
    assert stack.outcome(stack.token()) == "welcome"
    errors = [
        r.getMessage()
        for r in caplog.records
        if r.name == "wsauth.gateway" and r.getMessage().startswith("keyset not loaded")
    ]
    assert len(errors) == 1

    fixed = jwks.with_name(".jwks.fixed")
    fixed.write_bytes(good)
    os.replace(fixed, jwks)
    poll(lambda: stack.readyz()["keyset"]["last_error"] is None, what="the recovery")

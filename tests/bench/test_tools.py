"""The profile and instruction-count tools of bench/ classify what they are given correctly."""

from __future__ import annotations

from bench.instructions import parse_annotated
from bench.profile import OTHER, PARTS, _part_of

SIGNATURE, TOKENS, REPLAY = PARTS[0][0], PARTS[1][0], PARTS[2][0]
TORNADO = next(part for part, _ in PARTS if part.startswith("Tornado"))


def test_a_sample_goes_to_its_innermost_named_frame() -> None:
    handler = [
        "run (asyncio/base_events.py:600)",
        "_execute (tornado/web.py:1981)",
        "GatewaySocket.get (ws/app.py:194)",
    ]
    verify = "verify (shared/core/tokens.py:170)"
    sodium = "crypto_sign_open (nacl/bindings/crypto_sign.py:103)"
    assert _part_of([*handler, verify, sodium]) == SIGNATURE
    assert _part_of([*handler, verify]) == TOKENS
    consume = "consume (shared/state/replay.py:121)"
    assert _part_of([*handler, consume, "Timeout.__aexit__ (asyncio/timeouts.py:119)"]) == REPLAY
    # Tornado's own upgrade, called from the gateway's get(), is Tornado's work.
    assert _part_of([*handler, "WebSocketHandler.get (tornado/websocket.py:271)"]) == TORNADO
    loop = ["run (asyncio/base_events.py:600)", "Handle._run (asyncio/events.py:80)"]
    assert _part_of(loop) == OTHER


ANNOTATED = """\
--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
3,000,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                    file:function
--------------------------------------------------------------------------------
1,000,000 (33.33%)  /src/Python/ceval.c:_PyEval_EvalFrameDefault [/usr/lib/libpython3.11.so.1.0]
  400,000 (13.33%)  /src/libsodium/fe_51.h:fe25519_mul [/venv/nacl/_sodium.abi3.so]
  100,000 ( 3.33%)  /src/libsodium/fe_51.h:fe25519_sq [/venv/nacl/_sodium.abi3.so]
   50,000 ( 1.67%)  ./string/memset.S:__memset_avx2 [/usr/lib/x86_64-linux-gnu/libc.so.6]
   20,000 ( 0.67%)  /src/Include/object.h:_PyFrame_Clear
"""


def test_annotated_instructions_are_summed_by_shared_object() -> None:
    counts = parse_annotated(ANNOTATED)
    assert counts[""] == 3_000_000
    assert counts["libsodium (Ed25519)"] == 500_000
    assert counts["CPython interpreter and built-ins"] == 1_000_000
    assert counts["libc"] == 50_000
    assert counts["hiredis"] == 0

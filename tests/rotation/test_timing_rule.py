"""The key store's timing rule holds to the second: whole-second times never shorten a wait.

Regression tests: with times truncated to whole seconds, ``promote`` could run
up to a second before one cache interval had passed (with C = 1 s, at once)
and ``retire`` up to a second early.
"""

from __future__ import annotations

import pytest

from wsauth.shared.core.errors import KeyStoreError
from wsauth.shared.core.keyset import Kid
from wsauth.shared.store.keystore import KeyState, Timing, plan_generate, plan_promote, plan_retire

TIMING = Timing(token_ttl=2, leeway=1, cache_interval=1)


def test_promote_is_refused_before_a_full_cache_interval_even_across_a_second_boundary() -> None:
    records = plan_generate((), Kid("old"), "EdDSA", 1.0)
    records = plan_generate(records, Kid("new"), "EdDSA", 10.9)
    assert records[1].created == 11  # whole seconds in keyset.json, rounded up
    with pytest.raises(KeyStoreError, match="cache interval"):
        plan_promote(records, "new", 11.5, TIMING)  # 0.6 s after publication
    promoted = plan_promote(records, "new", 12.0, TIMING)  # 1.1 s after
    assert {r.kid: r.state for r in promoted} == {
        "old": KeyState.RETIRING,
        "new": KeyState.CURRENT,
    }


def test_retire_is_refused_before_ttl_leeway_and_cache_interval_after_the_promotion() -> None:
    records = plan_generate((), Kid("old"), "EdDSA", 1.0)
    records = plan_generate(records, Kid("new"), "EdDSA", 5.0)
    records = plan_promote(records, "new", 20.9, TIMING)
    assert (records[1].promoted, records[0].retire_after) == (21, 21 + TIMING.retire_delay)
    early = 20.9 + TIMING.retire_delay - 0.4
    assert plan_retire(records, None, early)[1] == []
    with pytest.raises(KeyStoreError, match="wait, or --force"):
        plan_retire(records, "old", early)
    assert plan_retire(records, None, 20.9 + TIMING.retire_delay + 0.1)[1] == ["old"]

"""Request ids: 32 hex digits, distinct across the blocks they are cut from."""

from __future__ import annotations

import string

from services.gateway.access import RequestIds


def test_ids_distinct_across_blocks() -> None:
    ids = RequestIds(per_read=4)

    issued = [ids.next() for _ in range(4 * 50 + 3)]

    assert len(set(issued)) == len(issued)
    assert all(len(i) == 32 and set(i) <= set(string.hexdigits.lower()) for i in issued)


def test_separate_sources_differ() -> None:
    assert RequestIds().next() != RequestIds().next()

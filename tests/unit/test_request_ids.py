"""Request ids: 32 hex digits, distinct across the blocks they are cut from."""

from __future__ import annotations

import os
import string

from services.gateway.access import RequestIds


def test_ids_distinct_across_blocks() -> None:
    ids = RequestIds(per_read=4)

    issued = [ids.next() for _ in range(4 * 50 + 3)]

    assert len(set(issued)) == len(issued)
    assert all(len(i) == 32 and set(i) <= set(string.hexdigits.lower()) for i in issued)


def test_separate_sources_differ() -> None:
    assert RequestIds().next() != RequestIds().next()


def test_forked_child_draws_new_ids() -> None:
    ids = RequestIds()
    ids.next()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        os.write(writer, ids.next().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        from_child = pipe.read()

    assert len(from_child) == 32
    assert from_child != ids.next()

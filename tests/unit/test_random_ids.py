"""Random ids: distinct across the blocks they are cut from, and UUIDs of
version 4 in `uuid.UUID`'s text form."""

from __future__ import annotations

import os
import string
import uuid

from shared.random_ids import RandomIds


def test_ids_distinct_across_blocks() -> None:
    ids = RandomIds(per_read=4)

    issued = [ids.hex() for _ in range(4 * 50 + 3)]

    assert len(set(issued)) == len(issued)
    assert all(len(i) == 32 and set(i) <= set(string.hexdigits.lower()) for i in issued)


def test_uuid4_text_is_version_4() -> None:
    ids = RandomIds(per_read=8)

    issued = [ids.uuid4() for _ in range(2000)]

    parsed = [uuid.UUID(text) for text in issued]
    assert [str(value) for value in parsed] == issued
    assert {value.version for value in parsed} == {4}
    assert {value.variant for value in parsed} == {uuid.RFC_4122}
    assert len(set(issued)) == len(issued)
    # Every variant digit appears, so those two bits stay random.
    assert {text[19] for text in issued} == set("89ab")


def test_separate_sources_differ() -> None:
    assert RandomIds().hex() != RandomIds().hex()


def test_forked_child_draws_new_ids() -> None:
    ids = RandomIds()
    ids.hex()
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(reader)
        os.write(writer, ids.hex().encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(child, 0)
    with os.fdopen(reader) as pipe:
        from_child = pipe.read()

    assert len(from_child) == 32
    assert from_child != ids.hex()

"""Values in the gateway's key-value bucket that do not decode count as absent."""

from __future__ import annotations

import pytest

from services.gateway.batched_counters import Count
from services.gateway.shared_state import _decode


@pytest.mark.parametrize(
    "data",
    [
        b'{"count": 1',
        b'{"count": 1, "writer": "\\ud800"}',
        b"\xff\xfe",
        b'{"later": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
    ids=["truncated", "lone-surrogate", "not-utf8", "deep-nesting"],
)
def test_undecodable_value_is_absent(data: bytes) -> None:
    assert _decode(data, Count) is None


def test_value_decodes() -> None:
    data = b'{"count": 3, "writer": "ab"}'

    assert _decode(data, Count) == Count(count=3, writer="ab")

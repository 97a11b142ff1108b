"""Values in the gateway's key-value bucket that do not decode count as absent."""

from __future__ import annotations

import pytest

from services.gateway.form_ledger import AcceptedForm
from services.gateway.shared_state import _decode


@pytest.mark.parametrize(
    "data",
    [
        b'{"reference": "T-1',
        b'{"reference": "\\ud800", "values_digest": "x"}',
        b"\xff\xfe",
        b'{"later": ' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    ],
    ids=["truncated", "lone-surrogate", "not-utf8", "deep-nesting"],
)
def test_undecodable_value_is_absent(data: bytes) -> None:
    assert _decode(data, AcceptedForm) is None


def test_value_decodes() -> None:
    data = b'{"reference": "T-7KQ2X-M9R4P", "values_digest": "ab"}'

    assert _decode(data, AcceptedForm) == AcceptedForm(
        reference="T-7KQ2X-M9R4P", values_digest="ab"
    )

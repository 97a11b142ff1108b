"""Unit tests for the secret digest that the gateway sends and the tenant
service looks up (`shared.messages.secret_sha256`,
`services.tenant.link_secret`)."""

from __future__ import annotations

import pytest

from services.tenant import link_secret
from shared import messages

SECRET = "k7Q2xLm9Rt4vZp1W-äö"


def test_sent_digest_matches_stored_digest() -> None:
    sent = messages.secret_sha256(SECRET)
    assert link_secret.parse_hex_digest(sent) == link_secret.digest(SECRET)


def test_sent_digest_is_lowercase_hex() -> None:
    sent = messages.secret_sha256(SECRET)
    assert len(sent) == 64
    assert set(sent) <= set("0123456789abcdef")
    # A known vector: SHA-256 of the empty string.
    assert messages.secret_sha256("") == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(SECRET, id="secret-itself"),
        pytest.param(messages.secret_sha256(SECRET).upper(), id="uppercase"),
        pytest.param(messages.secret_sha256(SECRET)[:-1], id="63-digits"),
        pytest.param(messages.secret_sha256(SECRET) + "0", id="65-digits"),
        pytest.param(messages.secret_sha256(SECRET) + "\n", id="trailing-newline"),
        pytest.param("g" * 64, id="non-hex"),
        pytest.param("\uff10" * 64, id="full-width-digits"),
        pytest.param("", id="empty"),
    ],
)
def test_parse_rejects_other_text(text: str) -> None:
    assert link_secret.parse_hex_digest(text) is None

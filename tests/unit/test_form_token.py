"""Unit tests for the signed form token in `services.gateway.form_token`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from services.gateway.form_token import (
    ExpiredToken,
    FormContext,
    InvalidToken,
    sign,
    verify,
)

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
NOW = 1_800_000_000


def make_context(**changes: object) -> FormContext:
    fields: dict[str, object] = {
        "tenant_id": "6f1c2a4e-9a51-4c1b-8d0e-3f3a1d2b5c7e",
        "tenant_name": "Gemeinde Musterdorf",
        "personnel_number": "004711",
        "person_name": "Jörg Bäcker",
        "language": "de",
        "categories": ["IT", "null", "2.50"],
        "submission_id": "0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11",
        "expires_at": NOW + 3600,
        "secret_id": "5d2e7c10-8b3a-4f6e-9c21-7a4b0e1f3d59",
    }
    fields.update(changes)
    return FormContext(**fields)  # type: ignore[arg-type]


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def signed_payload(key: bytes, payload: str) -> str:
    """Sign an arbitrary payload the way `sign` does, for forged contents."""
    digest = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()
    return f"{payload}.{base64url(digest)}"


def test_round_trip_keeps_context() -> None:
    context = make_context()
    assert verify(KEY, sign(KEY, context), now=NOW) == context


def test_personnel_number_stays_text() -> None:
    assert context_fields()["personnel_number"] == "004711"
    token = sign(KEY, make_context())
    assert verify(KEY, token, now=NOW).personnel_number == "004711"


def test_token_is_url_and_form_safe() -> None:
    token = sign(KEY, make_context())
    payload, signature = token.split(".")
    alphabet = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert set(payload) <= alphabet
    assert set(signature) <= alphabet


def test_signature_is_deterministic() -> None:
    assert sign(KEY, make_context()) == sign(KEY, make_context())
    assert sign(KEY, make_context()) != sign(OTHER_KEY, make_context())


def test_wrong_key_rejected() -> None:
    token = sign(OTHER_KEY, make_context())
    with pytest.raises(InvalidToken, match="signature"):
        verify(KEY, token, now=NOW)


def test_tampered_payload_rejected() -> None:
    token = sign(KEY, make_context())
    forged = sign(KEY, make_context(personnel_number="4711")).split(".")[0]
    signature = token.split(".")[1]
    with pytest.raises(InvalidToken, match="signature"):
        verify(KEY, f"{forged}.{signature}", now=NOW)


def test_every_changed_character_rejected() -> None:
    token = sign(KEY, make_context())
    for index, character in enumerate(token):
        if character == ".":
            continue
        replacement = "A" if character != "A" else "B"
        tampered = token[:index] + replacement + token[index + 1 :]
        with pytest.raises(InvalidToken):
            verify(KEY, tampered, now=NOW)


def test_truncated_and_extended_tokens_rejected() -> None:
    token = sign(KEY, make_context())
    for tampered in (token[:-1], token + "A", token[1:], "A" + token, token + "."):
        with pytest.raises(InvalidToken):
            verify(KEY, tampered, now=NOW)


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("", id="empty"),
        pytest.param("no-dot", id="no-dot"),
        pytest.param(".signature", id="no-payload"),
        pytest.param("payload.", id="no-signature"),
        pytest.param(".", id="dot-only"),
        pytest.param("pay\u00e9load.signature", id="non-ascii-payload"),
        pytest.param("payload.signatur\u00e9", id="non-ascii-signature"),
        pytest.param("payload.\u20ac", id="euro-signature"),
        pytest.param("payload.sig\x00", id="nul-signature"),
    ],
)
def test_malformed_token_rejected(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify(KEY, token, now=NOW)


def test_genuine_non_json_payload_rejected() -> None:
    with pytest.raises(InvalidToken, match="payload is invalid"):
        verify(KEY, signed_payload(KEY, base64url(b"not json")), now=NOW)


def context_fields() -> dict[str, object]:
    payload = sign(KEY, make_context()).split(".")[0]
    fields = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert isinstance(fields, dict)
    return fields


def test_genuine_payload_of_wrong_shape_rejected() -> None:
    number_as_integer = {**context_fields(), "personnel_number": 4711}
    missing_field = {**context_fields()}
    del missing_field["submission_id"]
    for fields in (number_as_integer, missing_field, {"tenant_id": "x"}):
        payload = base64url(json.dumps(fields).encode())
        with pytest.raises(InvalidToken, match="payload is invalid"):
            verify(KEY, signed_payload(KEY, payload), now=NOW)


def test_genuine_invalid_base64_rejected() -> None:
    with pytest.raises(InvalidToken, match="payload is invalid"):
        verify(KEY, signed_payload(KEY, "a"), now=NOW)


def test_expired_token_carries_context() -> None:
    context = make_context(expires_at=NOW - 1)
    with pytest.raises(ExpiredToken) as raised:
        verify(KEY, sign(KEY, context), now=NOW)
    assert raised.value.context == context


def test_expiry_boundary() -> None:
    context = make_context(expires_at=NOW)
    assert verify(KEY, sign(KEY, context), now=NOW) == context
    with pytest.raises(ExpiredToken):
        verify(KEY, sign(KEY, context), now=NOW + 0.001)


def test_default_now_is_current_time() -> None:
    fresh = make_context(expires_at=int(time.time()) + 3600)
    assert verify(KEY, sign(KEY, fresh)) == fresh
    stale = make_context(expires_at=int(time.time()) - 3600)
    with pytest.raises(ExpiredToken):
        verify(KEY, sign(KEY, stale))


def test_expired_token_with_wrong_key_is_invalid() -> None:
    # The signature is checked first, so an expired forgery reveals nothing.
    token = sign(OTHER_KEY, make_context(expires_at=NOW - 1))
    with pytest.raises(InvalidToken):
        verify(KEY, token, now=NOW)


def test_signed_link_context_round_trips() -> None:
    context = make_context(signed_link=True, secret_id=None, key_id="3f9a0c7e5b21d846")
    assert verify(KEY, sign(KEY, context), now=NOW) == context


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"secret_id": None}, id="raw-link-without-secret"),
        pytest.param({"key_id": "3f9a0c7e5b21d846"}, id="raw-link-with-key"),
        pytest.param(
            {"signed_link": True, "secret_id": None}, id="signed-link-without-key"
        ),
        pytest.param(
            {"signed_link": True, "key_id": "3f9a0c7e5b21d846"},
            id="signed-link-with-secret",
        ),
    ],
)
def test_token_without_its_credential_rejected(changes: dict[str, object]) -> None:
    # Forms signed before tokens named their secret or key, and contexts that
    # name the wrong kind, cannot be checked for a revocation at submit time.
    token = sign(KEY, make_context(**changes))
    with pytest.raises(InvalidToken, match="no link secret or signing key"):
        verify(KEY, token, now=NOW)


def test_expired_token_without_credential_is_invalid() -> None:
    # Not ExpiredToken, so the gateway never signs a fresh form for it.
    token = sign(KEY, make_context(secret_id=None, expires_at=NOW - 1))
    with pytest.raises(InvalidToken):
        verify(KEY, token, now=NOW)

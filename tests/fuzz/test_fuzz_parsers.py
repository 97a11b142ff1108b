"""Property-based fuzzing of the gateway's parsers, without I/O.

Every parser of untrusted input returns one of its result types or raises
its own documented error, never anything else. The budget is fixed and the
examples are derived from the test's name (`derandomize`), so a CI run is
reproducible.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateway import form_body, form_token, link, origin_check
from shared import signed_link

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

QUERY_ALPHABET = string.ascii_letters + string.digits + "%&=+-._~/?:@!$'()*,;"
queries = st.one_of(
    st.binary(max_size=700),
    st.text(alphabet=QUERY_ALPHABET, max_size=700).map(str.encode),
    st.builds(
        lambda secret, number: f"{secret}&{number}".encode(),
        st.text(alphabet=QUERY_ALPHABET, min_size=1, max_size=140),
        st.text(alphabet=QUERY_ALPHABET, min_size=1, max_size=70),
    ),
    st.text(alphabet=string.ascii_letters + string.digits + "-_.", max_size=300).map(
        lambda token: f"sig=v1.{token}".encode()
    ),
)


@FUZZ
@given(queries)
def test_link_parse_returns_a_result(query: bytes) -> None:
    parsed = link.parse(query)
    assert isinstance(parsed, link.Link | link.SignedLink | link.MalformedLink)
    if isinstance(parsed, link.Link):
        assert 0 < len(parsed.secret) <= link.MAX_SECRET_LENGTH
        assert 0 < len(parsed.personnel_number) <= link.MAX_PERSONNEL_NUMBER_LENGTH
        assert parsed.personnel_number == parsed.personnel_number.strip()
        assert len(query) <= link.MAX_QUERY_BYTES
    if isinstance(parsed, link.SignedLink):
        assert len(parsed.token.signature) == 43


@FUZZ
@given(st.text(max_size=400))
def test_signed_payload_decodes_or_raises(payload: str) -> None:
    try:
        claims = signed_link.decode_payload(payload)
    except signed_link.InvalidClaims:
        return
    assert claims.expires_at > 0
    assert signed_link.encode_payload(claims)


@FUZZ
@given(
    st.text(max_size=64),
    st.text(max_size=70),
    st.integers(min_value=-5, max_value=10**13),
    st.text(max_size=210),
    st.text(max_size=90),
)
def test_signing_round_trips_or_raises(
    tenant_id: str, number: str, expires: int, location: str, category: str
) -> None:
    claims = signed_link.Claims(tenant_id, number, expires, location, category)
    try:
        token = signed_link.sign("kid", "key", claims)
    except signed_link.InvalidClaims:
        return
    parsed = link.parse(f"sig={token}".encode())
    if isinstance(parsed, link.MalformedLink):
        # Only a token longer than the link allows may fail to parse.
        assert parsed.reason == "query_too_long"
        return
    assert isinstance(parsed, link.SignedLink)
    assert signed_link.signature_matches("key", parsed.token)
    assert signed_link.decode_payload(parsed.token.payload) == claims


@FUZZ
@given(st.binary(max_size=2000))
def test_form_body_parse_returns_strings(body: bytes) -> None:
    if len([pair for pair in body.split(b"&") if pair]) > form_body.MAX_FIELDS:
        with pytest.raises(form_body.TooManyFields):
            form_body.parse(body)
        return
    parsed = form_body.parse(body)
    assert all(isinstance(value, str) for value in parsed.values.values())
    assert not set(parsed.values) & parsed.invalid_encoding


@FUZZ
@given(st.binary(max_size=2000), st.text(max_size=200))
def test_multipart_count_never_raises(body: bytes, content_type: str) -> None:
    count = form_body.multipart_part_count(body, content_type)
    assert count is None or count >= 0


@FUZZ
@given(st.text(max_size=500))
def test_form_token_verify_raises_only_its_errors(token: str) -> None:
    try:
        form_token.verify(b"k" * 32, token)
    except (form_token.InvalidToken, form_token.ExpiredToken):
        return
    raise AssertionError("a random token verified")


@FUZZ
@given(st.text(max_size=200))
def test_tenant_signature_rejects_random_text(value: str) -> None:
    assert form_token.verify_tenant(b"k" * 32, value) is None


@FUZZ
@given(
    st.dictionaries(
        st.sampled_from(["host", "origin", "referer", "sec-fetch-site"]),
        st.text(max_size=100),
    )
)
def test_origin_check_never_raises(headers: dict[str, str]) -> None:
    reason = origin_check.cross_site_reason(headers)
    assert reason in (None, "cross_site_fetch", "foreign_origin", "foreign_referer")

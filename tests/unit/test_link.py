"""Unit tests for `services.gateway.link.parse`, the public link's query parser.

The decided rule is strict: a link query is exactly two bare values,
`<secret>&<personnel number>`. A trailing `&` (an empty third part) and every
`key=value` form, such as `secret=…&number=…` or `…&004711&x=1`, are rejected
as malformed, so that each odd link gets the one neutral 404 page. A query that
parses here can still name an unknown secret or person, which the tenant and
personnel services decide later.
"""

from __future__ import annotations

import unicodedata

import pytest

from services.gateway.link import (
    MAX_PERSONNEL_NUMBER_LENGTH,
    MAX_QUERY_BYTES,
    MAX_SECRET_LENGTH,
    Link,
    MalformedLink,
    _has_control_character,
    parse,
)

SECRET = "k7Q2xLm9Rt4vZp1W"


def parsed_link(query: bytes) -> Link:
    result = parse(query)
    assert isinstance(result, Link), f"{query!r} was rejected: {result}"
    return result


def rejection_reason(query: bytes) -> str:
    result = parse(query)
    assert isinstance(result, MalformedLink), f"{query!r} was accepted: {result}"
    return result.reason


# Accepted links


def test_two_bare_values_parse() -> None:
    assert parse(b"k7Q2xLm9Rt4vZp1W&004711") == Link(
        secret=SECRET, personnel_number="004711"
    )


def test_leading_zeros_kept() -> None:
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&004711").personnel_number == "004711"
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&4711").personnel_number == "4711"
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&0").personnel_number == "0"


def test_swapped_order_still_parses() -> None:
    # The number lands in the secret and fails later as an unknown secret.
    link = parsed_link(b"004711&k7Q2xLm9Rt4vZp1W")
    assert link.secret == "004711"
    assert link.personnel_number == SECRET


def test_percent_encoded_utf8_number_decoded() -> None:
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&%C3%9C4711").personnel_number == "Ü4711"
    # Full-width digits stay full-width: no compatibility normalisation.
    number = parsed_link(b"k7Q2xLm9Rt4vZp1W&%EF%BC%90%EF%BC%94").personnel_number
    assert number == "\uff10\uff14"


def test_percent_encoded_ascii_decoded() -> None:
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&%30%30%34%37%31%31").personnel_number == (
        "004711"
    )
    assert parsed_link(b"k7Q2%78Lm9Rt4vZp1W&004711").secret == SECRET


def test_lowercase_percent_escapes_decoded() -> None:
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&%c3%9c4711").personnel_number == "Ü4711"


def test_encoded_slash_decoded_into_number() -> None:
    # `00/47` is no personnel number, so the personnel service rejects it later.
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&00%2F47").personnel_number == "00/47"


def test_encoded_ampersand_and_equals_are_data() -> None:
    # Only a raw `&` or `=` is a separator, so encoded ones are part of the value.
    link = parsed_link(b"k7Q2xLm9Rt4vZp1W&00%2647%3D1")
    assert link.personnel_number == "00&47=1"


def test_plus_stays_plus() -> None:
    # RFC 3986 query, not a form body: `+` is not a space.
    link = parsed_link(b"k7Q2+Lm9&00+4711")
    assert link.secret == "k7Q2+Lm9"
    assert link.personnel_number == "00+4711"


def test_number_trimmed_of_whitespace() -> None:
    for query in (
        b"k7Q2xLm9Rt4vZp1W&%20004711",
        b"k7Q2xLm9Rt4vZp1W&004711%20%20",
        b"k7Q2xLm9Rt4vZp1W&%09004711%0A",
        b"k7Q2xLm9Rt4vZp1W&%C2%A0004711%E3%80%80",
    ):
        assert parsed_link(query).personnel_number == "004711", query


def test_inner_whitespace_of_number_kept() -> None:
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W&00%204711").personnel_number == "00 4711"


def test_secret_not_trimmed() -> None:
    # Whitespace around a secret makes it a different, unknown secret.
    assert parsed_link(b"%20k7Q2xLm9Rt4vZp1W&004711").secret == " " + SECRET
    assert parsed_link(b"k7Q2xLm9Rt4vZp1W%20&004711").secret == SECRET + " "


def test_length_limits_inclusive() -> None:
    secret = "s" * MAX_SECRET_LENGTH
    number = "1" * MAX_PERSONNEL_NUMBER_LENGTH
    link = parsed_link(f"{secret}&{number}".encode())
    assert link.secret == secret
    assert link.personnel_number == number


def test_number_length_counts_characters() -> None:
    # 64 two-byte characters are 384 query bytes, within the query limit.
    number = "Ü" * MAX_PERSONNEL_NUMBER_LENGTH
    query = b"k7Q2xLm9Rt4vZp1W&" + b"%C3%9C" * MAX_PERSONNEL_NUMBER_LENGTH
    assert len(query) <= MAX_QUERY_BYTES
    assert parsed_link(query).personnel_number == number


def test_query_size_limit_inclusive() -> None:
    # 128 secret characters in 316 bytes and 64 number characters in 195
    # bytes make a query of exactly MAX_QUERY_BYTES.
    secret = b"%73" * 94 + b"s" * 34
    number = b"%C3%9C" + b"%31" * 63
    query = secret + b"&" + number
    assert len(query) == MAX_QUERY_BYTES

    link = parsed_link(query)
    assert link.secret == "s" * MAX_SECRET_LENGTH
    assert link.personnel_number == "Ü" + "1" * 63
    assert rejection_reason(query + b"1") == "query_too_long"


# Rejected queries


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        pytest.param(b"", "empty_query", id="empty"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W", "wrong_part_count", id="one-value"),
        pytest.param(b"&k7Q2xLm9Rt4vZp1W&004711", "wrong_part_count", id="leading-amp"),
        pytest.param(
            b"k7Q2xLm9Rt4vZp1W&004711&004711", "wrong_part_count", id="three-values"
        ),
        pytest.param(
            b"k7Q2xLm9Rt4vZp1W&004711&", "wrong_part_count", id="trailing-amp"
        ),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&&004711", "wrong_part_count", id="double-amp"),
        pytest.param(b"&", "empty_secret", id="lone-amp"),
        pytest.param(b"&&", "wrong_part_count", id="two-amps"),
        pytest.param(
            b"k7Q2xLm9Rt4vZp1W&004711&x=1", "wrong_part_count", id="extra-parameter"
        ),
        pytest.param(
            b"secret=k7Q2xLm9Rt4vZp1W&number=004711",
            "named_parameter",
            id="key-value",
        ),
        pytest.param(
            b"k7Q2xLm9Rt4vZp1W&number=004711", "named_parameter", id="key-2nd"
        ),
        pytest.param(b"k7Q2xLm9Rt4vZp1W=&004711", "named_parameter", id="empty-value"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&004711=", "named_parameter", id="equals-end"),
        pytest.param(b"=k7Q2xLm9Rt4vZp1W&004711", "named_parameter", id="equals-start"),
    ],
)
def test_malformed_query_rejected(query: bytes, reason: str) -> None:
    assert rejection_reason(query) == reason


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(b"k7Q2xLm9Rt4vZp1W&J%F6rg", id="latin1-byte"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&%C3", id="truncated-sequence"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&%C0%AF", id="overlong-slash"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&%ED%A0%80", id="surrogate"),
        pytest.param(b"%FFk7Q2xLm9Rt4vZp1W&004711", id="invalid-byte-in-secret"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&%ZZ4711", id="non-hex-escape"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&0047%1", id="short-escape"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&004711%", id="lone-percent"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W%G1&004711", id="non-hex-in-secret"),
        pytest.param("k7Q2xLm9Rt4vZp1W&Ü4711".encode(), id="raw-utf8"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&\xff4711", id="raw-invalid-byte"),
    ],
)
def test_invalid_encoding_rejected(query: bytes) -> None:
    assert rejection_reason(query) == "invalid_encoding"


@pytest.mark.parametrize(
    "query",
    [
        pytest.param(b"k7Q2xLm9Rt4vZp1W&0047%0011", id="nul"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&0047%7F11", id="delete"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&0047%0D%0A11", id="crlf-inside"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&0047%C2%8511", id="next-line"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&0047%E2%80%8B11", id="zero-width-space"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&%E2%80%8B004711", id="zero-width-at-start"),
        pytest.param(b"k7Q2xLm9Rt4vZp1W&0047%EF%BF%BE11", id="noncharacter"),
        pytest.param(b"k7Q2x%00Lm9Rt4vZp1W&004711", id="nul-in-secret"),
        pytest.param(b"%0Ak7Q2xLm9Rt4vZp1W&004711", id="newline-before-secret"),
    ],
)
def test_control_character_rejected(query: bytes) -> None:
    assert rejection_reason(query) == "control_character"


def test_empty_values_rejected() -> None:
    assert rejection_reason(b"&004711") == "empty_secret"
    assert rejection_reason(b"k7Q2xLm9Rt4vZp1W&") == "empty_personnel_number"
    assert rejection_reason(b"k7Q2xLm9Rt4vZp1W&%20%20") == "empty_personnel_number"
    assert rejection_reason(b"k7Q2xLm9Rt4vZp1W&%09") == "empty_personnel_number"


def test_long_values_rejected() -> None:
    secret = "s" * (MAX_SECRET_LENGTH + 1)
    number = "1" * (MAX_PERSONNEL_NUMBER_LENGTH + 1)
    assert rejection_reason(f"{secret}&004711".encode()) == "secret_too_long"
    assert (
        rejection_reason(f"{SECRET}&{number}".encode()) == "personnel_number_too_long"
    )


def test_number_length_checked_after_trim() -> None:
    number = "1" * MAX_PERSONNEL_NUMBER_LENGTH
    link = parsed_link(f"{SECRET}&%20{number}%20".encode())
    assert link.personnel_number == number


def test_long_queries_rejected_by_size() -> None:
    assert rejection_reason(b"s" * (MAX_QUERY_BYTES + 1)) == "query_too_long"
    ten_thousand_digits = b"k7Q2xLm9Rt4vZp1W&" + b"1" * 10_000
    assert rejection_reason(ten_thousand_digits) == "query_too_long"
    hundred_kilobytes = b"k7Q2xLm9Rt4vZp1W&" + b"0" * (100 * 1024)
    assert rejection_reason(hundred_kilobytes) == "query_too_long"
    # Many separators are caught by the size check before any splitting.
    assert rejection_reason(b"&" * (100 * 1024)) == "query_too_long"


def test_size_checked_on_encoded_bytes() -> None:
    # 171 encoded characters decode to 57, but the raw query is over the limit.
    query = b"k7Q2xLm9Rt4vZp1W&" + b"%31" * 171
    assert len(query) > MAX_QUERY_BYTES
    assert rejection_reason(query) == "query_too_long"


def test_ascii_control_characters_are_unicode_category_c() -> None:
    # ASCII text takes a shortcut past the per-character category lookup.
    for code in range(128):
        character = chr(code)
        expected = unicodedata.category(character).startswith("C")
        assert _has_control_character(f"a{character}b") is expected, hex(code)

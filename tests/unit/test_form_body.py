"""Unit tests for `services.gateway.form_body.parse`, the urlencoded body parser."""

from __future__ import annotations

import pytest

from services.gateway.form_body import MAX_FIELDS, FormBody, TooManyFields, parse


def test_values_stay_exact_strings() -> None:
    body = parse(
        b"subject=4711&location=2.50&description=%7B%22a%22%3A1%7D&category=null"
        b"&number=004711&flag=true&empty_list=%5B%5D&exponent=1e3"
    )
    assert body.values == {
        "subject": "4711",
        "location": "2.50",
        "description": '{"a":1}',
        "category": "null",
        "number": "004711",
        "flag": "true",
        "empty_list": "[]",
        "exponent": "1e3",
    }
    assert all(type(value) is str for value in body.values.values())
    assert body.invalid_encoding == set()


def test_plus_decoded_as_space() -> None:
    assert parse(b"subject=Drucker+im+2.+Stock").values["subject"] == (
        "Drucker im 2. Stock"
    )
    assert parse(b"first+name=J").values == {"first name": "J"}


def test_encoded_plus_stays_plus() -> None:
    assert parse(b"subject=1%2B1").values["subject"] == "1+1"


def test_utf8_decoded_byte_for_byte() -> None:
    body = parse(b"subject=Stra%C3%9Fe+%E2%82%AC+%F0%9F%98%80")
    assert body.values["subject"] == "Straße € 😀"
    assert body.values["subject"].encode("utf-8") == (
        b"Stra\xc3\x9fe \xe2\x82\xac \xf0\x9f\x98\x80"
    )


def test_raw_utf8_bytes_decoded() -> None:
    assert parse("subject=Jörg".encode()).values["subject"] == "Jörg"


def test_decomposed_text_not_normalised() -> None:
    # `e` followed by U+0301 stays two code points.
    assert parse(b"subject=Caf%65%CC%81").values["subject"] == "Cafe\u0301"


def test_whitespace_and_newlines_kept() -> None:
    body = parse(b"description=+line+1%0D%0Aline+2%0A+&location=%09")
    assert body.values["description"] == " line 1\r\nline 2\n "
    assert body.values["location"] == "\t"


def test_separators_inside_values_kept() -> None:
    body = parse(b"subject=a%3Db%26c&description=x=y")
    assert body.values["subject"] == "a=b&c"
    # Only the first raw `=` separates the name from the value.
    assert body.values["description"] == "x=y"


def test_invalid_percent_escape_kept_as_text() -> None:
    assert parse(b"subject=100%ZZ+%").values["subject"] == "100%ZZ %"


@pytest.mark.parametrize(
    "raw_value",
    [
        pytest.param(b"J%F6rg", id="latin1-escape"),
        pytest.param(b"J\xf6rg", id="latin1-raw"),
        pytest.param(b"%C3", id="truncated"),
        pytest.param(b"%C0%AF", id="overlong"),
        pytest.param(b"%ED%A0%80", id="surrogate"),
        pytest.param(b"ok%FF", id="invalid-byte"),
    ],
)
def test_invalid_utf8_reported_by_field(raw_value: bytes) -> None:
    body = parse(b"category=IT&subject=" + raw_value + b"&description=Text")
    assert body.invalid_encoding == {"subject"}
    assert "subject" not in body.values
    assert body.values == {"category": "IT", "description": "Text"}


def test_every_invalid_field_reported() -> None:
    body = parse(b"subject=J%F6rg&description=%FF&location=B%C3%BCro")
    assert body.invalid_encoding == {"subject", "description"}
    assert body.values == {"location": "Büro"}


def test_invalid_field_name_skipped() -> None:
    body = parse(b"subj%FFect=x&subject=ok")
    assert body.values == {"subject": "ok"}
    assert body.invalid_encoding == set()


def test_first_occurrence_wins() -> None:
    assert parse(b"subject=first&subject=second").values == {"subject": "first"}


def test_invalid_first_occurrence_wins() -> None:
    # A later valid copy must not hide that the first one was unreadable.
    body = parse(b"subject=J%F6rg&subject=Joerg")
    assert body.invalid_encoding == {"subject"}
    assert "subject" not in body.values


def test_name_without_value_is_empty() -> None:
    assert parse(b"subject&location=").values == {"subject": "", "location": ""}


def test_empty_body() -> None:
    assert parse(b"") == FormBody()


def test_empty_pairs_ignored() -> None:
    body = parse(b"&&subject=a&&&location=b&")
    assert body.values == {"subject": "a", "location": "b"}


def test_max_fields_accepted() -> None:
    body = parse(b"&".join(b"f%d=%d" % (i, i) for i in range(MAX_FIELDS)))
    assert len(body.values) == MAX_FIELDS


def test_too_many_fields_raise() -> None:
    with pytest.raises(TooManyFields) as raised:
        parse(b"&".join(b"f%d=1" % i for i in range(MAX_FIELDS + 1)))
    assert raised.value.count == MAX_FIELDS + 1
    assert str(MAX_FIELDS) in str(raised.value)


def test_repeated_names_count_as_fields() -> None:
    with pytest.raises(TooManyFields):
        parse(b"&".join([b"subject=x"] * (MAX_FIELDS + 1)))


def test_thousands_of_tiny_fields_raise() -> None:
    with pytest.raises(TooManyFields) as raised:
        parse(b"&".join([b"a"] * 2_000))
    assert raised.value.count == 2_000


def test_empty_pairs_not_counted() -> None:
    body = parse(b"&" * 1_000 + b"subject=a")
    assert body.values == {"subject": "a"}

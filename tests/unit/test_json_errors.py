"""Unit tests for `shared.json_errors`: finding what is wrong in JSON that
msgspec rejected, and the JSON path where it is.

Each case feeds the bytes to msgspec first and explains msgspec's own error,
as the admin APIs, the NATS handlers and the ticket consumer do.
"""

from __future__ import annotations

import msgspec
import pytest

from shared import json_errors
from shared.json_errors import (
    MAX_KEY_CHARACTERS,
    JsonProblem,
    explain_decode_error,
    json_path,
    locate,
)


class Person(msgspec.Struct):
    name: str


def explain(data: bytes, target: type | None = None) -> JsonProblem:
    """Decode `data` with msgspec, which must fail, and explain its error."""
    try:
        if target is None:
            msgspec.json.decode(data)
        else:
            msgspec.json.decode(data, type=target)
    except (msgspec.DecodeError, RecursionError) as exc:
        return explain_decode_error(data, exc)
    pytest.fail(f"msgspec decoded {data[:80]!r}")


# --- JSON paths --------------------------------------------------------------


def test_json_path_of_keys_and_indexes() -> None:
    assert json_path([]) == "$"
    assert json_path(["people", 3, "name"]) == "$.people[3].name"
    assert json_path([0, "_id2"]) == "$[0]._id2"


def test_json_path_quotes_other_keys() -> None:
    assert json_path(["first name"]) == '$["first name"]'
    assert json_path(['a"b']) == '$["a\\"b"]'
    assert json_path(["Straße"]) == '$["Stra\\u00dfe"]'
    assert json_path(["2nd"]) == '$["2nd"]'


def test_json_path_cuts_long_keys() -> None:
    path = json_path(["k" * (MAX_KEY_CHARACTERS + 100)])

    assert path == '$["' + "k" * MAX_KEY_CHARACTERS + '..."]'


# --- locating a position ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path", "in_string", "in_key"),
    [
        ("", "$", False, False),
        ('{"name": "Jo', "$.name", True, False),
        ('{"people": [{"name": "a"}, {"name": "J', "$.people[1].name", True, False),
        ('{"a": 1, "na', "$", True, True),
        ('{"a": 1, ', "$", False, False),
        ('{"a": {"b": 1}, "c": ', "$.c", False, False),
        ("[1, [2, 3], ", "$[2]", False, False),
        ("[", "$[0]", False, False),
        ('{"a": "[{,:", "b": ', "$.b", False, False),
        ('{"x": "\\\\", "y": ', "$.y", False, False),
        ('{"a\\"b": {"c": ', '$["a\\"b"].c', False, False),
        ('{"first name": [', '$["first name"][0]', False, False),
    ],
)
def test_locate_at_end_of_text(
    text: str, path: str, in_string: bool, in_key: bool
) -> None:
    location = locate(text, len(text))

    assert location.path == path
    assert location.in_string is in_string
    assert location.in_key is in_key


def test_locate_reads_only_before_position() -> None:
    text = '{"a": 1, "b": [1, 2, 3]}'

    assert locate(text, text.index("1")).path == "$.a"
    assert locate(text, text.index("3")).path == "$.b[2]"
    assert locate(text, len(text)).path == "$"


# --- lone surrogate escapes ------------------------------------------------


def test_lone_high_surrogate_named() -> None:
    problem = explain(b'{"name": "J\\ud800rg"}')

    assert problem.kind == "lone_surrogate"
    assert problem.path == "$.name"
    assert "the string at $.name" in problem.reason
    assert "\\ud800" in problem.reason
    assert "high surrogate" in problem.reason
    assert "truncated" not in problem.message
    assert "surrogate pair" in problem.fix


def test_lone_low_surrogate_named() -> None:
    problem = explain(b'{"name": "J\\udc00rg"}')

    assert problem.kind == "lone_surrogate"
    assert problem.path == "$.name"
    assert "low surrogate" in problem.reason


@pytest.mark.parametrize(
    "escapes",
    [b"\\ud800", b"\\ud800x", b"\\ud800\\u0041", b"\\udbff\\udbff", b"\\udc00\\ud800"],
)
def test_every_unpaired_escape_named(escapes: bytes) -> None:
    problem = explain(b'{"a": [1, {"b": "' + escapes + b'"}]}')

    assert problem.kind == "lone_surrogate"
    assert problem.path == "$.a[1].b"


def test_surrogate_deep_in_list_named() -> None:
    people = b'{"name": "a"}, ' * 3 + b'{"name": "J\\ud800rg"}'
    problem = explain(b'{"people": [' + people + b"]}")

    assert problem.path == "$.people[3].name"


def test_surrogate_in_key_names_object() -> None:
    problem = explain(b'{"people": [{"na\\ud800me": "Anna"}]}')

    assert problem.kind == "lone_surrogate"
    assert problem.path == "$.people[0]"
    assert "a key of the object at $.people[0]" in problem.reason


def test_first_surrogate_in_document_order() -> None:
    problem = explain(b'{"a": {"x": "\\udc00"}, "b\\ud800": 1, "c": "\\ud800"}')

    assert problem.path == "$.a.x"


def test_valid_pair_not_flagged() -> None:
    problem = explain(b'{"ok": "\\ud83d\\ude00", "bad": "\\ud800"}')

    assert problem.path == "$.bad"


def test_surrogate_in_quoted_key_path() -> None:
    problem = explain(b'{"first name": "\\ud800"}')

    assert problem.path == '$["first name"]'


# --- encoding ----------------------------------------------------------------


def test_invalid_utf8_in_value_named() -> None:
    problem = explain(b'{"name": "J\xffrg"}')

    assert problem.kind == "invalid_utf8"
    assert problem.path == "$.name"
    assert "the string at $.name" in problem.reason
    assert "0xFF" in problem.reason
    assert "line 1, column 12" in problem.reason
    assert "UTF-8" in problem.fix


def test_invalid_utf8_in_key_names_object() -> None:
    problem = explain(b'{"a": {"n\xe4me": 1}}')

    assert problem.path == "$.a"
    assert "a key of the object at $.a" in problem.reason


def test_cut_utf8_character_named() -> None:
    problem = explain(b'{"a": [1, 2, "J\xc3"]}')

    assert problem.kind == "invalid_utf8"
    assert problem.path == "$.a[2]"


def test_invalid_utf8_outside_string() -> None:
    problem = explain(b'{"a": \xff}')

    assert problem.kind == "invalid_utf8"
    assert "the value at $.a" in problem.reason


def test_invalid_utf8_on_later_line() -> None:
    problem = explain(b'{\n  "a": "x",\n  "b": "\xe4"\n}')

    assert problem.path == "$.b"
    assert "line 3, column 9" in problem.reason


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_named(encoding: str) -> None:
    problem = explain('{"name": "Jörg"}'.encode(encoding))

    assert problem.kind == "invalid_utf8"
    assert "UTF-" in problem.reason
    assert "not UTF-8" in problem.reason


@pytest.mark.parametrize("data", [b"\xff\x00garbage", b"\x00\x00\x00\x01", b"a\x00"])
def test_nul_bytes_not_called_utf16(data: bytes) -> None:
    problem = explain(data)

    assert "UTF-16" not in problem.reason
    assert "UTF-32" not in problem.reason


def test_byte_order_mark_named() -> None:
    problem = explain(b'\xef\xbb\xbf{"name": "Jo"}')

    assert problem.kind == "byte_order_mark"
    assert "without it" in problem.fix


# --- syntax ------------------------------------------------------------------


def test_cut_inside_string_names_field() -> None:
    problem = explain(b'{"name": "Jo')

    assert problem.kind == "incomplete"
    assert problem.path == "$.name"
    assert "ends inside the string at $.name" in problem.reason
    assert "line 1, column 10" in problem.reason
    assert "complete document" in problem.fix


def test_cut_inside_key_names_object() -> None:
    problem = explain(b'{"a": 1, "na')

    assert problem.kind == "incomplete"
    assert "a key of the object at $" in problem.reason


@pytest.mark.parametrize(
    ("data", "path"),
    [
        (b'{"name": "Jo",', "$"),
        (b'{"people": [{"name": "a"}, {"name": ', "$.people[1].name"),
        (b"[1, 2", "$[1]"),
        (b'{"a": 1, "b"  \n', "$.b"),
    ],
)
def test_cut_document_is_incomplete(data: bytes, path: str) -> None:
    problem = explain(data)

    assert problem.kind == "incomplete"
    assert problem.path == path
    assert "ends early" in problem.reason


def test_trailing_data_named() -> None:
    problem = explain(b'{"name": "Jo"} x')

    assert problem.kind == "trailing_data"
    assert "line 1, column 16" in problem.reason
    assert "one JSON document" in problem.fix


@pytest.mark.parametrize(
    "data", [b"name=Jo", b"Personalnummer;Name\n1;A\n", b"<p>", b"  nope"]
)
def test_other_content_is_not_json(data: bytes) -> None:
    problem = explain(data)

    assert problem.kind == "not_json"
    assert problem.path is None
    assert "not JSON" in problem.reason


@pytest.mark.parametrize("data", [b" ", b"\r\n\t"])
def test_whitespace_only_is_empty(data: bytes) -> None:
    assert explain(data).kind == "empty"


def test_syntax_error_names_position_and_field() -> None:
    problem = explain(b'{\n  "a": 1,\n  "b": x\n}')

    assert problem.kind == "syntax"
    assert problem.path == "$.b"
    assert "line 3, column 8" in problem.reason
    assert "near $.b" in problem.reason


def test_missing_comma_named() -> None:
    problem = explain(b'{"a": 1 "b": 2}')

    assert problem.kind == "syntax"
    assert "delimiter" in problem.reason
    assert "line 1, column 9" in problem.reason


def test_bad_escape_names_string() -> None:
    problem = explain(b'{"name": "J\\qrg"}')

    assert problem.kind == "syntax"
    assert problem.path == "$.name"
    assert "in the string at $.name" in problem.reason


def test_raw_control_character_named() -> None:
    problem = explain(b'{"name": "Jo\x01"}')

    assert problem.kind == "control_character"
    assert problem.path == "$.name"
    assert "\\u0001" in problem.fix


# --- numbers and nesting -----------------------------------------------------


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_constant_named(constant: str) -> None:
    problem = explain(b'{"a": [' + constant.encode() + b"]}")

    assert problem.kind == "non_finite_number"
    assert problem.path == "$.a[0]"
    assert constant in problem.reason


def test_float_out_of_range_named() -> None:
    problem = explain(b'{"a": {"b": 1e999}}')

    assert problem.kind == "number_out_of_range"
    assert problem.path == "$.a.b"


def test_integer_with_too_many_digits_named() -> None:
    problem = explain(b'{"a": -' + b"9" * 5000 + b"}")

    assert problem.kind == "number_out_of_range"
    assert problem.path == "$.a"
    assert "5000 digits" in problem.reason


def test_deep_nesting_named() -> None:
    problem = explain(b"[" * 100_000)

    assert problem.kind == "too_deep"


def test_deep_wide_document_formats_one_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 100 levels of 64-character keys above 20,000 array elements, with the
    # lone surrogate last. A path formatted for every element would take
    # about 130 MB here, and gigabytes for a body of a few 100 kB.
    key = b'"' + b"k" * 64 + b'"'
    elements = b",".join([b"0"] * 20_000)
    data = b"{" + key + b":"
    data = data * 100 + b"[" + elements + b',"\\ud800"]' + b"}" * 100
    formatted: list[list[str | int]] = []
    original = json_errors.json_path

    def counting_json_path(parts: list[str | int]) -> str:
        formatted.append(parts)
        return original(parts)

    monkeypatch.setattr(json_errors, "json_path", counting_json_path)

    problem = explain(data)

    assert problem.kind == "lone_surrogate"
    assert problem.path is not None
    assert problem.path.endswith("[20000]")
    assert problem.path.count(".") == 100
    assert len(formatted) == 1


# --- typed decoding ----------------------------------------------------------


def test_typed_validation_error_kept() -> None:
    problem = explain(b'{"name": 1}', Person)

    assert problem.kind == "invalid_value"
    assert problem.path == "$.name"
    assert problem.reason == "Expected `str`, got `int` - at `$.name`"


def test_typed_decode_surrogate_named() -> None:
    problem = explain(b'{"name": "\\ud800"}', Person)

    assert problem.kind == "lone_surrogate"
    assert problem.path == "$.name"


# --- what a problem never contains -------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b'{"token": "hunter2-\\ud800"}',
        b'{"token": "hunter2-\xff"}',
        b'{"token": "hunter2',
        b'{"token": "hunter2\x01"}',
        b'{"token": "hunter2"} hunter2',
    ],
)
def test_value_not_in_message(data: bytes) -> None:
    problem = explain(data)

    assert "hunter2" not in problem.message


def test_unexplained_error_keeps_msgspec_message() -> None:
    error = msgspec.DecodeError("JSON is malformed: invalid character (byte 6)")

    problem = explain_decode_error(b'{"a": 1}', error)

    assert problem.kind == "other"
    assert "invalid character at line 1, column 7" in problem.reason

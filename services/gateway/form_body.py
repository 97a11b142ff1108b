"""Parse an `application/x-www-form-urlencoded` body into exact strings.

Every value stays the text that was typed: `004711` keeps its zeros, `2.50`
its trailing zero, and `null` or `{"a":1}` are not interpreted. A field whose
bytes are not valid UTF-8 is reported by name instead of being replaced with
U+FFFD, so the form can ask for it again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote_to_bytes

MAX_FIELDS = 20


class TooManyFields(ValueError):
    def __init__(self, count: int) -> None:
        self.count = count
        super().__init__(f"the form has {count} fields, at most {MAX_FIELDS}")


@dataclass
class FormBody:
    values: dict[str, str] = field(default_factory=dict)
    invalid_encoding: set[str] = field(default_factory=set)


def _decode(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", errors="strict")


def parse(body: bytes) -> FormBody:
    """Split `body` into fields; the first occurrence of a repeated name wins.

    Raises `TooManyFields` when the body has more than `MAX_FIELDS` fields.
    """
    parsed = FormBody()
    pairs = [pair for pair in body.split(b"&") if pair]
    if len(pairs) > MAX_FIELDS:
        raise TooManyFields(len(pairs))
    for pair in pairs:
        raw_name, _, raw_value = pair.partition(b"=")
        try:
            name = _decode(raw_name)
        except UnicodeDecodeError:
            # A field name that is not UTF-8 is no field of our form.
            continue
        if name in parsed.values or name in parsed.invalid_encoding:
            continue
        try:
            parsed.values[name] = _decode(raw_value)
        except UnicodeDecodeError:
            parsed.invalid_encoding.add(name)
    return parsed


def multipart_part_count(body: bytes, content_type: str) -> int | None:
    """Return about how many parts a `multipart/form-data` body has.

    The gateway does not accept multipart bodies, but one with more parts
    than `MAX_FIELDS` gets the same 413 as a urlencoded body with too many
    fields. Returns None when the content type names no boundary.
    """
    boundary = ""
    for parameter in content_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "boundary":
            boundary = value.strip().strip('"')
    if not boundary:
        return None
    # Each part starts with `--boundary`; the closing `--boundary--` too.
    delimiters = body.count(b"--" + boundary.encode("latin-1", errors="replace"))
    return max(delimiters - 1, 0)

"""Parse the public link's query: two bare, positional, percent-encoded values.

`?<secret>&<personnel number>` is the contract that intranets already build.
The standard query parsers drop keys without `=`, so the raw query string is
split here. The rules, strict on purpose so that every odd link gets the one
neutral answer:

- exactly two parts separated by one `&`; a leading, trailing or doubled `&`
  and any third part are rejected;
- neither part may contain `=`, so `secret=…` forms are rejected too;
- each part is percent-decoded as UTF-8 (RFC 3986: `+` stays `+`), and a
  `%` that is not followed by two hex digits is rejected as invalid encoding;
- the personnel number is trimmed of surrounding whitespace, nothing else.

A signed link's query is instead `sig=<token>` and nothing else
(`shared.signed_link` describes the token). Only its shape is checked
here; the tenant service checks the signature.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from shared import signed_link

MAX_QUERY_BYTES = 512
MAX_SECRET_LENGTH = 128
MAX_PERSONNEL_NUMBER_LENGTH = 64

# A `%` without two hex digits after it, which `unquote` would keep as text.
_INVALID_PERCENT_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

Malformed = Literal[
    "empty_query",
    "query_too_long",
    "wrong_part_count",
    "named_parameter",
    "invalid_encoding",
    "empty_secret",
    "secret_too_long",
    "empty_personnel_number",
    "personnel_number_too_long",
    "control_character",
    "malformed_signed_link",
]

_SIGNED_PREFIX = signed_link.QUERY_PREFIX.encode("ascii")


@dataclass(frozen=True)
class Link:
    secret: str
    personnel_number: str


@dataclass(frozen=True)
class SignedLink:
    """A signed link of the right shape; its signature is not checked yet."""

    token: signed_link.SignedToken


@dataclass(frozen=True)
class MalformedLink:
    """The reason a query is not a link; logged, never shown to the reader."""

    reason: Malformed


def _has_control_character(text: str) -> bool:
    # Every link is checked; in ASCII the only "C" category is Cc, which the
    # regular expression finds without a call per character.
    if text.isascii():
        return _ASCII_CONTROL.search(text) is not None
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def _parse_signed(query: bytes) -> SignedLink | MalformedLink:
    if len(query) > len(_SIGNED_PREFIX) + signed_link.MAX_TOKEN_LENGTH:
        return MalformedLink("query_too_long")
    try:
        token = signed_link.split(query[len(_SIGNED_PREFIX) :].decode("ascii"))
    except UnicodeDecodeError:
        token = None
    if token is None:
        return MalformedLink("malformed_signed_link")
    return SignedLink(token)


def parse(query: bytes) -> Link | SignedLink | MalformedLink:
    """Parse the raw query string (without `?`) of a public link."""
    if not query:
        return MalformedLink("empty_query")
    if query.startswith(_SIGNED_PREFIX):
        return _parse_signed(query)
    if len(query) > MAX_QUERY_BYTES:
        return MalformedLink("query_too_long")
    parts = query.split(b"&")
    if len(parts) != 2:
        return MalformedLink("wrong_part_count")
    if b"=" in query:
        return MalformedLink("named_parameter")
    if _INVALID_PERCENT_ESCAPE.search(query):
        return MalformedLink("invalid_encoding")
    try:
        raw_secret, raw_number = (
            unquote(part.decode("ascii"), errors="strict") for part in parts
        )
    except UnicodeError:
        return MalformedLink("invalid_encoding")

    secret = raw_secret
    number = raw_number.strip()
    if not secret:
        return MalformedLink("empty_secret")
    if len(secret) > MAX_SECRET_LENGTH:
        return MalformedLink("secret_too_long")
    if not number:
        return MalformedLink("empty_personnel_number")
    if len(number) > MAX_PERSONNEL_NUMBER_LENGTH:
        return MalformedLink("personnel_number_too_long")
    if _has_control_character(secret) or _has_control_character(number):
        return MalformedLink("control_character")
    return Link(secret=secret, personnel_number=number)

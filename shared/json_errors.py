"""Explain why JSON bytes failed to decode: what is wrong, where, what to do.

msgspec decodes fast, but its errors can mislead. msgspec 0.23 reports a
lone UTF-16 high surrogate escape such as `\\ud800` as "Input data was
truncated", and none of its syntax or encoding errors names the field.
Callers therefore keep msgspec for every document and call
`explain_decode_error` only after msgspec has failed. That function parses
the same bytes again with the standard library's `json` module, which
accepts lone surrogates and reports the position of a syntax error, and
turns what it finds into a `JsonProblem`.

A problem's text names keys of the document (in JSON paths) and at most
one invalid byte or escape, but no value, so it can go into a response.
The exception is a `msgspec.ValidationError` of a typed decode, whose
message is kept and may quote the value, such as an invalid enum value.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Literal

import msgspec

ProblemKind = Literal[
    "empty",
    "byte_order_mark",
    "invalid_utf8",
    "lone_surrogate",
    "incomplete",
    "trailing_data",
    "not_json",
    "control_character",
    "syntax",
    "non_finite_number",
    "number_out_of_range",
    "too_deep",
    "invalid_value",
    "other",
]

UNDECODABLE: tuple[type[Exception], ...] = (
    msgspec.DecodeError,
    UnicodeDecodeError,
    RecursionError,
)
"""Exceptions that msgspec raises for bytes that do not decode. Some versions
raise UnicodeDecodeError for bytes that are not UTF-8, and every version
raises RecursionError for deep nesting, even inside a field that it skips."""

MAX_KEY_CHARACTERS = 64
"""Maximum length of a key shown in a path; longer keys are cut to it and
end in `...`. Paths are ASCII, with other characters as JSON escapes,
because a NATS error reply carries its message in a header."""

_WHITESPACE = " \t\r\n"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STRUCTURAL = re.compile(r'[{}\[\],:"]')
_STRING_STOP = re.compile(r'["\\]')
_SURROGATE = re.compile("[\ud800-\udfff]")
_MSGSPEC_BYTE = re.compile(r"\(byte (\d+)\)")
_MSGSPEC_PATH = re.compile(r"^(.*) - at `(\$[^`]*)`$", re.DOTALL)

_LONE_SURROGATE_FIX = (
    "remove it, or write the intended character as UTF-8 or as a complete "
    "surrogate pair such as \\ud83d\\ude00"
)


@dataclass(frozen=True)
class JsonProblem:
    """Explanation, for its sender, of why a JSON document does not decode."""

    kind: ProblemKind
    reason: str
    """Problem and its location, such as `the string at $.name contains …`."""
    fix: str
    """Action that corrects the problem, such as `encode the text as UTF-8`."""
    path: str | None = None
    """JSON path of the value concerned, such as `$.people[3].name`, when
    one is known."""

    @property
    def message(self) -> str:
        """The reason and the fix as one sentence."""
        return f"{self.reason}; {self.fix}"


@dataclass(frozen=True)
class JsonLocation:
    """Place in a document's structure that a position of its JSON text is in."""

    path: str
    """JSON path of the innermost member or element that the position is
    in or after, such as `$.people[3].name`; `$` at the top level."""
    in_string: bool
    """The position is inside a string, a key or a value."""
    in_key: bool
    """The position is inside a string that is an object's key."""


def explain_decode_error(data: bytes, error: BaseException) -> JsonProblem:
    """Find why `data` failed to decode as JSON and where.

    `error` is what msgspec raised for `data`. A `msgspec.ValidationError`
    that names its path is kept as it is. msgspec writes `[...]` for the
    keys of untyped objects, so a path with `[...]` is found by parsing the
    data again, as for the other errors. When that parse finds nothing
    wrong, the problem repeats msgspec's message with its byte offset
    turned into line and column.
    """
    if isinstance(error, msgspec.ValidationError) and "[...]" not in str(error):
        return _invalid_value(str(error))
    if isinstance(error, RecursionError):
        return _too_deep()
    # RFC 8259 allows only UTF-8. `json.detect_encoding` recognises UTF-16
    # and UTF-32 by a byte order mark or by NUL bytes among the first four,
    # which binary junk has too, so the guess counts only if the text then
    # starts like JSON.
    encoding = json.detect_encoding(data)
    if encoding not in ("utf-8", "utf-8-sig") and _starts_like_json(data, encoding):
        return JsonProblem(
            kind="invalid_utf8",
            reason=f"the document looks like {encoding.upper()} text, not UTF-8",
            fix="encode it as UTF-8",
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return _invalid_utf8(data, exc.start)
    if text.startswith("\ufeff"):
        return JsonProblem(
            kind="byte_order_mark",
            reason="the document starts with a UTF-8 byte order mark (EF BB BF)",
            fix="send the JSON without it, as RFC 8259 requires",
        )
    if not text.strip(_WHITESPACE):
        return JsonProblem(
            kind="empty",
            reason="the document is empty or contains only whitespace",
            fix="send a JSON document",
        )
    try:
        document = json.loads(
            text,
            object_pairs_hook=_Object,
            parse_constant=_NonFinite,
            parse_int=_parse_int,
        )
    except json.JSONDecodeError as exc:
        return _syntax_error(text, exc)
    except RecursionError:
        return _too_deep()
    found = _first_invalid_value(document)
    if found is not None:
        return found
    if isinstance(error, msgspec.ValidationError):
        return _invalid_value(str(error))
    return _unexplained(data, error)


_JSON_STARTS = frozenset('{["-0123456789tfn')


def _starts_like_json(data: bytes, encoding: str) -> bool:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        return False
    return text.lstrip("\ufeff" + _WHITESPACE)[:1] in _JSON_STARTS


def locate(text: str, position: int) -> JsonLocation:
    """Find the JSON path at `position` of `text`.

    Only `text[:position]` is read. It is expected to be the start of a JSON
    document, as the text before a decode error is. For other text the path
    is a best guess.
    """
    frames: list[_Frame] = []
    end = min(position, len(text))
    index = 0
    while True:
        match = _STRUCTURAL.search(text, index, end)
        if match is None:
            return JsonLocation(_path(frames), in_string=False, in_key=False)
        index = match.start()
        char = text[index]
        if char == '"':
            close = _string_end(text, index)
            top = frames[-1] if frames else None
            is_key = top is not None and top.awaiting_key
            if close is None or close > end:
                return JsonLocation(_path(frames), in_string=True, in_key=is_key)
            if top is not None and is_key:
                top.key = _decode_key(text[index:close])
                top.awaiting_key = False
            index = close
            continue
        if char == "{":
            frames.append(_Frame(is_object=True, awaiting_key=True))
        elif char == "[":
            frames.append(_Frame(is_object=False))
        elif char in "}]":
            if frames:
                frames.pop()
        elif char == "," and frames:
            frames[-1].next_member()
        index += 1


def json_path(parts: list[str | int]) -> str:
    """Format keys and array indexes as a JSON path such as `$.people[3].name`.

    Keys that are not identifiers are quoted with JSON escapes, as in
    `$["first name"]`; keys over `MAX_KEY_CHARACTERS` are cut.
    """
    path = "$"
    for part in parts:
        path = _child(path, part)
    return path


# --- locating ----------------------------------------------------------------


class _Frame:
    """An object or array that is open at the scanned position."""

    __slots__ = ("awaiting_key", "index", "is_object", "key")

    def __init__(self, *, is_object: bool, awaiting_key: bool = False) -> None:
        self.is_object = is_object
        self.awaiting_key = awaiting_key
        self.key: str | None = None
        self.index = 0

    def next_member(self) -> None:
        if self.is_object:
            self.key = None
            self.awaiting_key = True
        else:
            self.index += 1


def _path(frames: list[_Frame]) -> str:
    parts: list[str | int] = []
    for frame in frames:
        if not frame.is_object:
            parts.append(frame.index)
        elif frame.key is not None:
            parts.append(frame.key)
    return json_path(parts)


def _child(path: str, part: str | int) -> str:
    if isinstance(part, int):
        return f"{path}[{part}]"
    if len(part) > MAX_KEY_CHARACTERS:
        quoted = json.dumps(part[:MAX_KEY_CHARACTERS], ensure_ascii=True)
        return f'{path}[{quoted[:-1]}..."]'
    if _IDENTIFIER.fullmatch(part):
        return f"{path}.{part}"
    return f"{path}[{json.dumps(part, ensure_ascii=True)}]"


def _string_end(text: str, start: int) -> int | None:
    """Return the index after the closing quote of the string that opens at
    `start`, or None if the text ends first."""
    index = start + 1
    while True:
        match = _STRING_STOP.search(text, index)
        if match is None:
            return None
        if match.group() == '"':
            return match.end()
        index = match.end() + 1


def _decode_key(quoted: str) -> str:
    try:
        key = json.loads(quoted)
    except ValueError:
        return quoted[1:-1]
    return key if isinstance(key, str) else quoted[1:-1]


def _line_column(text: str, position: int) -> tuple[int, int]:
    """Return the 1-based line and column of `position`, as `json` does."""
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)
    return line, column


def _at(text: str, position: int) -> str:
    line, column = _line_column(text, position)
    return f"line {line}, column {column}"


def _describe_location(location: JsonLocation) -> str:
    """Name what the location is in, such as `the string at $.name`."""
    if location.in_key:
        return f"a key of the object at {location.path}"
    if location.in_string:
        return f"the string at {location.path}"
    if location.path == "$":
        return "the document"
    return f"the value at {location.path}"


# --- problems found by parsing -----------------------------------------------


def _invalid_utf8(data: bytes, start: int) -> JsonProblem:
    # The bytes before the first invalid one are valid UTF-8 by definition.
    prefix = data[:start].decode("utf-8")
    location = locate(prefix, len(prefix))
    return JsonProblem(
        kind="invalid_utf8",
        reason=f"{_describe_location(location)} contains byte 0x{data[start]:02X} at "
        f"{_at(prefix, len(prefix))}, which is not valid UTF-8",
        fix="encode the text as UTF-8",
        path=location.path,
    )


def _syntax_error(text: str, exc: json.JSONDecodeError) -> JsonProblem:
    location = locate(text, exc.pos)
    if location.in_string:
        near = f", in {_describe_location(location)}"
    elif location.path != "$":
        near = f", near {location.path}"
    else:
        near = ""
    if exc.msg == "Extra data":
        return JsonProblem(
            kind="trailing_data",
            reason=f"more data follows the end of the JSON document, at "
            f"{_at(text, exc.pos)}",
            fix="send one JSON document and nothing after it",
        )
    if exc.msg.startswith("Unterminated string"):
        # `exc.pos` is the opening quote; one character on is inside it.
        opened = locate(text, exc.pos + 1)
        return JsonProblem(
            kind="incomplete",
            reason=f"the document ends inside {_describe_location(opened)}, "
            f"which starts at {_at(text, exc.pos)}",
            fix="send the complete document",
            path=opened.path,
        )
    if exc.pos >= len(text.rstrip(_WHITESPACE)):
        return JsonProblem(
            kind="incomplete",
            reason=f"the document ends early, at {_at(text, exc.pos)}{near}",
            fix="send the complete document",
            path=location.path,
        )
    if exc.msg == "Expecting value" and exc.pos == len(text) - len(
        text.lstrip(_WHITESPACE)
    ):
        return JsonProblem(
            kind="not_json",
            reason=f"the document is not JSON: no JSON value starts at "
            f"{_at(text, exc.pos)}",
            fix="send a JSON document, such as an object in {...}",
        )
    if exc.msg.startswith("Invalid control character"):
        return JsonProblem(
            kind="control_character",
            reason=f"{_describe_location(location)} contains an unescaped "
            f"control character at {_at(text, exc.pos)}",
            fix="escape it, for example a line break as \\n or U+0001 as \\u0001",
            path=location.path,
        )
    description = exc.msg.removesuffix(" at")
    return JsonProblem(
        kind="syntax",
        reason=f"{description[:1].lower()}{description[1:]} at "
        f"{_at(text, exc.pos)}{near}",
        fix="correct the JSON syntax there",
        path=location.path,
    )


def _too_deep() -> JsonProblem:
    return JsonProblem(
        kind="too_deep",
        reason="the document nests arrays and objects too deeply to decode",
        fix="send a flatter document",
    )


def _invalid_value(message: str) -> JsonProblem:
    match = _MSGSPEC_PATH.match(message)
    path = match.group(2) if match else None
    return JsonProblem(
        kind="invalid_value",
        reason=message,
        fix="send a value of the expected type and range",
        path=None if path is None or "[...]" in path else path,
    )


def _unexplained(data: bytes, error: BaseException) -> JsonProblem:
    """Repeat msgspec's message for a problem the second parse did not find,
    with its byte offset turned into line and column."""
    message = str(error)
    match = _MSGSPEC_BYTE.search(message)
    if match:
        offset = min(int(match.group(1)), len(data))
        prefix = data[:offset].decode("utf-8", errors="replace")
        message = message.replace(match.group(), f"at {_at(prefix, len(prefix))}")
    return JsonProblem(
        kind="other",
        reason=f"the document is not valid JSON ({message})",
        fix="correct the JSON there",
    )


# --- problems found in the parsed document -----------------------------------


class _Object(list[tuple[str, object]]):
    """A JSON object as its members in document order, repeated keys kept."""


@dataclass(frozen=True)
class _NonFinite:
    """`NaN`, `Infinity` or `-Infinity`, which `json` accepts and JSON does not."""

    name: str


@dataclass(frozen=True)
class _HugeInteger:
    """An integer with more digits than `int()` converts, which msgspec
    rejects too (both stop at 4300 digits by default)."""

    digits: int


def _parse_int(literal: str) -> int | _HugeInteger:
    try:
        return int(literal)
    except ValueError:
        return _HugeInteger(len(literal.lstrip("-")))


_PathNode = tuple["_PathNode | None", "str | int"] | None
"""A value's place as its parent's node and its own key or index; None is
the top level. `_path_of` formats it as a JSON path."""


def _path_of(node: _PathNode) -> str:
    parts: list[str | int] = []
    while node is not None:
        node, part = node
        parts.append(part)
    parts.reverse()
    return json_path(parts)


def _first_invalid_value(document: object) -> JsonProblem | None:
    """Return the first key or value, in document order, that msgspec rejects
    but `json` accepted, or None."""
    # Depth-first with an explicit stack, because the document may nest as
    # deeply as `json` allows, close to Python's recursion limit. Each value
    # keeps a link to its parent's node, and only the value found gets its
    # path formatted. A path for every value would cost the depth times the
    # number of values, gigabytes for a deep document of a few 100 kB.
    pending: list[tuple[_PathNode, object, bool]] = [(None, document, False)]
    while pending:
        node, value, is_key = pending.pop()
        if isinstance(value, str):
            surrogate = _SURROGATE.search(value)
            if surrogate:
                return _lone_surrogate(_path_of(node), surrogate.group(), in_key=is_key)
        elif isinstance(value, _NonFinite):
            path = _path_of(node)
            return JsonProblem(
                kind="non_finite_number",
                reason=f"the value at {path} is {value.name}, which JSON does "
                "not allow",
                fix="send a finite number",
                path=path,
            )
        elif isinstance(value, _HugeInteger):
            path = _path_of(node)
            return JsonProblem(
                kind="number_out_of_range",
                reason=f"the integer at {path} has {value.digits} digits, too "
                "many to decode",
                fix="send a smaller number",
                path=path,
            )
        elif isinstance(value, float) and math.isinf(value):
            path = _path_of(node)
            return JsonProblem(
                kind="number_out_of_range",
                reason=f"the number at {path} is beyond the range of a 64-bit "
                "floating-point number",
                fix="send a smaller number",
                path=path,
            )
        elif isinstance(value, _Object):
            for key, member in reversed(value):
                pending.append(((node, key), member, False))
                pending.append((node, key, True))
        elif isinstance(value, list):
            # Plain integers, booleans and nulls cannot be wrong, and skipping
            # them saves most of the walk in long arrays of numbers.
            pending.extend(
                ((node, index), item, False)
                for index, item in reversed(list(enumerate(value)))
                if item is not None and not isinstance(item, int)
            )
    return None


def _lone_surrogate(path: str, surrogate: str, *, in_key: bool) -> JsonProblem:
    code = ord(surrogate)
    escape = f"\\u{code:04x}"
    if code < 0xDC00:
        description = (
            f"{escape}, a UTF-16 high surrogate escape that no low surrogate follows"
        )
    else:
        description = (
            f"{escape}, a UTF-16 low surrogate escape that no high surrogate precedes"
        )
    container = _describe_location(JsonLocation(path, in_string=True, in_key=in_key))
    return JsonProblem(
        kind="lone_surrogate",
        reason=f"{container} contains {description}",
        fix=_LONE_SURROGATE_FIX,
        path=path,
    )

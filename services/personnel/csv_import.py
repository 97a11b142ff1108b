"""Read a personnel list exported from a spreadsheet; no I/O.

`parse` checks the whole file before anything is stored: it either returns
every row, or raises `InvalidFile` with every problem found, each with its
line (1 is the header line), column and what to do about it.

Rules, as documented for administrators:
- Encoding: UTF-8, with or without byte order mark, unless the caller asks
  for Windows-1252. Bytes that are invalid in the chosen encoding reject the
  file, naming each line, and so does UTF-8 text sent as Windows-1252, so
  nothing is ever stored as mojibake.
- Separator: `;` or `,`, chosen by the caller or detected from the header
  line. Fields may be quoted with `"`, and a quoted field may contain the
  separator, quotes (doubled) and line breaks.
- Header names are matched case-insensitively, ignoring spaces, `-`, `_`
  and `.`: `Personalnummer`/`Personal-Nr`/`personnel_number`, `Name`, and
  optionally `Aktiv`/`active`. Other columns are ignored and reported.
- Values are trimmed; personnel numbers stay text, so leading zeros stay.
  Names are stored in Unicode NFC. Lines whose cells are all blank are
  skipped.
"""

from __future__ import annotations

import csv
import io
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from services.personnel import personnel_number

Encoding = Literal["utf-8", "windows-1252"]
Delimiter = Literal["auto", ";", ","]

MAX_ROWS = 100_000
"""Most people one file may list; a larger list is split into files."""

MAX_ERRORS = 1000
"""Most problems listed in one rejection; the count still covers them all."""

MAX_NAME_LENGTH = 200
"""Same limit as the `name` column of `personnel.people`."""

UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")

NUMBER_COLUMN = "Personalnummer"
NAME_COLUMN = "Name"
ACTIVE_COLUMN = "Aktiv"

_HEADER_ALIASES = {
    NUMBER_COLUMN: frozenset(
        {"personalnummer", "personalnr", "persnr", "personnelnumber", "personnelno"}
    ),
    NAME_COLUMN: frozenset({"name"}),
    ACTIVE_COLUMN: frozenset({"aktiv", "active"}),
}
_HEADER_HINTS = {
    NUMBER_COLUMN: "Personalnummer, Personal-Nr or personnel_number",
    NAME_COLUMN: "Name",
}

_TRUE = frozenset({"1", "ja", "j", "yes", "y", "true", "wahr", "x"})
_FALSE = frozenset({"0", "nein", "n", "no", "false", "falsch"})


@dataclass(frozen=True)
class Problem:
    """One reason a file is rejected."""

    line: int | None
    """Line in the file, 1 being the header; None for the file as a whole."""
    column: str | None
    """Header name of the column as the file spells it, if one is concerned."""
    message: str


@dataclass(frozen=True)
class Row:
    line: int
    personnel_number: str
    name: str
    active: bool


@dataclass(frozen=True)
class ParsedFile:
    rows: list[Row]
    encoding: Encoding
    delimiter: str
    has_active_column: bool
    ignored_columns: list[str] = field(default_factory=list)


class InvalidFile(ValueError):
    """The file cannot be imported; `problems` lists every reason found."""

    def __init__(self, problems: Sequence[Problem], total: int | None = None) -> None:
        self.problems = list(problems)[:MAX_ERRORS]
        self.total = len(problems) if total is None else total
        super().__init__(f"file rejected with {self.total} problem(s)")


class _Problems:
    """Problems found so far. Only the first `MAX_ERRORS` are kept, so a file
    of a million bad lines costs no more memory than one of a thousand."""

    def __init__(self) -> None:
        self.items: list[Problem] = []
        self.total = 0

    def add(self, line: int | None, column: str | None, message: str) -> None:
        self.total += 1
        if len(self.items) < MAX_ERRORS:
            self.items.append(Problem(line=line, column=column, message=message))

    def raise_if_any(self) -> None:
        if self.items:
            ordered = sorted(
                self.items, key=lambda p: (p.line is not None, p.line or 0)
            )
            raise InvalidFile(ordered, total=self.total)


def parse(data: bytes, *, encoding: Encoding, delimiter: Delimiter) -> ParsedFile:
    """Decode, split and check a personnel list; raise `InvalidFile` on any
    problem, listing all of them."""
    text, hinted = _drop_separator_hint(_decode(data, encoding))
    chosen = _choose_delimiter(text, hinted if delimiter == "auto" else delimiter)
    problems = _Problems()
    records = _records(text, chosen, problems)

    # The header is the first record with a non-blank cell.
    header_line, header = 1, []
    for line, cells in records:
        header_line, header = line, cells
        if any(cell.strip() for cell in cells):
            break
    columns, ignored = _columns(header_line, header, chosen, problems)
    problems.raise_if_any()

    numbers: list[tuple[int, str]] = []
    rows = _rows(records, header, columns, problems, numbers)
    if not rows and not problems.items:
        problems.add(
            None,
            None,
            "the file lists no people below its header line; an empty list "
            "is rejected so that deactivate_missing cannot empty a tenant",
        )
    _check_duplicates(numbers, header[columns[NUMBER_COLUMN]], problems)
    problems.raise_if_any()
    return ParsedFile(
        rows=rows,
        encoding=encoding,
        delimiter=chosen,
        has_active_column=ACTIVE_COLUMN in columns,
        ignored_columns=ignored,
    )


# --- decoding ---------------------------------------------------------------


def _decode(data: bytes, encoding: Encoding) -> str:
    if data.startswith(UTF16_BOMS):
        raise InvalidFile(
            [
                Problem(
                    line=1,
                    column=None,
                    message="the file is UTF-16 text; save it as "
                    "'CSV UTF-8 (comma delimited)' or as Windows-1252 CSV",
                )
            ]
        )
    # CSV text has no NUL byte in its first line, but UTF-16 text without a
    # byte order mark and binary files such as .xlsx workbooks have them.
    if b"\x00" in data.partition(b"\n")[0]:
        raise InvalidFile(
            [
                Problem(
                    line=1,
                    column=None,
                    message="the first line contains NUL bytes, so the file "
                    "is not CSV text but UTF-16 text or a spreadsheet such as "
                    ".xlsx; save it as 'CSV UTF-8 (comma delimited)' or as "
                    "Windows-1252 CSV",
                )
            ]
        )
    if data.startswith(UTF8_BOM):
        if encoding == "windows-1252":
            raise InvalidFile(
                [
                    Problem(
                        line=1,
                        column=None,
                        message="the file starts with a UTF-8 byte order mark "
                        "but encoding=windows-1252 was requested; send "
                        "encoding=utf-8",
                    )
                ]
            )
        data = data[len(UTF8_BOM) :]
    if encoding == "windows-1252":
        _reject_utf8(data)
    codec = "utf-8" if encoding == "utf-8" else "cp1252"
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        pass
    # Decode again line by line, only to name every line that fails.
    problems = _Problems()
    for number, raw_line in enumerate(data.split(b"\n"), start=1):
        try:
            raw_line.decode(codec)
        except UnicodeDecodeError as exc:
            problems.add(number, None, _decode_message(raw_line, exc, encoding))
    problems.raise_if_any()
    # Not reached: a text that fails as a whole fails on some line, because
    # b"\n" never occurs inside a UTF-8 or Windows-1252 character.
    raise AssertionError


MAX_MISREAD_LINES = 5
"""Maximum lines named when a UTF-8 file is sent as Windows-1252. The first
problem counts all of them."""


def _reject_utf8(data: bytes) -> None:
    """Reject a file sent as Windows-1252 that is UTF-8 with non-ASCII text.

    Almost every byte is a Windows-1252 character, so such a file would
    decode without error and store "Jörg" as "JÃ¶rg". Text written in
    Windows-1252 is practically never valid UTF-8 once it contains a letter
    such as ö, because UTF-8 needs that byte to be followed by a byte
    between 0x80 and 0xBF, which in Windows-1252 is a rare symbol.
    """
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return
    problems = _Problems()
    lines = [
        number
        for number, raw_line in enumerate(data.split(b"\n"), start=1)
        if not raw_line.isascii()
    ]
    problems.add(
        None,
        None,
        f"the file is UTF-8 text, with letters beyond ASCII in {len(lines)} "
        "lines, which encoding=windows-1252 would store garbled (ö as Ã¶); "
        "send it without encoding=windows-1252, or with encoding=utf-8",
    )
    for number in lines[:MAX_MISREAD_LINES]:
        problems.add(number, None, "this line contains UTF-8 text")
    problems.raise_if_any()


def _decode_message(
    raw_line: bytes, exc: UnicodeDecodeError, encoding: Encoding
) -> str:
    byte = raw_line[exc.start]
    position = exc.start + 1
    if encoding == "utf-8":
        return (
            f"byte 0x{byte:02X} at byte {position} of the line is not valid "
            "UTF-8; save the file as 'CSV UTF-8', or send encoding=windows-1252 "
            "if it was saved as Windows-1252 (Excel's 'CSV (semicolon "
            "delimited)')"
        )
    return (
        f"byte 0x{byte:02X} at byte {position} of the line is not a "
        "Windows-1252 character; check the file's encoding and send "
        "encoding=utf-8 if it is UTF-8"
    )


# --- separator and header ---------------------------------------------------


def _drop_separator_hint(text: str) -> tuple[str, Delimiter]:
    """Blank out a leading `sep=;` line, which Excel writes and reads to
    fix the separator; return the text and the separator it names."""
    first, newline, rest = text.partition("\n")
    hint = first.strip().casefold()
    if hint in ("sep=;", "sep=,"):
        return newline + rest, ";" if hint.endswith(";") else ","
    return text, "auto"


def _choose_delimiter(text: str, requested: Delimiter) -> str:
    """Return the requested separator, or detect it from the header line.

    Detection splits the header line with each candidate and takes the one
    under which the required columns are found. If that finds no single
    candidate, it takes the one that occurs more often outside quotes, so
    that the missing-column error shows sensible column names.
    """
    if requested != "auto":
        return requested
    header_line = next((line for line in text.splitlines() if line.strip()), "")
    found = [
        candidate
        for candidate in (";", ",")
        if _required_found(_split_header(header_line, candidate))
    ]
    if len(found) == 1:
        return found[0]
    counts = {c: _count_outside_quotes(header_line, c) for c in (";", ",")}
    return ";" if counts[";"] >= counts[","] else ","


def _split_header(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def _count_outside_quotes(line: str, character: str) -> int:
    count, quoted = 0, False
    for ch in line:
        if ch == '"':
            quoted = not quoted
        elif ch == character and not quoted:
            count += 1
    return count


def _header_key(name: str) -> str:
    folded = name.replace("\ufeff", "").strip().casefold()
    return "".join(ch for ch in folded if ch not in " -_.")


def _column_of(name: str) -> str | None:
    key = _header_key(name)
    for column, aliases in _HEADER_ALIASES.items():
        if key in aliases:
            return column
    return None


def _required_found(header: Sequence[str]) -> bool:
    found = {_column_of(name) for name in header}
    return NUMBER_COLUMN in found and NAME_COLUMN in found


def _columns(
    line: int, header: list[str], delimiter: str, problems: _Problems
) -> tuple[dict[str, int], list[str]]:
    """Map each known column to its index in the header line."""
    columns: dict[str, int] = {}
    ignored: list[str] = []
    for index, name in enumerate(header):
        column = _column_of(name)
        if column is None:
            if name.strip():
                ignored.append(name.strip())
            continue
        if column in columns:
            first = header[columns[column]].strip()
            problems.add(
                line,
                name.strip(),
                f"column {name.strip()!r} (field {index + 1}) repeats column "
                f"{first!r} (field {columns[column] + 1}); keep one of them",
            )
            continue
        columns[column] = index
    shown = ", ".join(repr(name) for name in header) or "nothing"
    for column, hint in _HEADER_HINTS.items():
        if column not in columns:
            problems.add(
                line,
                column,
                f"missing column: expected a header named {hint}; with "
                f"separator {delimiter!r} the header line contains {shown}. "
                "Add the column, or choose the separator with delimiter=; or "
                "delimiter=,",
            )
    return columns, ignored


# --- rows -------------------------------------------------------------------


def _records(
    text: str, delimiter: str, problems: _Problems
) -> Iterator[tuple[int, list[str]]]:
    """Yield `(first line, cells)` of each record; stop at a CSV syntax error."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            problems.add(line, None, _syntax_message(exc, delimiter))
            return
        yield line, cells
        line = reader.line_num + 1


def _syntax_message(exc: csv.Error, delimiter: str) -> str:
    # In strict mode the csv module reports a quoted field that is still open
    # at the end of the file as "unexpected end of data". That reads as if
    # the file were cut off, but the open quote is what needs fixing.
    if str(exc) == "unexpected end of data":
        return (
            'a field in this line opens a quote (") that is never closed, so '
            "the rest of the file was read as part of that field; close the "
            'quote, and double each " inside a quoted field'
        )
    return (
        f"the line is not valid CSV ({exc}); a field that contains "
        f'{delimiter!r}, a quote or a line break must be enclosed in "…" '
        'and each " inside it doubled'
    )


def _rows(
    records: Iterator[tuple[int, list[str]]],
    header: list[str],
    columns: dict[str, int],
    problems: _Problems,
    numbers: list[tuple[int, str]],
) -> list[Row]:
    """Return the rows without problems, and add the line and personnel
    number of every line with a valid number to `numbers`, so that a
    repeated number is reported even on a line with other problems."""
    rows: list[Row] = []
    for line, cells in records:
        if not any(cell.strip() for cell in cells):
            continue
        if len(rows) >= MAX_ROWS:
            problems.add(
                line,
                None,
                f"the file lists more than {MAX_ROWS} people; split it into "
                "several files",
            )
            break
        row = _row(line, cells, header, columns, problems, numbers)
        if row is not None:
            rows.append(row)
    return rows


def _cell(cells: list[str], index: int) -> str:
    return cells[index] if index < len(cells) else ""


def _row(
    line: int,
    cells: list[str],
    header: list[str],
    columns: dict[str, int],
    problems: _Problems,
    numbers: list[tuple[int, str]],
) -> Row | None:
    before = problems.total
    extra = [cell for cell in cells[len(header) :] if cell.strip()]
    if extra:
        problems.add(
            line,
            None,
            f"the line has {len(cells)} fields but the header has {len(header)}; "
            "enclose fields that contain the separator in double quotes",
        )
        return None

    number_column = header[columns[NUMBER_COLUMN]].strip()
    raw_number = _cell(cells, columns[NUMBER_COLUMN])
    number = ""
    try:
        number = personnel_number.normalise(raw_number)
        numbers.append((line, number))
    except personnel_number.InvalidPersonnelNumber as exc:
        fix = (
            "fill in the personnel number or delete the line"
            if not raw_number.strip()
            else "correct it in the file"
        )
        problems.add(line, number_column, f"{exc}; {fix}")

    name_column = header[columns[NAME_COLUMN]].strip()
    name = unicodedata.normalize("NFC", _cell(cells, columns[NAME_COLUMN]).strip())
    if not name:
        problems.add(line, name_column, "name is empty; fill in the person's name")
    elif len(name) > MAX_NAME_LENGTH:
        problems.add(
            line,
            name_column,
            f"name has {len(name)} characters, at most {MAX_NAME_LENGTH}; shorten it",
        )
    elif any(unicodedata.category(ch).startswith("C") for ch in name):
        problems.add(
            line,
            name_column,
            f"name {name!r} contains control characters such as line breaks; "
            "remove them",
        )

    active = True
    if ACTIVE_COLUMN in columns:
        active_column = header[columns[ACTIVE_COLUMN]].strip()
        value = _cell(cells, columns[ACTIVE_COLUMN]).strip()
        if value.casefold() in _FALSE:
            active = False
        elif value.casefold() not in _TRUE:
            problems.add(
                line,
                active_column,
                f"value {value!r} is neither yes nor no; write ja/nein, "
                "yes/no, 1/0 or true/false",
            )
    if problems.total > before:
        return None
    return Row(line=line, personnel_number=number, name=name, active=active)


def _check_duplicates(
    numbers: list[tuple[int, str]], number_column: str, problems: _Problems
) -> None:
    lines: dict[str, list[int]] = {}
    for line, number in numbers:
        lines.setdefault(number, []).append(line)
    for number, found in lines.items():
        if len(found) < 2:
            continue
        for line in found:
            # Name a few of the other lines, so that a file with thousands of
            # repeats gets a report that grows linearly, not quadratically.
            named = [other for other in found[:6] if other != line][:5]
            others = ", ".join(str(other) for other in named)
            if len(found) - 1 > len(named):
                others += f" and {len(found) - 1 - len(named)} more"
            problems.add(
                line,
                number_column.strip(),
                f"personnel number {number!r} is also on line {others}; "
                "keep one line per person",
            )

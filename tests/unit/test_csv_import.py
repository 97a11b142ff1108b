"""Unit tests for `services.personnel.csv_import.parse`, the personnel CSV reader.

A file either yields every row or is rejected with every problem, each with
its line (1 is the header) and column. The end-to-end tests in
`tests/e2e/test_admin_personnel.py` send the same kinds of files through the
admin API and check that nothing is stored on rejection.
"""

from __future__ import annotations

import pytest

from services.personnel import csv_import
from services.personnel.csv_import import (
    MAX_ERRORS,
    Delimiter,
    Encoding,
    InvalidFile,
    ParsedFile,
    Problem,
    Row,
    parse,
)


def parsed(
    data: bytes, encoding: Encoding = "utf-8", delimiter: Delimiter = "auto"
) -> ParsedFile:
    try:
        return parse(data, encoding=encoding, delimiter=delimiter)
    except InvalidFile as exc:
        pytest.fail(f"{data!r} was rejected: {exc.problems}")


def problems(
    data: bytes, encoding: Encoding = "utf-8", delimiter: Delimiter = "auto"
) -> list[Problem]:
    with pytest.raises(InvalidFile) as caught:
        parse(data, encoding=encoding, delimiter=delimiter)
    return caught.value.problems


# Encodings


def test_utf8_bom_not_part_of_header() -> None:
    data = b"\xef\xbb\xbfPersonalnummer;Name\r\n004711;J\xc3\xb6rg B\xc3\xa4cker\r\n"
    result = parsed(data)
    assert result.rows == [
        Row(line=2, personnel_number="004711", name="Jörg Bäcker", active=True)
    ]
    assert result.delimiter == ";"
    assert result.ignored_columns == []


def test_utf8_without_bom() -> None:
    result = parsed("Personalnummer;Name\n004711;Jörg Bäcker\n".encode())
    assert [row.name for row in result.rows] == ["Jörg Bäcker"]


def test_windows_1252_decoded_when_requested() -> None:
    data = b"Personalnummer;Name\r\n004711;J\xf6rg B\xe4cker\r\n"
    result = parsed(data, encoding="windows-1252")
    assert result.rows[0].name == "Jörg Bäcker"
    assert result.encoding == "windows-1252"


def test_utf8_as_cp1252_rejected() -> None:
    data = (
        b"Personalnummer;Name\r\n004710;Anna\r\n"
        b"004711;J\xc3\xb6rg B\xc3\xa4cker\r\n004712;Ren\xc3\xa9e\r\n"
    )
    found = problems(data, encoding="windows-1252")
    assert [(p.line, p.column) for p in found] == [(None, None), (3, None), (4, None)]
    assert "UTF-8 text" in found[0].message
    assert "in 2 lines" in found[0].message
    assert "without encoding=windows-1252" in found[0].message
    assert parsed(data).rows[1].name == "Jörg Bäcker"


def test_utf8_as_cp1252_names_first_lines() -> None:
    rows = b"".join(b"%06d;J\xc3\xb6rg\n" % number for number in range(40))
    found = problems(b"Personalnummer;Name\n" + rows, encoding="windows-1252")
    assert "in 40 lines" in found[0].message
    assert [p.line for p in found[1:]] == [2, 3, 4, 5, 6]


def test_ascii_file_as_windows_1252_accepted() -> None:
    data = b"Personalnummer;Name\r\n004711;Anna Muster\r\n"
    assert parsed(data, encoding="windows-1252").rows[0].name == "Anna Muster"


def test_windows_1252_as_utf8_rejected_with_line() -> None:
    data = b"Personalnummer;Name\r\n004710;Anna\r\n004711;J\xf6rg B\xe4cker\r\n"
    [problem] = problems(data)
    assert problem.line == 3
    assert "0xF6" in problem.message
    assert "encoding=windows-1252" in problem.message


def test_every_undecodable_line_listed() -> None:
    data = b"Personalnummer;Name\n1;B\xe4r\n2;Anna\n3;M\xfcller\n"
    assert [p.line for p in problems(data)] == [2, 4]


def test_utf8_bom_with_windows_1252_option_rejected() -> None:
    data = b"\xef\xbb\xbfPersonalnummer;Name\n004711;Anna\n"
    [problem] = problems(data, encoding="windows-1252")
    assert problem.line == 1
    assert "encoding=utf-8" in problem.message


def test_utf16_rejected() -> None:
    data = "Personalnummer;Name\n1;Anna\n".encode("utf-16")
    [problem] = problems(data)
    assert "UTF-16" in problem.message


@pytest.mark.parametrize(
    "data",
    [
        "Personalnummer;Name\n1;Anna\n".encode("utf-16-le"),
        "Personalnummer;Name\n1;Anna\n".encode("utf-16-be"),
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb5\x91",
    ],
    ids=["utf-16-le", "utf-16-be", "xlsx"],
)
@pytest.mark.parametrize("encoding", ["utf-8", "windows-1252"])
def test_not_text_rejected_as_file(data: bytes, encoding: Encoding) -> None:
    [problem] = problems(data, encoding=encoding)
    assert problem.line == 1
    assert problem.column is None
    assert "not CSV text" in problem.message
    assert "CSV UTF-8" in problem.message


def test_names_normalised_to_nfc() -> None:
    decomposed = "Jo\u0308rg"
    result = parsed(f"Personalnummer;Name\n1;{decomposed}\n".encode())
    assert result.rows[0].name == "J\u00f6rg"


# Separators and quoting


def test_quoted_semicolon_stays_in_field() -> None:
    result = parsed(b'Personalnummer;Name\n004712;"Muster; Anna"\n')
    assert result.rows == [
        Row(line=2, personnel_number="004712", name="Muster; Anna", active=True)
    ]


def test_comma_file_detected() -> None:
    result = parsed(b'Personalnummer,Name\n004712,"Muster, Anna"\n004713,Bea\n')
    assert result.delimiter == ","
    assert [row.name for row in result.rows] == ["Muster, Anna", "Bea"]


def test_comma_in_semicolon_header_detected_by_columns() -> None:
    # The header has one of each separator; only `;` yields both columns.
    result = parsed(b"Personalnummer;Name;Abteilung, Team\n1;Anna;IT, Support\n")
    assert result.delimiter == ";"
    assert result.ignored_columns == ["Abteilung, Team"]


def test_chosen_delimiter_used() -> None:
    result = parsed(b"Personalnummer,Name\n1,Anna\n", delimiter=",")
    assert result.rows[0].name == "Anna"


def test_wrong_chosen_delimiter_names_header() -> None:
    found = problems(b"Personalnummer,Name\n1,Anna\n", delimiter=";")
    assert {p.column for p in found} == {"Personalnummer", "Name"}
    assert all(p.line == 1 for p in found)
    assert "'Personalnummer,Name'" in found[0].message


def test_excel_separator_hint_line() -> None:
    result = parsed(b"sep=,\nPersonalnummer,Name\n1,Anna\n")
    assert result.delimiter == ","
    assert result.rows == [Row(line=3, personnel_number="1", name="Anna", active=True)]


def test_quoted_line_break_keeps_line_numbers() -> None:
    data = b'Personalnummer;Name;Notiz\n1;Anna;"zwei\nZeilen"\n2;Bea;x\n'
    result = parsed(data)
    assert [(row.line, row.name) for row in result.rows] == [(2, "Anna"), (4, "Bea")]


def test_line_break_in_name_rejected() -> None:
    [problem] = problems(b'Personalnummer;Name\n1;"Anna\nMaria"\n')
    assert problem.line == 2
    assert "control characters" in problem.message


def test_unquoted_separator_in_name_rejected() -> None:
    [problem] = problems(b"Personalnummer;Name\n004712;Muster; Anna\n")
    assert problem.line == 2
    assert "3 fields" in problem.message


def test_unclosed_quote_rejected() -> None:
    [problem] = problems(b'Personalnummer;Name\n1;"Anna\n2;Bea\n')
    assert problem.line == 2
    assert "never closed" in problem.message
    assert "end of data" not in problem.message


def test_other_quoting_error_named() -> None:
    [problem] = problems(b'Personalnummer;Name\n1;"An"na\n')
    assert problem.line == 2
    assert "not valid CSV" in problem.message


# Headers


@pytest.mark.parametrize(
    "header",
    [
        b"Personalnummer;Name",
        b"personalnummer;NAME",
        b"Personal-Nr;Name",
        b"Personal-Nr.;Name",
        b"personnel_number;name",
        b"Personnel Number;Name",
        b" Personalnummer ; Name ",
    ],
)
def test_header_spellings_accepted(header: bytes) -> None:
    result = parsed(header + b"\n004711;Anna\n")
    assert result.rows[0].personnel_number == "004711"


def test_missing_name_column() -> None:
    [problem] = problems(b"Personalnummer;Vorname\n1;Anna\n")
    assert problem.line == 1
    assert problem.column == "Name"
    assert "missing column" in problem.message


def test_repeated_column_rejected() -> None:
    [problem] = problems(b"Personalnummer;Name;Name\n1;Anna;Bea\n")
    assert problem.line == 1
    assert "repeats" in problem.message


def test_unknown_columns_ignored_and_reported() -> None:
    result = parsed(b"Abteilung;Personalnummer;Name\nIT;1;Anna\n")
    assert result.ignored_columns == ["Abteilung"]
    assert result.rows[0].personnel_number == "1"


# Values


def test_leading_zeros_and_slash_kept() -> None:
    result = parsed(b"Personalnummer;Name\n0004711;Anna\n00/47;Bea\n")
    assert [row.personnel_number for row in result.rows] == ["0004711", "00/47"]


def test_values_trimmed() -> None:
    result = parsed(b"Personalnummer;Name\n  004711 ;  Anna Muster  \n")
    assert result.rows[0].personnel_number == "004711"
    assert result.rows[0].name == "Anna Muster"


def test_blank_lines_skipped() -> None:
    result = parsed(b"Personalnummer;Name\n\n1;Anna\n;\n;;\n2;Bea\n")
    assert [row.line for row in result.rows] == [3, 6]


@pytest.mark.parametrize(
    ("value", "active"),
    [
        ("ja", True),
        ("Nein", False),
        ("1", True),
        ("0", False),
        ("true", True),
        ("no", False),
    ],
)
def test_active_column_values(value: str, active: bool) -> None:
    result = parsed(f"Personalnummer;Name;Aktiv\n1;Anna;{value}\n".encode())
    assert result.has_active_column
    assert result.rows[0].active is active


def test_active_column_invalid_value() -> None:
    [problem] = problems(b"Personalnummer;Name;active\n1;Anna;maybe\n")
    assert problem.line == 2
    assert problem.column == "active"
    assert "'maybe'" in problem.message


def test_without_active_column_rows_active() -> None:
    result = parsed(b"Personalnummer;Name\n1;Anna\n")
    assert not result.has_active_column
    assert result.rows[0].active


# Whole-file rejections


def test_duplicates_name_both_lines() -> None:
    found = problems(b"Personalnummer;Name\n004711;Anna\n004712;Bea\n004711;Carl\n")
    assert [(p.line, p.column) for p in found] == [
        (2, "Personalnummer"),
        (4, "Personalnummer"),
    ]
    assert "also on line 4" in found[0].message
    assert "also on line 2" in found[1].message


def test_duplicate_on_invalid_line_reported() -> None:
    found = problems(b"Personalnummer;Name\n004711;Anna\n004711;\n")
    assert [(p.line, p.column) for p in found] == [
        (2, "Personalnummer"),
        (3, "Name"),
        (3, "Personalnummer"),
    ]
    assert "also on line 3" in found[0].message
    assert "also on line 2" in found[2].message


def test_blank_number_rejected() -> None:
    [problem] = problems(b"Personalnummer;Name\n004711;Anna\n;Bea\n")
    assert problem.line == 3
    assert problem.column == "Personalnummer"
    assert "empty" in problem.message


def test_all_problems_listed_in_line_order() -> None:
    data = b"Personalnummer;Name\n004711;Anna\n;Bea\n004711;Carl\n004713;\n"
    found = problems(data)
    assert [(p.line, p.column) for p in found] == [
        (2, "Personalnummer"),
        (3, "Personalnummer"),
        (4, "Personalnummer"),
        (5, "Name"),
    ]


def test_too_long_number_and_name() -> None:
    data = f"Personalnummer;Name\n{'9' * 65};Anna\n1;{'x' * 201}\n".encode()
    found = problems(data)
    assert [(p.line, p.column) for p in found] == [(2, "Personalnummer"), (3, "Name")]
    assert "at most 64" in found[0].message
    assert "at most 200" in found[1].message


def test_header_only_rejected() -> None:
    [problem] = problems(b"Personalnummer;Name\n")
    assert problem.line is None
    assert "no people" in problem.message


def test_error_list_capped_count_kept() -> None:
    lines = "".join(f";Name {n}\n" for n in range(MAX_ERRORS + 5))
    with pytest.raises(InvalidFile) as caught:
        parse(
            f"Personalnummer;Name\n{lines}".encode(), encoding="utf-8", delimiter="auto"
        )
    assert len(caught.value.problems) == MAX_ERRORS
    assert caught.value.total == MAX_ERRORS + 5


def test_many_repeats_give_bounded_report() -> None:
    """A file of one number repeated 20,000 times lists at most MAX_ERRORS
    problems, each naming five other lines and how many more there are."""
    data = ("Personalnummer;Name\n" + "004711;Anna\n" * 20_000).encode()

    with pytest.raises(csv_import.InvalidFile) as caught:
        csv_import.parse(data, encoding="utf-8", delimiter="auto")

    assert caught.value.total == 20_000
    assert len(caught.value.problems) == csv_import.MAX_ERRORS
    assert "and 19994 more" in caught.value.problems[0].message

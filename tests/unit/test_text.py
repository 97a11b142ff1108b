"""Unit tests for `shared.text`: the control-character check agrees with
the Unicode database on every code point."""

from __future__ import annotations

import sys
import unicodedata

from shared.text import LINE_BREAKS_AND_TABS, has_control_character


def test_matches_unicode_categories() -> None:
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        expected = unicodedata.category(ch) in ("Cc", "Cs")
        assert has_control_character(f"a{ch}b") is expected, hex(code)


def test_allowed_characters_pass() -> None:
    text = "Zeile 1\r\nZeile 2\tEnde"
    assert not has_control_character(text, LINE_BREAKS_AND_TABS)
    assert has_control_character(text)


def test_disallowed_after_allowed_found() -> None:
    assert has_control_character("a\nb\x00", LINE_BREAKS_AND_TABS)


def test_format_characters_pass() -> None:
    # Zero-width joiners and direction marks (category Cf) occur in names
    # and emoji sequences.
    assert not has_control_character("👩\u200d💻 \u200eA")

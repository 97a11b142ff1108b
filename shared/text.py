"""Checks on free text before it is stored."""

from __future__ import annotations

import unicodedata

LINE_BREAKS_AND_TABS = frozenset("\t\n\r")


def has_control_character(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Return whether `text` contains a control or other non-printing
    character (Unicode category C*) that is not in `allowed`.

    PostgreSQL rejects U+0000 in `text` columns, and the other control
    characters have no place in names or tickets, so they are refused at the
    edge with a field error instead of failing later in storage.
    """
    return any(
        unicodedata.category(ch) in ("Cc", "Cs") and ch not in allowed for ch in text
    )

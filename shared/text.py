"""Checks on free text before it is stored."""

from __future__ import annotations

import re

LINE_BREAKS_AND_TABS = frozenset("\t\n\r")

CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""Unicode categories Cc (C0 and C1 controls) and Cs (surrogates), as one
character class, so that a form is scanned in C rather than per character
in Python."""


def has_control_character(text: str, allowed: frozenset[str] = frozenset()) -> bool:
    """Return whether `text` contains a control character or a surrogate
    (Unicode category Cc or Cs) that is not in `allowed`.

    PostgreSQL rejects U+0000 in `text` columns, and the other control
    characters have no place in names or tickets, so they are refused at the
    edge with a field error instead of failing later in storage.
    """
    return any(
        match.group() not in allowed for match in CONTROL_CHARACTERS.finditer(text)
    )

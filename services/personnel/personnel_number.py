"""Personnel numbers: text compared exactly, after trimming outer whitespace."""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 64


class InvalidPersonnelNumber(ValueError):
    """A personnel number is empty, too long or contains control characters."""


def normalise(raw: str) -> str:
    """Trim surrounding whitespace and check the rest; nothing else changes.

    Leading zeros stay, because `004711` and `4711` are different people.
    """
    number = raw.strip()
    if not number:
        msg = "personnel number is empty"
        raise InvalidPersonnelNumber(msg)
    if len(number) > MAX_LENGTH:
        msg = f"personnel number has {len(number)} characters, at most {MAX_LENGTH}"
        raise InvalidPersonnelNumber(msg)
    if any(unicodedata.category(ch).startswith("C") for ch in number):
        msg = f"personnel number {number!r} contains control characters"
        raise InvalidPersonnelNumber(msg)
    return number


def normalise_name(raw: str) -> str:
    """Trim a person's name and store it NFC-normalised, so that `Jörg` typed
    on a Mac and on Windows is the same text."""
    return unicodedata.normalize("NFC", raw.strip())

"""Ticket references that a reporter can read out on the phone."""

from __future__ import annotations

import uuid

# Crockford's base32: no I, L, O or U, so the reference survives being read
# aloud or typed from a screenshot.
_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CHARACTERS = 10


def for_submission(submission_id: uuid.UUID) -> str:
    """Derive the reference of a submission, e.g. `T-7KQ2X-M9R4P`.

    The reference is a function of the submission id, so the gateway can show
    it before the ticket is stored and a repeated post shows the same one.
    It carries 50 random bits; it is indexed but not unique, because the
    submission id is the key.
    """
    value = submission_id.int >> (128 - 5 * _CHARACTERS)
    characters = []
    for _ in range(_CHARACTERS):
        characters.append(_ALPHABET[value & 31])
        value >>= 5
    text = "".join(reversed(characters))
    return f"T-{text[:5]}-{text[5:]}"

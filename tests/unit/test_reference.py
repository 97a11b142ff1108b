"""Unit tests for the ticket references of `shared.reference`."""

from __future__ import annotations

import re
import uuid

from shared.reference import for_submission

# Crockford's base32 alphabet: digits and capitals without I, L, O and U.
FORMAT = re.compile(r"T-[0-9A-HJKMNP-TV-Z]{5}-[0-9A-HJKMNP-TV-Z]{5}")


def test_format_for_random_ids() -> None:
    for _ in range(1_000):
        reference = for_submission(uuid.uuid4())
        assert FORMAT.fullmatch(reference), reference


def test_same_id_same_reference() -> None:
    submission_id = uuid.UUID("0b8f5a52-2f4e-4d62-9a43-5b1c7e9d0a11")
    copy = uuid.UUID(str(submission_id).upper())
    assert for_submission(submission_id) == for_submission(copy)


def test_known_values() -> None:
    assert for_submission(uuid.UUID(int=0)) == "T-00000-00000"
    assert for_submission(uuid.UUID(int=(1 << 128) - 1)) == "T-ZZZZZ-ZZZZZ"
    # The first character is the top five bits of the id.
    assert for_submission(uuid.UUID(int=1 << 123)) == "T-10000-00000"
    assert for_submission(uuid.UUID(int=31 << 123)) == "T-Z0000-00000"
    # The last character is bits 78 to 82, counted from the least significant.
    assert for_submission(uuid.UUID(int=1 << 78)) == "T-00000-00001"
    assert for_submission(uuid.UUID(int=18 << 78)) == "T-00000-0000J"


def test_low_bits_do_not_change_reference() -> None:
    # Only the top 50 bits count, so the reference is not a unique key.
    assert for_submission(uuid.UUID(int=(1 << 78) - 1)) == "T-00000-00000"


def test_each_top_bit_changes_reference() -> None:
    base = for_submission(uuid.UUID(int=0))
    references = {for_submission(uuid.UUID(int=1 << bit)) for bit in range(78, 128)}
    assert base not in references
    assert len(references) == 50


def test_no_ambiguous_letters() -> None:
    characters = set()
    for value in range(32):
        characters |= set(for_submission(uuid.UUID(int=value << 123))[2])
    assert characters == set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")

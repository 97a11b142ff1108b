"""Random ids cut from blocks of random bytes.

`uuid.uuid4()` reads the system's random source once per id and builds a
`uuid.UUID`. Reading the bytes of `per_read` ids at once and formatting
them directly costs a fraction of that, which counts where every request
or stored ticket takes an id.
"""

from __future__ import annotations

import os
import weakref


class RandomIds:
    """Ids from 16 random bytes each, read in blocks of `per_read` ids.

    A forked child drops the block it inherited, so it does not repeat the
    parent's ids.
    """

    def __init__(self, per_read: int = 1024) -> None:
        self._block = b""
        self._offset = 0
        self._per_read = per_read
        _SOURCES.add(self)

    def forget_block(self) -> None:
        """Drop the random bytes read so far, so that the next id reads new ones."""
        self._block, self._offset = b"", 0

    def hex(self) -> str:
        """Return 32 random hex digits."""
        return self._next_bytes().hex()

    def uuid4(self) -> str:
        """Return a random UUID (version 4) as `uuid.UUID` writes it."""
        digits = self._next_bytes().hex()
        # Version 4 sets the 13th digit to 4 and the top two bits of the 17th
        # to 10, which leaves 122 random bits, as in `uuid.uuid4()`.
        variant = "89ab"[int(digits[16], 16) & 3]
        return (
            f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}"
            f"-{variant}{digits[17:20]}-{digits[20:]}"
        )

    def _next_bytes(self) -> bytes:
        if self._offset >= len(self._block):
            self._block, self._offset = os.urandom(16 * self._per_read), 0
        start, self._offset = self._offset, self._offset + 16
        return self._block[start : self._offset]


_SOURCES: weakref.WeakSet[RandomIds] = weakref.WeakSet()


def _forget_blocks_after_fork() -> None:
    for source in _SOURCES:
        source.forget_block()


os.register_at_fork(after_in_child=_forget_blocks_after_fork)

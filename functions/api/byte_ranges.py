"""The ``Range`` header of a GET (RFC 9110 §14): one byte range, or the whole representation.

A media player asks for ``bytes=0-``, then for ranges where it seeks. One range is answered 206; a
header that is not a byte range, or asks for several ranges, is ignored and the whole object is
answered 200, which the RFC allows; a range that starts at or beyond the end is 416.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ONE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


class Unsatisfiable(ValueError):
    """The range lies outside the object (answer 416 with ``Content-Range: bytes */<size>``)."""


@dataclass(frozen=True, slots=True)
class ByteRange:
    """Bytes [start, end) of an object of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start

    @property
    def content_range(self) -> str:
        """The ``Content-Range`` value of a 206 answer."""
        return f"bytes {self.start}-{self.end - 1}/{self.size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single range ``header`` asks for in an object of ``size`` bytes (``None``: answer it
    whole); raises `Unsatisfiable`."""
    if header is None:
        return None
    match = _ONE.match(header)
    if match is None:
        return None  # not bytes, malformed, or several ranges: the whole object
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # a suffix: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return ByteRange(max(size - suffix, 0), size, size)
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None  # an invalid range is ignored (RFC 9110 §14.1.1)
    if start >= size:
        raise Unsatisfiable(header)
    return ByteRange(start, end, size)

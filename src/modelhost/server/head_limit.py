"""How much of a request head (request line and headers) a server takes: 64 KB, then a 431.

Both HTTP protocols (the model server's, on uvicorn's, and the platform's front door) count a
head with a ``HeadBudget``: its bytes as httptools hands them over, and, for one header line
httptools is still buffering (it hands a header over only when it is whole), the bytes read
while in a head. A read may also hold the end of the previous request, hence the margin.
"""

from __future__ import annotations

MAX_HEAD_BYTES = 64 * 1024
MAX_UNPARSED_HEAD = 16 * MAX_HEAD_BYTES
HEAD_TOO_LARGE = "RequestHeaderFieldsTooLarge"
HEAD_TOO_LARGE_MESSAGE = f"the request line and headers are larger than the limit of {MAX_HEAD_BYTES // 1024} KB"


class HeadTooLarge(Exception):
    """Raised from a parser callback to stop the parser: the head is over MAX_HEAD_BYTES."""


class HeadBudget:
    """The head of the request being parsed, counted (one per connection, reset per request)."""

    __slots__ = ("in_head", "parsed", "read")

    def __init__(self) -> None:
        self.in_head = False  # between a request's first byte and the end of its headers
        self.parsed = 0  # bytes of the request line and headers handed over so far
        self.read = 0  # bytes read while in a head, parsed or not

    def begin(self) -> None:
        self.in_head, self.parsed, self.read = True, 0, 0

    def end(self) -> None:
        self.in_head = False

    def take(self, size: int) -> None:
        """Count ``size`` bytes of the head; HeadTooLarge past the limit (stops the parser)."""
        self.parsed += size
        if self.parsed > MAX_HEAD_BYTES:
            raise HeadTooLarge

    def fed(self, size: int) -> bool:
        """After the parser took a read of ``size`` bytes: True when a head now spans too many."""
        if not self.in_head:
            return False
        self.read += size
        return self.read > MAX_UNPARSED_HEAD

"""What the supervisor and its forked workers tell each other, in anonymous shared memory.

Per worker slot: the worker's last heartbeat (monotonic seconds) and whether it is draining (its
model is stuck; it has stopped accepting and will exit once its requests have timed out). No
pipes or messages: each side reads what the other last wrote.
"""

from __future__ import annotations

import mmap
import struct
import time

_SLOT = struct.Struct("=d?7x")  # heartbeat, draining


class WorkerBoard:
    def __init__(self, slots: int) -> None:
        self._memory = mmap.mmap(-1, _SLOT.size * slots)

    def beat(self, slot: int) -> None:
        _SLOT.pack_into(self._memory, _SLOT.size * slot, time.monotonic(), self.draining(slot))

    def last_beat(self, slot: int) -> float:
        return float(_SLOT.unpack_from(self._memory, _SLOT.size * slot)[0])

    def mark_draining(self, slot: int) -> None:
        _SLOT.pack_into(self._memory, _SLOT.size * slot, self.last_beat(slot), True)

    def draining(self, slot: int) -> bool:
        return bool(_SLOT.unpack_from(self._memory, _SLOT.size * slot)[1])

    def reset(self, slot: int) -> None:
        """A fresh worker takes the slot over."""
        _SLOT.pack_into(self._memory, _SLOT.size * slot, time.monotonic(), False)

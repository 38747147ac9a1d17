"""Identifiers for requests and ledger events: unique, time-ordered, and cheap.

``<prefix>_<16 hex: nanoseconds><8 hex: random per generator><6 hex: counter>``.
Time first, so new rows append to the database indexes on these ids instead of
landing on random pages; the random part (drawn once per generator) separates
processes; the counter separates ids made in the same nanosecond. No system
call per id (``os.urandom`` per request costs a syscall, and with a writer
thread waiting, a GIL hand-off).
"""

from __future__ import annotations

import itertools
import os
import time


class IdGenerator:
    def __init__(self, prefix: str) -> None:
        self.prefix = f"{prefix}_"
        self.node = os.urandom(4).hex()
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self.prefix}{time.time_ns():016x}{self.node}{next(self._counter) & 0xFFFFFF:06x}"

"""Follow the host's load: switch local engines between their calm and contended thread counts.

Every ``interval`` seconds the CPU that processes other than the engines used is read from ``/proc``
(all busy time minus the engines' own): the gateway's Python, an embedding run, a user's programs. When
it stays at or above ``high`` cores for ``rise`` samples the host is contended; below ``low`` for
``fall`` samples it is calm again (hysteresis: a burst does not flap the engines). An engine switches only
while it has nothing in flight — its hot slots are saved first and restored when it is back (about a
second for a small model) — so no request ever fails for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from openmaas.engine.supervisor import cpu_seconds

log = logging.getLogger("openmaas.engine")


def host_busy_seconds() -> float | None:
    """CPU seconds the whole host spent busy (Linux), or None."""
    try:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        values = [int(v) for v in fields]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


class Adaptable(Protocol):
    @property
    def inflight(self) -> int: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def contended(self) -> bool: ...

    async def switch(self, contended: bool) -> None: ...


class LoadWatch:
    def __init__(
        self,
        *,
        interval: float = 1.0,
        high: float = 0.6,
        low: float = 0.3,
        rise: int = 2,
        fall: int = 5,
        clock: Callable[[], float] = time.monotonic,
        busy: Callable[[], float | None] = host_busy_seconds,
    ) -> None:
        """``clock`` and ``busy`` (the host's busy CPU seconds so far): injectable for tests."""
        self.interval, self.high, self.low, self.rise, self.fall = interval, high, low, rise, fall
        self.clock, self.busy = clock, busy
        self.contended = False
        self.others = 0.0  # cores other processes used in the last sample
        self._streak = 0
        self._last: tuple[float, float, float] | None = None

    def sample(self, engine_seconds: float) -> bool:
        """Take one sample (the engines' CPU seconds so far); returns whether the host is contended."""
        busy = self.busy()
        now = self.clock()
        if busy is None:
            return self.contended
        if self._last is not None:
            t0, busy0, engines0 = self._last
            elapsed = max(1e-3, now - t0)
            self.others = max(0.0, (busy - busy0) - (engine_seconds - engines0)) / elapsed
            flips = self.others < self.low if self.contended else self.others >= self.high
            self._streak = self._streak + 1 if flips else 0
            if self._streak >= (self.fall if self.contended else self.rise):
                self.contended, self._streak = not self.contended, 0
                state = "contended" if self.contended else "calm"
                log.info("host %s (other processes: %.2f cores)", state, self.others)
        self._last = (now, busy, engine_seconds)
        return self.contended

    async def run(self, engines: Sequence[Adaptable]) -> None:
        while True:
            await asyncio.sleep(self.interval)
            contended = self.sample(sum(cpu_seconds(e.pid) or 0.0 for e in engines))
            for engine in engines:
                if engine.contended != contended and engine.inflight == 0:
                    await engine.switch(contended)

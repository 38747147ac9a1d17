"""Per-deployment health: requests in flight, EWMA latency, and a circuit breaker.

The breaker opens after ``consecutive_failures`` failures in a row, or when the
error rate over ``window_seconds`` reaches ``error_rate`` (once ``min_requests``
were seen). After ``open_seconds`` it is half-open: one request at a time may
probe it; a success closes it, a failure opens it again. Active health checks
(``HealthMonitor``) probe open circuits in the background, so a deployment
that came back is closed even when no traffic is sent to it.

Only failures that say something about the deployment count (connect errors,
timeouts, 5xx, upstream 429) — never a request the upstream rejected as bad.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from openmaas.settings import BreakerSettings

log = logging.getLogger("openmaas.routing")

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
EWMA_ALPHA = 0.2


class Health:
    def __init__(self, name: str, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.settings = settings
        self.clock = clock
        self.in_flight = 0
        self.latency_ms: float | None = None  # EWMA of successful calls
        self.consecutive_failures = 0
        self.outcomes: deque[tuple[float, bool]] = deque()
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self.clock() - self._opened_at >= self.settings.open_seconds:
            return HALF_OPEN
        return OPEN

    def available(self) -> bool:
        """Whether a request may be sent now (without claiming the half-open probe)."""
        state = self.state
        return state == CLOSED or (state == HALF_OPEN and not self._probing)

    def begin(self) -> bool:
        """Claim a slot for one call; False if the circuit refuses it."""
        state = self.state
        if state == OPEN or (state == HALF_OPEN and self._probing):
            return False
        if state == HALF_OPEN:
            self._probing = True
        self.in_flight += 1
        return True

    def success(self, latency_ms: float) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self.latency_ms = (
            latency_ms if self.latency_ms is None else (EWMA_ALPHA * latency_ms + (1 - EWMA_ALPHA) * self.latency_ms)
        )
        self._record(True)
        self.consecutive_failures = 0
        if self._opened_at is not None:
            log.info("circuit for '%s' closed", self.name)
        self._opened_at, self._probing = None, False

    def failure(self) -> None:
        self.in_flight = max(0, self.in_flight - 1)
        self._record(False)
        self.consecutive_failures += 1
        if self._probing or self._should_open():
            self.open()
        self._probing = False

    def release(self) -> None:
        """The call ended without saying anything about the deployment (bad request, cancelled)."""
        self.in_flight = max(0, self.in_flight - 1)
        self._probing = False

    def open(self) -> None:
        if self._opened_at is None or self.state != OPEN:
            log.warning("circuit for '%s' opened", self.name)
        self._opened_at = self.clock()

    def _record(self, ok: bool) -> None:
        now = self.clock()
        self.outcomes.append((now, ok))
        horizon = now - self.settings.window_seconds
        while self.outcomes and self.outcomes[0][0] < horizon:
            self.outcomes.popleft()

    def _should_open(self) -> bool:
        s = self.settings
        if self.consecutive_failures >= s.consecutive_failures:
            return True
        if len(self.outcomes) < s.min_requests:
            return False
        failed = sum(1 for _, ok in self.outcomes if not ok)
        return failed / len(self.outcomes) >= s.error_rate

    def snapshot(self) -> dict[str, object]:
        return {
            "state": self.state,
            "in_flight": self.in_flight,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "consecutive_failures": self.consecutive_failures,
        }


class HealthMonitor:
    """Probes deployments whose circuit is not closed, every ``interval`` seconds."""

    def __init__(self, health: dict[str, Health], probe: Callable[[str], Awaitable[bool]], interval: float) -> None:
        self.health = health
        self.probe = probe
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="openmaas-health")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> None:
        names = [n for n, h in self.health.items() if h.state != CLOSED]
        results = await asyncio.gather(*(self._probe(n) for n in names))
        for name, healthy in zip(names, results, strict=True):
            health = self.health[name]
            if healthy and health.state == HALF_OPEN and health.begin():
                health.success(health.latency_ms or 0.0)
            elif not healthy and health.state == HALF_OPEN:
                health.open()

    async def _probe(self, name: str) -> bool:
        try:
            return await asyncio.wait_for(self.probe(name), timeout=self.interval)
        except Exception:
            return False

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception as exc:  # never let the monitor die
                log.warning("health check failed: %s", type(exc).__name__)

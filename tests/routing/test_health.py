from __future__ import annotations

import pytest

from openmaas.routing.health import CLOSED, HALF_OPEN, OPEN, Health, HealthMonitor
from openmaas.settings import BreakerSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(**kw: float) -> tuple[Health, Clock]:
    clock = Clock()
    settings = BreakerSettings(**{"consecutive_failures": 3, "open_seconds": 10, "min_requests": 10, **kw})
    return Health("d", settings, clock), clock


def fail(h: Health, n: int = 1) -> None:
    for _ in range(n):
        assert h.begin()
        h.failure()


def test_opens_after_consecutive_failures_then_half_opens_for_one_probe() -> None:
    h, clock = breaker()
    fail(h, 2)
    assert h.state == CLOSED
    fail(h)
    assert h.state == OPEN and not h.begin()
    clock.now += 10
    assert h.state == HALF_OPEN
    assert h.begin()  # the probe
    assert not h.begin()  # only one at a time
    h.success(12.0)
    assert h.state == CLOSED and h.consecutive_failures == 0


def test_a_failed_probe_opens_it_again() -> None:
    h, clock = breaker()
    fail(h, 3)
    clock.now += 10
    fail(h)
    assert h.state == OPEN


def test_error_rate_over_the_window_opens_it() -> None:
    h, _ = breaker(consecutive_failures=100, error_rate=0.5, window_seconds=30)
    for i in range(10):
        assert h.begin()
        h.success(5) if i % 2 else h.failure()
    assert h.state == CLOSED  # 5 of 10 failed, but the rate is judged when a failure arrives
    fail(h)
    assert h.state == OPEN  # 6 of 11


def test_old_outcomes_leave_the_window() -> None:
    h, clock = breaker(consecutive_failures=100, error_rate=0.5, window_seconds=30)
    fail(h, 4)
    clock.now += 31
    for _ in range(9):
        assert h.begin()
        h.success(5)
    assert h.state == CLOSED


def test_ewma_latency_and_in_flight() -> None:
    h, _ = breaker()
    assert h.begin() and h.begin()
    assert h.in_flight == 2
    h.success(100)
    h.success(200)
    assert h.in_flight == 0 and h.latency_ms == pytest.approx(120)


@pytest.mark.anyio
async def test_active_checks_close_a_recovered_deployment_and_keep_a_dead_one_open() -> None:
    a, clock_a = breaker()
    b, clock_b = breaker()
    fail(a, 3)
    fail(b, 3)
    up = {"a": True, "b": False}

    async def probe(name: str) -> bool:
        return up[name]

    monitor = HealthMonitor({"a": a, "b": b}, probe, interval=1)
    await monitor.check()
    assert a.state == OPEN and b.state == OPEN  # still inside open_seconds: no probe yet
    clock_a.now += 10
    clock_b.now += 10
    await monitor.check()
    assert a.state == CLOSED
    assert b.state == OPEN

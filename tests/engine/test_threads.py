from __future__ import annotations

import json
from pathlib import Path

import pytest

from openmaas.engine import threads
from openmaas.engine.adapt import LoadWatch
from openmaas.engine.threads import ThreadPlan


def test_the_default_uses_every_core_when_calm_and_one_fewer_when_contended() -> None:
    assert threads.default_plan(2) == ThreadPlan(2, 2, None, 1, "default")
    assert threads.default_plan(1).contended is None and not threads.default_plan(1).adaptive
    plan = ThreadPlan(4, 4, "passive", 3)
    assert plan.args() == ["--threads", "4", "--threads-batch", "4", "--poll", "0"]
    assert plan.args(contended=True)[:2] == ["--threads", "3"] and plan.env() == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_explicit_params_win_then_the_tuned_plan_then_the_default(tmp_path: Path) -> None:
    assert threads.resolve(1, None, None, tmp_path) == ThreadPlan(1, 1, None, None, "params")
    assert threads.resolve(None, None, None, tmp_path).source == "default"
    tuned = {"cores": threads.cores(), "plan": {"threads": 3, "threads_batch": 4, "contended": 2}}
    threads.tune_path(tmp_path).write_text(json.dumps(tuned))
    assert threads.resolve(None, None, "active", tmp_path) == ThreadPlan(3, 4, "active", 2, "tuned")
    assert threads.resolve(None, None, None, tmp_path, engines=2).threads == 3  # each engine: the whole plan


@pytest.mark.parametrize("text", ["{", '{"cores": 999, "plan": {"threads": 1, "threads_batch": 1}}', '{"cores": 2}'])
def test_a_tune_file_that_is_unreadable_or_from_another_host_is_ignored(tmp_path: Path, text: str) -> None:
    threads.tune_path(tmp_path).write_text(text.replace("2}", f"{threads.cores()}}}"))
    assert threads.load_tuned(tmp_path) is None


class Host:
    """A host whose busy CPU the test sets: ``others`` cores used by processes other than the engines."""

    def __init__(self) -> None:
        self.now = 0.0
        self.busy = 0.0

    def tick(self, others: float, engines: float = 0.0) -> None:
        self.now += 1.0
        self.busy += others + engines


def test_the_load_watch_has_hysteresis() -> None:
    host = Host()
    watch = LoadWatch(rise=2, fall=3, clock=lambda: host.now, busy=lambda: host.busy)
    engine_cpu = 0.0
    watch.sample(engine_cpu)
    states = []
    for others in [0.2, 0.9, 0.2, 0.9, 0.9, 0.5, 0.1, 0.1, 0.9, 0.1, 0.1, 0.1]:
        host.tick(others, engines=1.0)  # the engines' own CPU never counts as load
        engine_cpu += 1.0
        states.append(watch.sample(engine_cpu))
    assert states == [False, False, False, False, True, True, True, True, True, True, True, False]

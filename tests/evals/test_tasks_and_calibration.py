import json

import pytest

from openmaas.backends.oracle import OracleBackend, answers_correctly, task_key
from openmaas.evals import calibrate
from openmaas.evals.runner import RunSpec, TaskResult
from openmaas.evals.tasks import Task, load
from openmaas.settings import Deployment


@pytest.mark.parametrize("name", ["arithmetic", "instructions", "extraction"])
def test_task_sets_are_seeded_and_levelled(name: str) -> None:
    a, b, other = load(name, 12, 0), load(name, 12, 0), load(name, 12, 1)
    assert [t.messages for t in a] == [t.messages for t in b]
    assert [t.messages for t in a] != [t.messages for t in other]
    assert len({t.level for t in a}) >= 2
    assert len({t.question for t in a}) == 12


@pytest.mark.parametrize("name", ["arithmetic", "instructions", "extraction", "humaneval"])
def test_gold_scoring_accepts_the_right_answer_and_rejects_the_wrong_one(name: str) -> None:
    for task in load(name, 4, 0):
        assert task.score(task.correct), task.id
        assert not task.score(task.wrong), task.id


def test_requests_never_carry_the_gold_answer() -> None:
    for task in load("arithmetic", 9, 0):
        assert task.verifier is None
        assert f"The answer is {task.gold}" not in json.dumps(task.messages)
    for task in load("extraction", 6, 0):
        assert task.verifier is not None and task.verifier["type"] == "json_schema"
        assert json.dumps(task.gold) not in json.dumps(task.messages)


def test_instruction_tasks_state_their_checks_and_score_by_them() -> None:
    for task in load("instructions", 9, 0):
        assert task.verifier == {"type": "checks", "checks": task.gold}
        assert 1 <= len(task.gold) <= 3
    task = next(t for t in load("instructions", 30, 0) if t.gold == [{"kind": "lowercase", "value": True}])
    assert task.score("all lower case here") and not task.score("Not lower case")


def test_humaneval_requests_carry_the_docstring_examples_as_their_verifier() -> None:
    task = load("humaneval", 1, 0)[0]
    assert task.verifier is not None and task.verifier["type"] == "python_tests"
    assert task.verifier["tests"].startswith("assert has_close_elements(")
    assert "check(" not in task.verifier["tests"]  # the hidden tests only score


def test_run_names_follow_the_suffix_grammar() -> None:
    assert RunSpec.parse("best-of-8") == RunSpec("best-of-8", "best-of", 8)
    assert RunSpec.parse("sc-5").n == 5 and RunSpec.parse("refine").n == 2
    assert RunSpec.parse("cascade-4@0.62") == RunSpec("cascade-4@0.62", "cascade", 4, 0.62)
    with pytest.raises(ValueError):
        RunSpec.parse("beam-4")
    task = load("arithmetic", 1, 0)[0]
    assert RunSpec.parse("best-of-4").ttc(task, None) == {
        "strategy": "best_of_n",
        "n": 4,
        "verifier": {"type": "logprob"},
    }
    with pytest.raises(ValueError):
        RunSpec.parse("cascade").ttc(task, None)


def test_enforce_runs_send_the_tasks_own_verifier_with_enforce() -> None:
    task = load("instructions", 1, 0)[0]
    single = RunSpec.parse("single+enforce")
    assert single == RunSpec("single+enforce", "single", 1, None, True)
    assert single.ttc(task, None) == {"strategy": "best_of_n", "n": 1, "verifier": task.verifier, "enforce": True}
    assert RunSpec.parse("single").ttc(task, None) is None  # plain single stays a plain request
    cascade = RunSpec.parse("cascade-1+enforce@0.75")
    assert (cascade.n, cascade.threshold, cascade.enforce) == (1, 0.75, True)
    assert cascade.ttc(task, "strong") == {
        "strategy": "cascade",
        "n": 1,
        "verifier": task.verifier,
        "escalate_to": "strong",
        "threshold": 0.75,
        "enforce": True,
    }
    for bad in ("strong+enforce", "sc-5+enforce", "best-of-4@0.5+enforce"):
        with pytest.raises(ValueError):
            RunSpec.parse(bad)
    with pytest.raises(ValueError):  # nothing to enforce: arithmetic requests carry no verifier
        RunSpec.parse("best-of-4+enforce").ttc(load("arithmetic", 1, 0)[0], None)


def _result(correct: bool, cost: float, confidence: float | None = None) -> TaskResult:
    return TaskResult("t", 1, correct, 10, 10, cost, 0.1, confidence=confidence)


def test_the_cascade_curve_and_the_calibrated_threshold() -> None:
    # confident answers are right, unsure ones wrong: escalating below 0.5 is the sweet spot
    conf = [0.9, 0.8, 0.3, 0.2]
    cheap = [_result(True, 1.0), _result(True, 1.0), _result(False, 1.0), _result(False, 1.0)]
    strong = [_result(True, 10.0), _result(True, 10.0), _result(True, 10.0), _result(False, 10.0)]
    points = calibrate.curve(conf, cheap, strong)
    by_t = {p.threshold: p for p in points}
    assert by_t[0.0].escalated == 0 and by_t[0.0].accuracy == 0.5 and by_t[0.0].relative_cost == 0.1
    assert by_t[0.8].escalated == 0.5 and by_t[0.8].accuracy == 0.75 and by_t[0.8].relative_cost == pytest.approx(0.6)
    strong_accuracy = 0.75
    chosen = calibrate.choose(points, strong_accuracy, 0.95)
    assert chosen.threshold == 0.8 and chosen.accuracy == 0.75  # escalates the two unsure answers only
    assert chosen.relative_cost == pytest.approx(0.6)
    unreachable = calibrate.choose(points, 1.0, 1.0)
    assert unreachable.accuracy == max(p.accuracy for p in points if p.threshold <= 1)
    assert unreachable.threshold <= 1.0  # a threshold a cascade request can carry


def test_the_cheapest_cheap_step_that_reaches_the_target_wins() -> None:
    point = calibrate.Point
    options = {
        "single": point(0.9, 0.6, 0.80, 6.0, 0.60),
        "best-of-4": point(0.7, 0.3, 0.84, 4.5, 0.45),  # fewer escalations pay for its extra local answers
        "best-of-8": point(0.5, 0.2, 0.86, 5.0, 0.50),
    }
    assert calibrate.pick(options, 0.85, 0.95) == "best-of-4"
    assert calibrate.pick(options, 0.85, 1.0) == "best-of-8"  # only it reaches 0.85
    assert calibrate.pick(options, 1.0, 1.0) == "best-of-8"  # none does: the most accurate


@pytest.mark.anyio
async def test_calibration_signals_use_the_requests_own_verifier() -> None:
    tasks = load("extraction", 2, 0)
    answers = [tasks[0].correct, "not json"]
    cheap = [TaskResult(t.id, 1, False, 0, 0, 0.0, 0.0, answer=a) for t, a in zip(tasks, answers, strict=True)]
    assert await calibrate.signals(tasks, cheap) == [1.0, 0.0]
    arith = load("arithmetic", 1, 0)
    assert await calibrate.signals(arith, [_result(True, 0, confidence=0.7)]) == [0.7]


@pytest.mark.anyio
async def test_the_simulated_strong_deployment_is_deterministic_and_right_at_its_rate(tmp_path) -> None:
    tasks: list[Task] = load("arithmetic", 200, 0)
    path = tmp_path / "answers.json"
    path.write_text(json.dumps({task_key(t.question): {"correct": t.correct, "wrong": t.wrong} for t in tasks}))
    deployment = Deployment(name="s", backend="oracle", params={"answers": str(path), "accuracy": 0.8, "seed": 3})
    backend = OracleBackend(deployment)
    right = 0
    for t in tasks:
        first = await backend.chat({"messages": t.messages})
        again = await backend.chat({"messages": t.messages})
        text = first["choices"][0]["message"]["content"]
        assert text == again["choices"][0]["message"]["content"]
        assert t.score(text) == answers_correctly(3, task_key(t.question), 0.8)
        right += t.score(text)
    assert 0.7 <= right / len(tasks) <= 0.9
    unknown = await backend.chat({"messages": [{"role": "user", "content": "something else"}]})
    assert "cannot" in unknown["choices"][0]["message"]["content"]


def test_the_escalate_everything_point_stays_apart_from_threshold_one() -> None:
    cheap = [_result(False, 1.0), _result(True, 1.0)]
    strong = [_result(True, 10.0), _result(True, 10.0)]
    points = calibrate.curve([1.0, 1.0], cheap, strong)  # a verifier that accepts both answers
    assert [p.escalated for p in points] == [0.0, 0.0, 1.0]
    assert points[-1].threshold > 1.0 >= points[-2].threshold
    assert calibrate.choose(points, 1.0, 0.95).threshold <= 1.0

"""Cascade calibration: choose the escalation threshold from one evaluation pass.

Input: for every task, the cheap step's answer — a single greedy sample, or the pick of a
best-of-N run for a cascade whose cheap step is best-of-N — with its correctness, its cost and
the signal the cascade compares with the threshold (the verifier's score of the pick, the
request's own verifier on a single answer, or its token confidence when the request carries
no verifier) and the strong model's
answer (correct or not, its cost). Escalating every task whose signal is below ``t`` gives,
for each ``t``, a share escalated, an accuracy and a cost; the curve is exact for a
deterministic cascade (greedy cheap sample, same strong answers). The calibrated threshold
is the cheapest point whose accuracy reaches ``target`` × the strong model's accuracy; with several
candidate cheap steps (single, best-of-4, …), each is calibrated and the cheapest that reaches the
target is chosen (``pick``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from openmaas.evals.runner import TaskResult
from openmaas.evals.tasks import Task
from openmaas.ttc.spec import parse_verifier
from openmaas.ttc.verifiers import Candidate, Context, build

ESCALATE_ALL = 1.000001  # above any score: every task escalated (not a threshold a request can carry)


@dataclass
class Point:
    threshold: float
    escalated: float  # share of tasks
    accuracy: float
    cost_usd: float  # per task
    relative_cost: float  # versus the strong model alone


async def signals(tasks: list[Task], cheap: list[TaskResult]) -> list[float]:
    """What the cascade compares with its threshold, per task, computed as the server would."""
    out = []
    for task, result in zip(tasks, cheap, strict=True):
        if result.signal is not None:
            out.append(result.signal)
            continue
        if task.verifier is None:
            out.append(result.confidence if result.confidence is not None else 0.0)
            continue
        verifier = build(parse_verifier(task.verifier), {"messages": task.messages})
        scores = await verifier.score([Candidate(result.answer, {}, "cheap")], Context({"messages": task.messages}))
        out.append(scores[0].value)
    return out


def curve(signal: list[float], cheap: list[TaskResult], strong: list[TaskResult]) -> list[Point]:
    n = len(cheap) or 1
    strong_cost = sum(r.cost_usd for r in strong) or 1e-12
    cheap_cost = sum(r.cost_usd for r in cheap)
    thresholds = sorted({0.0, *signal, 1.0, ESCALATE_ALL})
    points = []
    for t in thresholds:
        esc = [s < t for s in signal]
        correct = sum(s.correct if e else c.correct for e, c, s in zip(esc, cheap, strong, strict=True))
        cost = cheap_cost + sum(s.cost_usd for e, s in zip(esc, strong, strict=True) if e)
        points.append(Point(round(t, 6), sum(esc) / n, correct / n, cost / n, cost / strong_cost))
    return points


def choose(points: list[Point], strong_accuracy: float, target: float) -> Point:
    """The cheapest point reaching ``target`` of the strong accuracy (else the most accurate one).

    Only thresholds a cascade can be given (≤ 1) count: the last point of the curve, escalating even
    answers the verifier fully accepts, is the strong model alone plus wasted cheap calls."""
    usable = [p for p in points if p.threshold <= 1.0]
    good = [p for p in usable if p.accuracy >= target * strong_accuracy - 1e-12]
    if good:
        return min(good, key=lambda p: (p.cost_usd, -p.accuracy))
    return max(usable, key=lambda p: (p.accuracy, -p.cost_usd))


def pick(options: dict[str, Point], strong_accuracy: float, target: float) -> str:
    """Of several cheap steps (each at its own calibrated point), the cheapest that reaches the target;
    when none does, the most accurate. A cascade's cheap step is a cost too: best-of-8 spends eight local
    answers on every request, escalated or not."""
    good = {k: p for k, p in options.items() if p.accuracy >= target * strong_accuracy - 1e-12}
    if good:
        return min(good, key=lambda k: (good[k].cost_usd, -good[k].accuracy))
    return max(options, key=lambda k: (options[k].accuracy, -options[k].cost_usd))


def report(points: list[Point], chosen: Point, strong_accuracy: float, target: float) -> dict[str, Any]:
    return {
        "target": target,
        "strong_accuracy": strong_accuracy,
        "threshold": chosen.threshold,
        "chosen": asdict(chosen),
        "curve": [asdict(p) for p in points],
    }

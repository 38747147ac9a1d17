"""The four strategies, over one ``sample`` function (a metered model call) and a verifier.

* ``best_of_n``: n candidates concurrently, the verifier's best wins (ties: the first).
* ``self_consistency``: n candidates, majority vote over normalised final answers.
* ``self_refine``: one answer, then up to ``max_rounds`` of "here is your answer and what is
  wrong with it, write a better one" — stops as soon as the verifier passes it (with no
  verifier, every round runs and the last answer is kept).
* ``cascade``: the requested (cheap) model first — one answer, or the best of ``n`` — and if
  the verifier's score is below ``threshold``, the same request goes to ``escalate_to`` and
  its answer is returned.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from openmaas.errors import OpenMaaSError
from openmaas.ttc.spec import TtcSpec
from openmaas.ttc.verifiers import Candidate, Context, Score, Verifier

Sample = Callable[[dict[str, Any], str | None, str], Awaitable[Candidate]]  # (payload, model or None, role)

REFINE_PROMPT = (
    "Review your answer above against the request. {feedback}Then write an improved, complete answer to the"
    " original request. Reply with the answer only."
)


@dataclass
class Run:
    chosen: Candidate
    candidates: list[Candidate]
    scores: list[Score]
    rounds: int = 0
    escalated: bool = False
    escalation_refused: str | None = None  # why escalation could not happen (e.g. the privacy policy)
    failures: list[str] = field(default_factory=list)


async def _many(sample: Sample, payload: dict[str, Any], n: int) -> tuple[list[Candidate], list[str]]:
    results = await asyncio.gather(*(sample(payload, None, "candidate") for _ in range(n)), return_exceptions=True)
    ok = [r for r in results if isinstance(r, Candidate)]
    errors = [r for r in results if isinstance(r, BaseException)]
    for error in errors:
        if not isinstance(error, Exception):
            raise error  # cancellation: the client left
    if not ok:
        raise errors[0]
    return ok, [getattr(e, "code", None) or type(e).__name__ for e in errors]


def _best(scores: list[Score]) -> int:
    return max(range(len(scores)), key=lambda i: (scores[i].value, -i))


async def best_of_n(spec: TtcSpec, payload: dict[str, Any], sample: Sample, verifier: Verifier, ctx: Context) -> Run:
    candidates, failures = await _many(sample, payload, spec.n)
    scores = await verifier.score(candidates, ctx)
    return Run(candidates[_best(scores)], candidates, scores, failures=failures)


async def self_refine(spec: TtcSpec, payload: dict[str, Any], sample: Sample, verifier: Verifier, ctx: Context) -> Run:
    current = await sample(payload, None, "candidate")
    candidates = [current]
    scores = await verifier.score([current], ctx) if spec.verifier else [Score(0.0)]
    rounds = 0
    while rounds < spec.max_rounds and not (spec.verifier and scores[-1].value >= spec.threshold):
        feedback = f"A check of it says: {scores[-1].detail}. " if spec.verifier and scores[-1].detail else ""
        messages = [
            *payload.get("messages", []),
            {"role": "assistant", "content": current.text},
            {"role": "user", "content": REFINE_PROMPT.format(feedback=feedback)},
        ]
        current = await sample({**payload, "messages": messages}, None, "refinement")
        candidates.append(current)
        scores += await verifier.score([current], ctx) if spec.verifier else [Score(0.0)]
        rounds += 1
    chosen = _best(scores) if spec.verifier else len(candidates) - 1
    return Run(candidates[chosen], candidates, scores, rounds=rounds)


async def cascade(spec: TtcSpec, payload: dict[str, Any], sample: Sample, verifier: Verifier, ctx: Context) -> Run:
    local = await best_of_n(spec, payload, sample, verifier, ctx)
    best = max(s.value for s in local.scores)
    if best >= spec.threshold:
        return local
    assert spec.escalate_to is not None
    try:
        strong = await sample(payload, spec.escalate_to, "escalation")
    except OpenMaaSError as exc:
        if exc.status in (403,):  # e.g. the privacy policy keeps this request away from the stronger model
            local.escalation_refused = exc.code or "refused"
            return local
        raise
    return Run(
        strong,
        [*local.candidates, strong],
        [*local.scores, Score(1.0, "escalated")],
        escalated=True,
        failures=local.failures,
    )


STRATEGY_FUNCTIONS = {
    "best_of_n": best_of_n,
    "self_consistency": best_of_n,  # the same mechanics with the vote verifier
    "self_refine": self_refine,
    "cascade": cascade,
}

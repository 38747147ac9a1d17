"""Run a task set through the public endpoint (the official ``openai`` SDK) with a strategy.

A *run* is named like the model suffix grammar: ``single`` (one greedy sample), ``best-of-N``,
``sc-N`` (self-consistency), ``refine-R`` (self-refine, up to R rounds), ``cascade`` or
``cascade-N`` (local best-of-N first), optionally ``@T`` for the cascade threshold
(``cascade@0.62``) and ``strong`` (one sample of the escalation model). ``+enforce``
after the strategy (``single+enforce``, ``best-of-8+enforce``, ``cascade-1+enforce@1``)
sends ``ttc.enforce``: the local model writes under the request's verifier (ttc/enforce.py). The request's own
verifier comes from the task (its stated checks, schema or examples); tasks that carry none
use the model's own confidence (``logprob``) for best-of-N and the cascade.
Scoring (the gold answers) happens here, after the response, never in the request.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from openmaas.evals.tasks import Task

_RUN = re.compile(
    r"^(?P<kind>single|strong|best-of|sc|refine|cascade)(?:-(?P<n>\d+))?(?P<enforce>\+enforce)?(?:@(?P<t>[\d.]+))?$"
)


@dataclass(frozen=True)
class RunSpec:
    name: str
    kind: str
    n: int = 1
    threshold: float | None = None
    enforce: bool = False

    @classmethod
    def parse(cls, name: str) -> RunSpec:
        m = _RUN.match(name.strip())
        if m is None:
            raise ValueError(
                f"unknown run {name!r}: use single, strong, best-of-N, sc-N, refine-R, cascade[-N][@THRESHOLD],"
                " with +enforce after the strategy to enforce the request's verifier"
            )
        kind = m.group("kind")
        n = int(m.group("n") or {"best-of": 4, "sc": 5, "refine": 2}.get(kind, 1))
        enforce = bool(m.group("enforce"))
        if enforce and kind in ("strong", "sc"):
            raise ValueError(f"run {name!r}: +enforce applies to single, best-of, refine and cascade runs")
        return cls(name.strip(), kind, n, float(m.group("t")) if m.group("t") else None, enforce)

    def ttc(self, task: Task, escalate_to: str | None) -> dict[str, Any] | None:
        spec = self._ttc(task, escalate_to)
        if spec is not None and self.enforce:
            if not task.verifier:
                raise ValueError(f"run {self.name!r}: +enforce needs tasks whose requests carry a verifier")
            spec["enforce"] = True
        return spec

    def _ttc(self, task: Task, escalate_to: str | None) -> dict[str, Any] | None:
        verifier = task.verifier or {"type": "logprob"}
        if self.kind == "single" and self.enforce:  # one greedy answer, written under the request's verifier
            return {"strategy": "best_of_n", "n": 1, "verifier": verifier}
        if self.kind == "best-of":
            return {"strategy": "best_of_n", "n": self.n, "verifier": verifier}
        if self.kind == "sc":
            return {"strategy": "self_consistency", "n": self.n}
        if self.kind == "refine":
            spec: dict[str, Any] = {"strategy": "self_refine", "max_rounds": self.n}
            if task.verifier:
                spec["verifier"] = task.verifier
            return spec
        if self.kind == "cascade":
            if escalate_to is None:
                raise ValueError("a cascade run needs --strong (the escalation model)")
            spec = {"strategy": "cascade", "n": self.n, "verifier": verifier, "escalate_to": escalate_to}
            if self.threshold is not None:
                spec["threshold"] = self.threshold
            return spec
        return None


@dataclass
class TaskResult:
    task: str
    level: int
    correct: bool
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    seconds: float
    calls: int = 1
    escalated: bool = False
    confidence: float | None = None  # exp(mean token logprob) of a single sample, when asked
    signal: float | None = None  # the verifier's score of the chosen candidate (test-time-compute runs)
    error: str | None = None
    answer: str = field(default="", repr=False)


@dataclass
class Prices:
    """USD per million tokens by deployment/model name (for responses without a ``ttc`` cost)."""

    table: dict[str, tuple[float, float]]

    def cost(self, model: str, prompt: int, completion: int) -> float:
        inp, out = self.table.get(model, (0.0, 0.0))
        return (prompt * inp + completion * out) / 1e6


def confidence(choice: Any) -> float | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    values = [t.logprob for t in content if t.logprob is not None]
    return math.exp(sum(values) / len(values)) if values else None


class Evaluator:
    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str,
        prices: Prices,
        strong: str | None = None,
        concurrency: int = 4,
    ) -> None:
        self.client, self.model, self.prices, self.strong = client, model, prices, strong
        self.limit = asyncio.Semaphore(concurrency)

    async def one(self, run: RunSpec, task: Task, want_confidence: bool = False) -> TaskResult:
        model = self.strong if run.kind == "strong" else self.model
        if model is None:
            raise ValueError("a strong run needs --strong")
        body: dict[str, Any] = {"model": model, "messages": task.messages, "max_tokens": task.max_tokens}
        extra: dict[str, Any] = {}
        ttc = run.ttc(task, self.strong)
        if ttc is None:
            body["temperature"] = 0
            if want_confidence:
                body["logprobs"] = True
        else:
            extra["ttc"] = ttc
            if run.kind in ("cascade", "single") and run.n == 1:
                body["temperature"] = 0  # the calibration assumed the greedy cheap answer
        async with self.limit:
            started = time.perf_counter()
            try:
                r = await self.client.chat.completions.create(**body, extra_body=extra or None)
            except openai.APIStatusError as exc:
                return TaskResult(task.id, task.level, False, 0, 0, 0.0, time.perf_counter() - started, error=str(exc))
            seconds = time.perf_counter() - started
        text = r.choices[0].message.content or ""
        correct = await asyncio.to_thread(task.score, text)
        usage = r.usage
        prompt, completion = (usage.prompt_tokens, usage.completion_tokens) if usage else (0, 0)
        summary = (r.model_extra or {}).get("ttc")
        signal = None
        if summary:
            signal = float(summary["candidates"][summary["chosen"]]["score"])
            cost = float(summary["usage"]["cost_usd"])
            calls = sum(role["calls"] for role in summary["usage"]["by_role"].values())
            escalated = bool(summary["escalated"])
        else:
            cost, calls, escalated = self.prices.cost(model, prompt, completion), 1, False
        return TaskResult(
            task.id,
            task.level,
            correct,
            prompt,
            completion,
            cost,
            seconds,
            calls,
            escalated,
            confidence(r.choices[0]) if want_confidence else None,
            signal,
            answer=text,
        )

    async def run(self, run: RunSpec, tasks: list[Task], want_confidence: bool = False) -> list[TaskResult]:
        return list(await asyncio.gather(*(self.one(run, t, want_confidence) for t in tasks)))


def summarise(run: str, task_set: str, results: list[TaskResult]) -> dict[str, Any]:
    n = len(results) or 1
    return {
        "task_set": task_set,
        "run": run,
        "tasks": len(results),
        "accuracy": sum(r.correct for r in results) / n,
        "tokens_per_task": sum(r.prompt_tokens + r.completion_tokens for r in results) / n,
        "completion_tokens_per_task": sum(r.completion_tokens for r in results) / n,
        "calls_per_task": sum(r.calls for r in results) / n,
        "cost_usd_per_task": sum(r.cost_usd for r in results) / n,
        "escalated": sum(r.escalated for r in results) / n,
        "errors": sum(r.error is not None for r in results),
        "seconds_per_task": sum(r.seconds for r in results) / n,
        "by_level": {
            str(level): sum(r.correct for r in results if r.level == level)
            / max(1, sum(1 for r in results if r.level == level))
            for level in sorted({r.level for r in results})
        },
        "results": [{**asdict(r), "answer": r.answer[:400]} for r in results],
    }

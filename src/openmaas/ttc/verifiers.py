"""Verifiers: score candidate answers from what the request itself carries.

One small interface: ``score(candidates) -> list[Score]``, scores in [0, 1], a
candidate *passes* at ``score >= threshold``. Scoring sees the whole group, so a
majority vote is a verifier like any other. A verifier never sees a gold answer kept
aside for evaluation: only the request's schema, pattern, expected answer, tests,
judge prompt, or the model's own log-probabilities.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from openmaas.ttc import checks as instruction_checks
from openmaas.ttc.answers import final_answer, normalise
from openmaas.ttc.checks import strip_fences
from openmaas.ttc.sandbox import extract_code, run_tests
from openmaas.ttc.spec import VerifierSpec


@dataclass
class Candidate:
    text: str
    result: dict[str, Any]  # the upstream's chat.completion
    deployment: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_nanos: int = 0
    role: str = "candidate"  # candidate | refinement | escalation
    enforced: bool = False  # generated under the verifier's grammar or schema (ttc.enforce)

    @property
    def mean_logprob(self) -> float | None:
        choice = (self.result.get("choices") or [{}])[0]
        content = ((choice.get("logprobs") or {}).get("content")) or []
        values = [
            float(t["logprob"]) for t in content if isinstance(t, dict) and isinstance(t.get("logprob"), int | float)
        ]
        return sum(values) / len(values) if values else None


@dataclass
class Score:
    value: float
    detail: str = ""
    answer: str | None = None


Judge = Callable[[str], Awaitable[tuple[str, Candidate]]]  # prompt → (reply text, the judge call for metering)


@dataclass
class Context:
    """What a verifier may use: the request, and a way to ask the judge."""

    request: dict[str, Any]
    judge: Judge | None = None
    sandbox_timeout_s: float = 5.0
    sandbox_memory_mb: int = 512
    judge_calls: list[Candidate] = field(default_factory=list)


class Verifier(ABC):
    name: str

    @abstractmethod
    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]: ...


class JsonSchemaVerifier(Verifier):
    """Valid JSON that satisfies the schema: the verifier's own, else the request's ``response_format``."""

    name = "json_schema"

    def __init__(self, schema: dict[str, Any] | None) -> None:
        self.schema = schema

    def _schema(self, request: dict[str, Any]) -> dict[str, Any] | None:
        if self.schema is not None:
            return self.schema
        fmt = request.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return dict((fmt.get("json_schema") or {}).get("schema") or {})
        return None

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        schema = self._schema(ctx.request)
        validator = jsonschema.Draft202012Validator(schema) if schema is not None else None
        out = []
        for c in candidates:
            try:
                value = json.loads(strip_fences(c.text))
            except ValueError:
                out.append(Score(0.0, "not JSON"))
                continue
            errors = list(validator.iter_errors(value)) if validator is not None else []
            out.append(Score(0.0 if errors else 1.0, errors[0].message[:200] if errors else "valid"))
        return out


class RegexVerifier(Verifier):
    name = "regex"

    def __init__(self, pattern: str) -> None:
        self.pattern = re.compile(pattern, re.DOTALL)

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        return [Score(1.0 if self.pattern.search(c.text) else 0.0) for c in candidates]


class ExactVerifier(Verifier):
    """The request states the answer it accepts (e.g. a format check with a known value)."""

    name = "exact"

    def __init__(self, answer: str) -> None:
        self.answer = normalise(answer)

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        out = []
        for c in candidates:
            answer = final_answer(c.text)
            out.append(Score(1.0 if answer == self.answer else 0.0, answer=answer))
        return out


class VoteVerifier(Verifier):
    """Majority vote over normalised final answers: a candidate's score is the share that agrees with it."""

    name = "vote"

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        answers = [final_answer(c.text) for c in candidates]
        counts = Counter(a for a in answers if a is not None)
        total = len(candidates) or 1
        return [Score(counts[a] / total if a is not None else 0.0, answer=a) for a in answers]


class ChecksVerifier(Verifier):
    """Verifiable instructions the request states (word counts, keywords, format…): the share passed."""

    name = "checks"

    def __init__(self, checks: list[dict[str, Any]]) -> None:
        self.checks = checks

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        out = []
        for c in candidates:
            results = instruction_checks.run(c.text, self.checks)
            failed = [self.checks[i]["kind"] for i, ok in enumerate(results) if not ok]
            detail = "all passed" if not failed else "failed: " + ", ".join(failed)
            out.append(Score(sum(results) / len(results), detail))
        return out


class PythonTestsVerifier(Verifier):
    """The request's unit tests against each candidate's code, in the sandbox, concurrently.

    ``prelude`` (optional) goes before the candidate's code: imports or helpers the answer may assume."""

    name = "python_tests"

    def __init__(self, tests: str, prelude: str = "") -> None:
        self.tests = tests
        self.prelude = prelude

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        results = await asyncio.gather(
            *(
                run_tests(
                    self.prelude + "\n" + extract_code(c.text), self.tests, ctx.sandbox_timeout_s, ctx.sandbox_memory_mb
                )
                for c in candidates
            )
        )
        return [Score(1.0 if r.passed else 0.0, r.reason) for r in results]


JUDGE_PROMPT = (
    "You are grading an answer. Reply with one line: 'Score: N' where N is an integer from 0 (wrong or useless)"
    " to 10 (fully correct and complete).\n\nCriteria: {criteria}\n\nRequest:\n{request}\n\nAnswer:\n{answer}\n"
)
_SCORE = re.compile(r"(?i)score\s*[:=]?\s*(\d+(?:\.\d+)?)")


class JudgeVerifier(Verifier):
    """An LLM judge (the configured judge deployment) scores each candidate 0–10."""

    name = "judge"

    def __init__(self, criteria: str | None) -> None:
        self.criteria = criteria or "correctness, completeness and whether it follows the request"

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        if ctx.judge is None:
            return [Score(0.0, "no judge")] * len(candidates)
        ask = _last_user_text(ctx.request)[:4000]
        judge = ctx.judge

        async def one(c: Candidate) -> Score:
            reply, call = await judge(JUDGE_PROMPT.format(criteria=self.criteria, request=ask, answer=c.text[:4000]))
            ctx.judge_calls.append(call)
            m = _SCORE.search(reply) or re.search(r"\b(\d+(?:\.\d+)?)\b", reply)
            value = min(10.0, float(m.group(1))) / 10 if m else 0.0
            return Score(value, f"judge: {reply.strip()[:80]}")

        return list(await asyncio.gather(*(one(c) for c in candidates)))


class LogprobVerifier(Verifier):
    """Confidence from the tokens' log-probabilities: exp(mean logprob), the geometric-mean token probability."""

    name = "logprob"

    async def score(self, candidates: list[Candidate], ctx: Context) -> list[Score]:
        out = []
        for c in candidates:
            mean = c.mean_logprob
            out.append(Score(math.exp(mean), f"mean logprob {mean:.3f}") if mean is not None else Score(0.0, "none"))
        return out


def _last_user_text(request: dict[str, Any]) -> str:
    for m in reversed(request.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content or "")
    return ""


def build(spec: VerifierSpec | None, request: dict[str, Any]) -> Verifier:
    """The verifier a request asked for; without one: its JSON schema if it has one, else a vote."""
    if spec is None:
        fmt = (request.get("response_format") or {}).get("type")
        return JsonSchemaVerifier(None) if fmt == "json_schema" else VoteVerifier()
    o = spec.options
    match spec.type:
        case "json_schema":
            return JsonSchemaVerifier(o.get("schema"))
        case "regex":
            return RegexVerifier(o["pattern"])
        case "exact":
            return ExactVerifier(o["answer"])
        case "python_tests":
            return PythonTestsVerifier(o["tests"], o.get("prelude") or "")
        case "checks":
            return ChecksVerifier(o["checks"])
        case "judge":
            return JudgeVerifier(o.get("criteria"))
        case "logprob":
            return LogprobVerifier()
    return VoteVerifier()

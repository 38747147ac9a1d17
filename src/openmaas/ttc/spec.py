"""What a request asks of test-time compute: ``extra_body={"ttc": {...}}`` or a model-name suffix.

Suffix grammar (for clients that cannot send extra fields)::

    MODEL "@" STRATEGY [ "-" N ] [ ":" ESCALATE_TO ]

    STRATEGY := "best-of" | "self-consistency" | "sc" | "self-refine" | "refine" | "cascade"

``N`` is the number of candidates (best-of, self-consistency, the cascade's cheap step) or
of refinement rounds (self-refine). ``ESCALATE_TO`` is the cascade's stronger model. Examples:
``smollm2-135m@best-of-8``, ``smollm2-135m@sc-5``, ``smollm2-135m@refine-2``,
``smollm2-135m@cascade:gpt-strong``. A model whose own name contains ``@`` is looked up
as is first, so a deployment named ``x@y`` still works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from openmaas.errors import InvalidRequest
from openmaas.ttc.checks import validate as validate_checks

STRATEGIES = ("best_of_n", "self_consistency", "self_refine", "cascade")
VERIFIERS = ("json_schema", "regex", "exact", "vote", "python_tests", "checks", "judge", "logprob")
_SUFFIX_NAMES = {
    "best-of": "best_of_n",
    "self-consistency": "self_consistency",
    "sc": "self_consistency",
    "self-refine": "self_refine",
    "refine": "self_refine",
    "cascade": "cascade",
}
_SUFFIX = re.compile(r"^(?P<model>.+)@(?P<strategy>[a-z-]+?)(?:-(?P<n>\d+))?(?::(?P<escalate>.+))?$")
_DEFAULT_N = {"best_of_n": 4, "self_consistency": 5, "self_refine": 1, "cascade": 1}


@dataclass(frozen=True)
class VerifierSpec:
    type: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TtcSpec:
    strategy: str
    n: int
    verifier: VerifierSpec | None
    max_rounds: int
    escalate_to: str | None
    threshold: float
    enforce: bool = False  # constrain generation by the verifier (ttc/enforce.py)

    @property
    def calls(self) -> int:
        """Model calls this may make at most (for the admission reservation)."""
        if self.strategy == "self_refine":
            return 1 + self.max_rounds
        if self.strategy == "cascade":
            return self.n + 1
        return self.n


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_ttc")


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"ttc.{name} must be an integer from {low} to {high}; got {value!r}", f"ttc.{name}")
    return value


def check_schema(schema: Any, param: str) -> None:
    """A 400 now rather than an error after the candidates were generated (and billed)."""
    if not isinstance(schema, dict):
        raise _bad(f"{param} must be a JSON Schema object", param)
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _bad(f"{param} is not a valid JSON Schema: {exc.message}", param) from None


def parse_verifier(value: Any) -> VerifierSpec | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise _bad('ttc.verifier must be a name or an object with a "type"', "ttc.verifier")
    kind = value["type"]
    if kind not in VERIFIERS:
        raise _bad(f"Unknown verifier {kind!r}; known: {', '.join(VERIFIERS)}", "ttc.verifier.type")
    options = {k: v for k, v in value.items() if k != "type"}
    required = {"regex": "pattern", "exact": "answer", "python_tests": "tests"}.get(kind)
    if required and not isinstance(options.get(required), str):
        raise _bad(f"The {kind} verifier needs a string {required!r}", f"ttc.verifier.{required}")
    if kind == "regex":
        try:
            re.compile(options["pattern"])
        except re.error as exc:
            raise _bad(
                f"ttc.verifier.pattern is not a valid regular expression: {exc}", "ttc.verifier.pattern"
            ) from None
    if kind == "python_tests" and not isinstance(options.get("prelude", ""), str):
        raise _bad("ttc.verifier.prelude must be a string of Python code", "ttc.verifier.prelude")
    if kind == "checks":
        options["checks"] = validate_checks(options.get("checks"))
    if kind == "json_schema" and "schema" in options:
        check_schema(options["schema"], "ttc.verifier.schema")
    return VerifierSpec(kind, options)


def parse(value: Any, max_n: int, max_rounds: int) -> TtcSpec:
    """Validate ``ttc`` from the request body against the caller's limits; any problem is a 400."""
    if not isinstance(value, dict):
        raise _bad('ttc must be an object, e.g. {"strategy": "best_of_n", "n": 4}', "ttc")
    unknown = set(value) - {"strategy", "n", "verifier", "max_rounds", "escalate_to", "threshold", "enforce"}
    if unknown:
        raise _bad(f"Unknown ttc field(s): {', '.join(sorted(unknown))}", "ttc")
    strategy = value.get("strategy")
    if strategy not in STRATEGIES:
        raise _bad(f"Unknown ttc strategy {strategy!r}; known: {', '.join(STRATEGIES)}", "ttc.strategy")
    n = _int(value.get("n", _DEFAULT_N[strategy]), "n", 1, max_n)
    if strategy == "self_consistency" and n < 2:
        raise _bad("self_consistency needs n of at least 2", "ttc.n")
    rounds = _int(value.get("max_rounds", min(2, max_rounds)), "max_rounds", 1, max_rounds)
    escalate = value.get("escalate_to")
    if strategy == "cascade" and not isinstance(escalate, str):
        raise _bad("The cascade strategy needs ttc.escalate_to (a stronger model)", "ttc.escalate_to")
    if escalate is not None and not isinstance(escalate, str):
        raise _bad("ttc.escalate_to must be a model name", "ttc.escalate_to")
    threshold = value.get("threshold", 0.5)
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1:
        raise _bad("ttc.threshold must be a number from 0 to 1", "ttc.threshold")
    verifier = parse_verifier(value.get("verifier"))
    if strategy == "self_consistency":
        verifier = verifier or VerifierSpec("vote")
    enforce = value.get("enforce", False)
    if not isinstance(enforce, bool):
        raise _bad("ttc.enforce must be true or false", "ttc.enforce")
    if enforce and (verifier is None or verifier.type not in ("checks", "json_schema")):
        raise _bad("ttc.enforce needs a checks or json_schema verifier (what it enforces)", "ttc.enforce")
    return TtcSpec(strategy, n, verifier, rounds, escalate, float(threshold), enforce)


def split_suffix(model: str) -> tuple[str, dict[str, Any] | None]:
    """``smollm2-135m@best-of-8`` → (``smollm2-135m``, the ``ttc`` object it stands for)."""
    m = _SUFFIX.match(model)
    if m is None:
        return model, None
    name = m.group("strategy")
    strategy = _SUFFIX_NAMES.get(name)
    if strategy is None:
        raise _bad(
            f"Unknown test-time-compute suffix '@{name}' in model {model!r}; use MODEL@STRATEGY[-N][:ESCALATE_TO]"
            f" with STRATEGY one of {', '.join(_SUFFIX_NAMES)}",
            "model",
        )
    ttc: dict[str, Any] = {"strategy": strategy}
    if m.group("n"):
        ttc["max_rounds" if strategy == "self_refine" else "n"] = int(m.group("n"))
    if m.group("escalate"):
        ttc["escalate_to"] = m.group("escalate")
    return m.group("model"), ttc

"""Verifiable instructions (in the style of IFEval): constraints a program can check on an answer.

A request carries them as ``{"type": "checks", "checks": [{"kind": "max_words", "value": 40}, …]}``;
the ``checks`` verifier scores a candidate by the share of checks it passes (1.0 = all).
The same functions score the evaluation's instruction-following task set.

Kinds and their ``value``:

=================  ===========================================================
``min_words``       int — at least this many words
``max_words``       int — at most this many words
``min_sentences``   int — at least this many sentences
``max_sentences``   int
``include``         list of str — every keyword appears (case-insensitive, whole word)
``exclude``         list of str — none of them appears
``starts_with``     str — the answer starts with it (case-insensitive, after whitespace)
``ends_with``       str — the answer ends with it (ignoring trailing whitespace and a final period)
``lowercase``       true — no upper-case letters
``uppercase``       true — no lower-case letters
``no_commas``       true — no ``,``
``bullets``         int — exactly this many lines starting with ``* `` or ``- ``
``json``            true, or a JSON Schema object — the whole answer is JSON (fences allowed) that validates
``quoted``          true — wrapped in double quotation marks
``title``           true — contains a title in double angle brackets, ``<<like this>>``
=================  ===========================================================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import jsonschema

from openmaas.errors import InvalidRequest

_WORD = re.compile(r"\b\w+(?:[-']\w+)*\b")
_SENTENCE_END = re.compile(r"[.!?]+(?:\s|$)")


def words(text: str) -> int:
    return len(_WORD.findall(text))


def sentences(text: str) -> int:
    text = text.strip()
    if not text:
        return 0
    count = len(_SENTENCE_END.findall(text))
    return count + (0 if re.search(r"[.!?]\s*$", text) else 1)


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word.lower()) + r"(?!\w)", text.lower()) is not None


def strip_fences(text: str) -> str:
    text = text.strip()
    if text.startswith("```"):
        text = text.split("\n", 1)[1] if "\n" in text else ""
        text = text.rsplit("```", 1)[0]
    return text.strip()


def _json(text: str, value: Any) -> bool:
    try:
        data = json.loads(strip_fences(text))
    except ValueError:
        return False
    if isinstance(value, dict):
        return not any(True for _ in jsonschema.Draft202012Validator(value).iter_errors(data))
    return True


_CHECKS: dict[str, tuple[type | tuple[type, ...], Callable[[str, Any], bool]]] = {
    "min_words": (int, lambda t, v: words(t) >= v),
    "max_words": (int, lambda t, v: words(t) <= v),
    "min_sentences": (int, lambda t, v: sentences(t) >= v),
    "max_sentences": (int, lambda t, v: sentences(t) <= v),
    "include": (list, lambda t, v: all(_has_word(t, w) for w in v)),
    "exclude": (list, lambda t, v: not any(_has_word(t, w) for w in v)),
    "starts_with": (str, lambda t, v: t.strip().lower().startswith(v.lower())),
    "ends_with": (str, lambda t, v: t.strip().rstrip(".").lower().endswith(v.lower().rstrip("."))),
    "lowercase": (bool, lambda t, v: t == t.lower()),
    "uppercase": (bool, lambda t, v: t == t.upper()),
    "no_commas": (bool, lambda t, v: "," not in t),
    "bullets": (int, lambda t, v: sum(1 for line in t.splitlines() if re.match(r"\s*[*-]\s+\S", line)) == v),
    "json": ((bool, dict), _json),
    "quoted": (bool, lambda t, v: len(t.strip()) >= 2 and t.strip()[0] == '"' and t.strip()[-1] == '"'),
    "title": (bool, lambda t, v: re.search(r"<<[^<>\n]+>>", t) is not None),
}
KINDS = tuple(_CHECKS)


def validate(checks: Any) -> list[dict[str, Any]]:
    """The request's ``checks`` list, or a 400 naming the bad entry."""
    param = "ttc.verifier.checks"
    if not isinstance(checks, list) or not checks:
        raise InvalidRequest("The checks verifier needs a non-empty list 'checks'", param=param, code="invalid_ttc")
    for i, check in enumerate(checks):
        kind = check.get("kind") if isinstance(check, dict) else None
        if kind not in _CHECKS:
            raise InvalidRequest(
                f"checks[{i}].kind must be one of {', '.join(KINDS)}; got {kind!r}", param=param, code="invalid_ttc"
            )
        expected, _ = _CHECKS[kind]
        value = check.get("value", True)
        bad_type = not isinstance(value, expected) or (expected is int and isinstance(value, bool))
        if bad_type or (isinstance(value, list) and not all(isinstance(w, str) for w in value)):
            raise InvalidRequest(f"checks[{i}].value has the wrong type for {kind!r}", param=param, code="invalid_ttc")
        if isinstance(value, dict):
            try:
                jsonschema.Draft202012Validator.check_schema(value)
            except jsonschema.SchemaError as exc:
                raise InvalidRequest(
                    f"checks[{i}].value is not a valid JSON Schema: {exc.message}", param=param, code="invalid_ttc"
                ) from None
    return checks


def run(text: str, checks: list[dict[str, Any]]) -> list[bool]:
    """One result per check."""
    return [_CHECKS[c["kind"]][1](text, c.get("value", True)) for c in checks]


def describe(check: dict[str, Any]) -> str:
    """The instruction as a sentence, for prompts that state the checks."""
    kind, value = check["kind"], check.get("value", True)
    phrases: dict[str, Callable[[], str]] = {
        "min_words": lambda: f"Use at least {value} words.",
        "max_words": lambda: f"Use at most {value} words.",
        "min_sentences": lambda: f"Write at least {value} sentences.",
        "max_sentences": lambda: f"Write at most {value} sentences.",
        "include": lambda: "Include the words " + ", ".join(f'"{w}"' for w in value) + ".",
        "exclude": lambda: "Do not use the words " + ", ".join(f'"{w}"' for w in value) + ".",
        "starts_with": lambda: f'Start your answer with "{value}".',
        "ends_with": lambda: f'End your answer with "{value}".',
        "lowercase": lambda: "Write everything in lowercase letters.",
        "uppercase": lambda: "Write everything in capital letters.",
        "no_commas": lambda: "Do not use any commas.",
        "bullets": lambda: f"Answer with exactly {value} bullet points, each on its own line starting with '* '.",
        "json": lambda: "Answer with JSON only.",
        "quoted": lambda: "Wrap your whole answer in double quotation marks.",
        "title": lambda: "Give your answer a title wrapped in double angle brackets, like <<title>>.",
    }
    return phrases[kind]()

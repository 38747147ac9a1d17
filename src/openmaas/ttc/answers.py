"""Final answers out of free text, normalised so that equal answers compare equal.

Used by the vote verifier (self-consistency) and the exact-answer verifier. Order
of preference: a JSON value (the whole answer, fences allowed: canonical form, keys
sorted, strings case-folded), an explicit marker (``\\boxed{…}``, ``#### …``, "the answer is …",
"Answer: …"), then a lone option letter, then the last number, then the whole
short text.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction
from typing import Any

from openmaas.ttc.checks import strip_fences

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_HASHES = re.compile(r"####\s*([^\n]+)")
_MARKED = re.compile(r"(?i)(?:final answer|the answer is|answer)\s*(?:is)?\s*[:=]?\s*([^\n]+)")
_OPTION = re.compile(r"^\(?([A-Ea-e])\)?[.):]?$")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    raw = str(found[-1]).replace(",", "")
    try:
        value = Fraction(raw)
    except (ValueError, ZeroDivisionError):
        return raw
    if value.denominator == 1:
        return str(value.numerator)
    return f"{float(value):.6g}"


def normalise(text: str) -> str:
    """Canonical form of a short answer: a number, an option letter, or lower-case words."""
    text = text.strip().strip("*").strip()
    option = _OPTION.match(text)
    if option:
        return option.group(1).upper()
    number = _number(text) if _NUMBER.fullmatch(text.replace(" ", "").rstrip(".")) else None
    if number is not None:
        return number
    return " ".join(re.sub(r"[^\w\s.-]", " ", text.lower()).split()).strip(".")


def _fold(value: Any) -> Any:
    if isinstance(value, str):
        return " ".join(value.lower().split())
    if isinstance(value, list):
        return [_fold(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _fold(v) for k, v in value.items()}
    return value


def _json_answer(text: str) -> str | None:
    text = strip_fences(text)
    if not text.startswith(("{", "[")):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return json.dumps(_fold(value), sort_keys=True, separators=(",", ":"))


def final_answer(text: str) -> str | None:
    """The answer a response commits to, normalised; None when it has no content."""
    text = text.strip()
    if not text:
        return None
    as_json = _json_answer(text)
    if as_json is not None:
        return as_json
    for pattern in (_BOXED, _HASHES):
        found = pattern.findall(text)
        if found:
            return normalise(found[-1])
    marked = _MARKED.findall(text)
    if marked:
        value = marked[-1].strip().rstrip(".")
        number = _number(value)
        option = _OPTION.match(value.split()[0]) if value.split() else None
        if option:
            return option.group(1).upper()
        return number if number is not None else normalise(value)
    if _OPTION.match(text):
        return normalise(text)
    number = _number(text)
    if number is not None:
        return number
    return normalise(text) if len(text) <= 80 else None

"""Answers for the instruction set that the simulated strong model gives: one that meets every
constraint, one that breaks at least one. Built by rules, then checked with the same checks."""

from __future__ import annotations

from typing import Any

from openmaas.ttc import checks

FILLER = [
    "and",
    "it",
    "feels",
    "calm",
    "and",
    "slow",
    "and",
    "kind",
    "and",
    "bright",
    "and",
    "open",
    "and",
    "clear",
    "and",
    "gentle",
    "and",
    "warm",
    "and",
    "new",
]


def satisfying(topic: str, constraints: list[dict[str, Any]]) -> str | None:
    """A text meeting every constraint, or None when these rules cannot build one."""
    k = {c["kind"]: c.get("value", True) for c in constraints}
    keywords = " and ".join(k.get("include", []))
    start = k.get("starts_with", "Here")
    core = f"{start} is a note on {topic}" + (f" with {keywords}" if keywords else "")
    min_words = int(k.get("min_words", 0))
    pad: list[str] = []
    while checks.words(core + " " + " ".join(pad)) < min_words:
        pad.append(FILLER[len(pad) % len(FILLER)])
    body = (core + " " + " ".join(pad)).strip()
    lines: list[str] = []
    if k.get("title"):
        lines.append(f"<<{topic.title()}>>")
    if "bullets" in k:
        n = int(k["bullets"])
        lines.append(f"* {body}")
        lines += [f"* point {i + 2} on {topic}" for i in range(n - 1)]
    else:
        lines.append(body + ".")
    if "ends_with" in k:
        lines.append(str(k["ends_with"]))
    text = "\n".join(lines)
    if k.get("lowercase"):
        text = text.lower()
    if k.get("uppercase"):
        text = text.upper()
    return text if all(checks.run(text, constraints)) else None


def violating(correct: str, constraints: list[dict[str, Any]]) -> str:
    """A text that breaks at least one of the constraints."""
    long = ("Well, " + " ".join(["this goes on."] * 40)).strip()
    for text in ("Hi.", long, correct.upper() + ", OK", ""):
        if not all(checks.run(text, constraints)):
            return text
    raise ValueError(f"cannot break {constraints}")

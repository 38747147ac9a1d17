"""Enforce what the request's verifier states while the local model writes (``ttc.enforce``).

A verifier only judges an answer after it is written; a grammar keeps the engine from writing
answers that cannot pass. From the request's own verifier:

* ``json_schema`` → ``response_format`` with that schema (any deployment that supports structured output);
* ``checks`` → a GBNF grammar (llama.cpp deployments; an upstream llama.cpp server with
  ``params.grammar: true``) for the kinds that shape the text without cutting it:
  ``lowercase``, ``uppercase``, ``no_commas`` (the characters the model may write; the first
  letter is forced into the right case, or a small model falls into digits), ``starts_with``
  and ``title`` (fixed text first), ``ends_with`` (after at most ``DEFAULT_SENTENCES`` sentences
  of any length — the model ends each one — the ending follows), ``max_sentences`` (a bounded
  number of such sentences), ``quoted`` and ``json``.
  Not enforced, only verified: word counts, ``min_sentences``, ``include``/``exclude`` and
  ``bullets`` — a grammar meets them only by cutting, padding or forcing the text, and a
  135M model forced that way writes garbage that happens to pass (tried: bullets filled with
  ``* * *``, sentences cut to a word cap ended in made-up words).

Deployments that cannot take a grammar get the request unchanged; the verifier still scores
their answers. Nothing here looks at anything but the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openmaas.ttc import checks as checks_mod

DEFAULT_SENTENCES = 3
ENFORCEABLE = (
    "lowercase",
    "uppercase",
    "no_commas",
    "starts_with",
    "ends_with",
    "max_sentences",
    "quoted",
    "title",
    "json",
)


@dataclass(frozen=True)
class Enforcement:
    grammar: str | None = None  # GBNF, for engines that take one (llama.cpp)
    response_format: dict[str, Any] | None = None  # structured output, for engines with json_schema support
    kinds: tuple[str, ...] = ()  # what is enforced, for the response's ttc summary

    def apply(self, payload: dict[str, Any], grammar_ok: bool, json_ok: bool) -> dict[str, Any] | None:
        """The payload for one deployment, or None when it can enforce nothing of this."""
        if self.response_format is not None and json_ok:
            return {**payload, "response_format": self.response_format}
        if self.grammar is not None and grammar_ok:
            return {**payload, "grammar": self.grammar}
        return None


def for_json_schema(schema: dict[str, Any] | None) -> Enforcement:
    if not schema:
        return Enforcement(response_format={"type": "json_object"}, kinds=("json_schema",))
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    return Enforcement(response_format=fmt, kinds=("json_schema",))


def for_checks(checks: list[dict[str, Any]]) -> Enforcement | None:
    """The grammar for a ``checks`` verifier, or None when none of its kinds can be enforced."""
    by = {c["kind"]: c.get("value", True) for c in checks}
    if "json" in by:
        value = by["json"]
        schema = value if isinstance(value, dict) else None
        return Enforcement(response_format=for_json_schema(schema).response_format, kinds=("json",))
    kinds = tuple(k for k in by if k in ENFORCEABLE and by[k] is not False)
    if not kinds:
        return None
    return Enforcement(grammar=_grammar(by), kinds=kinds)


def _literal(text: str) -> str:
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return '"' + out.replace("\t", "\\t") + '"'


def _class(excluded: list[str], extra: str = "") -> str:
    escaped = "".join("\\n" if ch == "\n" else "\\" + ch if ch in '\\]^-"' else ch for ch in extra)
    return "[^" + "".join(excluded) + escaped + "]"


def _case(text: str, by: dict[str, Any]) -> str:
    if by.get("lowercase"):
        return text.lower()
    if by.get("uppercase"):
        return text.upper()
    return text


def _grammar(by: dict[str, Any]) -> str:
    excluded = ["\\x00"]
    if by.get("lowercase"):
        excluded += ["A-Z", "\\u00C0-\\u00D6", "\\u00D8-\\u00DE"]
    if by.get("uppercase"):
        excluded += ["a-z", "\\u00DF-\\u00F6", "\\u00F8-\\u00FF"]
    if by.get("no_commas"):
        excluded.append(",")
    if by.get("quoted"):
        excluded.append('\\"')
    rules = {
        "c": _class(excluded),  # any character the answer may contain
        "sc": _class(excluded, ".!?"),  # inside a sentence
        "tc": _class(excluded, "\n<>"),  # inside a title
        # the first letter: forced into the right case (a small model's "The" is otherwise refused,
        # and it falls into digits and punctuation)
        "f": "[a-z]" if by.get("lowercase") else "[A-Z]" if by.get("uppercase") else _class(excluded, " \n.!?"),
    }
    start = _case(str(by["starts_with"]), by) if "starts_with" in by else None
    end = _case(str(by["ends_with"]), by) if "ends_with" in by else None
    head: list[str] = []
    if start is not None:
        head.append(_literal(start))
    if by.get("title"):
        head += (['" "'] if start is not None else []) + ['"<<" tc+ ">>\\n"']
    # after a fixed opening the model goes on as it likes; otherwise its first letter is in the right case
    lead = " ".join([*head, *([] if start is not None else ["f"])]) + " "
    if "max_sentences" in by or end is not None:
        # a bounded number of sentences (of any length): the model ends each one, and the last is followed
        # by the required ending, so the grammar never has to cut a sentence short
        ending = checks_mod.sentences(end) if end else 0
        own = max(1, int(by.get("max_sentences", DEFAULT_SENTENCES + ending)) - ending)
        body = f"{lead}sc* [.!?] ([ \\n]+ sc+ [.!?]){{0,{own - 1}}}"
        if end is not None:
            body += f' " " {_literal(end)}'
    else:
        body = f"{lead}c*"
    if by.get("quoted"):
        body = f'"\\"" {body} "\\""'
    lines = [f"root ::= {body}"] + [f"{name} ::= {rule}" for name, rule in rules.items()]
    return "\n".join(lines) + "\n"

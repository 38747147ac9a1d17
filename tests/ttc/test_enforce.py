"""ttc.enforce: which checks become a grammar or a schema, and which deployments get them.

That llama.cpp accepts these grammars and its answers keep to them is asserted on the real
engine in tests/real/test_ttc_real.py."""

from __future__ import annotations

import re

from openmaas.ttc.enforce import Enforcement, for_checks, for_json_schema


def rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())


def test_content_kinds_are_only_verified_never_enforced() -> None:
    content = [
        {"kind": "max_words", "value": 20},
        {"kind": "include", "value": ["sun"]},
        {"kind": "bullets", "value": 2},
        {"kind": "min_sentences", "value": 2},
    ]
    assert for_checks(content) is None
    mixed = for_checks([*content, {"kind": "no_commas", "value": True}])
    assert mixed is not None and mixed.kinds == ("no_commas",)


def test_character_kinds_shape_every_character_and_the_first_letter() -> None:
    e = for_checks([{"kind": "lowercase", "value": True}, {"kind": "no_commas", "value": True}])
    assert e is not None and e.grammar is not None and e.response_format is None
    g = rules(e.grammar)
    assert "A-Z" in g["c"] and "," in g["c"] and g["c"].startswith("[^")
    assert g["f"] == "[a-z]"  # the first letter is lowercase, not just "not uppercase"
    assert g["root"] == "f c*"
    upper = rules(for_checks([{"kind": "uppercase", "value": True}]).grammar)  # type: ignore[union-attr]
    assert upper["f"] == "[A-Z]" and "a-z" in upper["c"] and "A-Z" not in upper["c"]


def test_fixed_openings_and_endings_are_literals_in_the_requested_case_and_escaped() -> None:
    e = for_checks(
        [
            {"kind": "starts_with", "value": 'Say "Hi" \\ Now'},
            {"kind": "ends_with", "value": "The End."},
            {"kind": "lowercase", "value": True},
        ]
    )
    assert e is not None and e.grammar is not None
    root = rules(e.grammar)["root"]
    assert root.startswith('"say \\"hi\\" \\\\ now" ')  # lower-cased (the check ignores case), quotes escaped
    assert root.endswith('" " "the end."')
    # three sentences of the model's own before the ending: {0,2} more after the first
    assert "{0,2}" in root


def test_max_sentences_counts_the_fixed_ending_as_one_of_them() -> None:
    e = for_checks([{"kind": "max_sentences", "value": 2}, {"kind": "ends_with", "value": "Thank you."}])
    assert e is not None and e.grammar is not None
    assert "{0,0}" in rules(e.grammar)["root"]  # one sentence of the model's, then "Thank you."
    alone = for_checks([{"kind": "max_sentences", "value": 3}])
    assert alone is not None and "{0,2}" in rules(alone.grammar or "")["root"]


def test_title_and_quotes_wrap_the_text() -> None:
    e = for_checks([{"kind": "title", "value": True}, {"kind": "quoted", "value": True}])
    assert e is not None and e.grammar is not None
    g = rules(e.grammar)
    assert re.fullmatch(r'"\\"" "<<" tc\+ ">>\\n" f c\* "\\""', g["root"]), g["root"]
    assert '\\"' in g["c"]  # no quotation mark inside the quotes


def test_json_checks_and_json_schema_verifiers_become_structured_output() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    e = for_checks([{"kind": "json", "value": schema}, {"kind": "lowercase", "value": True}])
    assert e is not None and e.grammar is None
    assert e.response_format == {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    assert for_checks([{"kind": "json", "value": True}]).response_format == {"type": "json_object"}  # type: ignore[union-attr]
    assert for_json_schema(None).response_format == {"type": "json_object"}


def test_each_deployment_gets_what_it_can_take() -> None:
    body = {"model": "m", "messages": []}
    grammar = Enforcement(grammar="root ::= [a-z]+\n", kinds=("lowercase",))
    assert grammar.apply(body, grammar_ok=True, json_ok=True) == {**body, "grammar": "root ::= [a-z]+\n"}
    assert grammar.apply(body, grammar_ok=False, json_ok=True) is None
    fmt = {"type": "json_object"}
    structured = Enforcement(response_format=fmt, kinds=("json",))
    assert structured.apply(body, grammar_ok=False, json_ok=True) == {**body, "response_format": fmt}
    assert structured.apply(body, grammar_ok=True, json_ok=False) is None
    assert "grammar" not in body and "response_format" not in body  # the caller's body is not changed

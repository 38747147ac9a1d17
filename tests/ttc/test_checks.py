import pytest

from openmaas.errors import InvalidRequest
from openmaas.ttc import checks


@pytest.mark.parametrize(
    ("kind", "value", "good", "bad"),
    [
        ("min_words", 3, "one two three", "one two"),
        ("max_words", 2, "one two", "one two three"),
        ("min_sentences", 2, "One. Two.", "Only one."),
        ("max_sentences", 1, "Only one.", "One. Two!"),
        ("include", ["apple", "pear"], "An apple and a pear.", "An apple and a peach."),
        ("exclude", ["cat"], "A dog and a catalogue.", "The cat sat."),
        ("starts_with", "Dear team", "dear team, hello", "Hello, dear team"),
        ("ends_with", "Any questions?", "Done. Any questions?", "Any questions? Done."),
        ("lowercase", True, "all small here", "Not all small"),
        ("uppercase", True, "LOUD 123", "Quiet"),
        ("no_commas", True, "no commas here", "one, two"),
        ("bullets", 2, "* a\n* b", "* a\n* b\n- c"),
        ("json", {"type": "object", "required": ["x"]}, '```json\n{"x": 1}\n```', '{"y": 1}'),
        ("json", True, "[1, 2]", "[1, 2"),
        ("quoted", True, '"hello there"', 'hello "there"'),
        ("title", True, "<<My poem>>\nroses", "<My poem>"),
    ],
)
def test_each_check_passes_what_it_should_and_fails_what_it_should_not(
    kind: str, value: object, good: str, bad: str
) -> None:
    spec = checks.validate([{"kind": kind, "value": value}])
    assert checks.run(good, spec) == [True]
    assert checks.run(bad, spec) == [False]


def test_every_kind_has_a_sentence_for_the_prompt() -> None:
    samples = {"include": ["a"], "exclude": ["b"], "starts_with": "x", "ends_with": "y", "json": True}
    for kind in checks.KINDS:
        value = samples.get(kind, 3 if "words" in kind or "sentences" in kind or kind == "bullets" else True)
        assert checks.describe({"kind": kind, "value": value}).endswith(".")


@pytest.mark.parametrize(
    "bad",
    [
        None,
        [],
        [{"kind": "rhymes"}],
        [{"kind": "max_words", "value": "ten"}],
        [{"kind": "max_words", "value": True}],
        [{"kind": "include", "value": [1]}],
        ["max_words"],
        [{"kind": "json", "value": {"type": "nope"}}],
    ],
)
def test_bad_checks_are_a_400_naming_the_field(bad: object) -> None:
    with pytest.raises(InvalidRequest) as info:
        checks.validate(bad)
    assert info.value.param == "ttc.verifier.checks"

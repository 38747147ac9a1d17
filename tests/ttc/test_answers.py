"""Final-answer extraction and the suffix grammar."""

from __future__ import annotations

import pytest

from openmaas.errors import InvalidRequest
from openmaas.ttc.answers import final_answer
from openmaas.ttc.spec import split_suffix


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("6 x 7 = 42, so the answer is 42.", "42"),
        ("The total is 1,250 apples.", "1250"),
        ("We get \\boxed{3/4}", "0.75"),
        ("reasoning...\n#### 18", "18"),
        ("Answer: (B)", "B"),
        ("C", "C"),
        ("Final answer: Paris", "paris"),
        ("", None),
    ],
)
def test_final_answers_are_extracted_and_normalised(text: str, answer: str | None) -> None:
    assert final_answer(text) == answer


def test_suffix_grammar() -> None:
    assert split_suffix("smollm2-135m@best-of-8") == ("smollm2-135m", {"strategy": "best_of_n", "n": 8})
    assert split_suffix("m@sc-5") == ("m", {"strategy": "self_consistency", "n": 5})
    assert split_suffix("m@refine-2") == ("m", {"strategy": "self_refine", "max_rounds": 2})
    assert split_suffix("m@cascade:gpt-strong") == ("m", {"strategy": "cascade", "escalate_to": "gpt-strong"})
    assert split_suffix("plain-model") == ("plain-model", None)
    with pytest.raises(InvalidRequest):
        split_suffix("m@nonsense")


def test_json_answers_vote_together_whatever_their_layout() -> None:
    a = final_answer('```json\n{"city": "Oslo", "quantity": 3}\n```')
    b = final_answer('{"quantity":3,  "city":"oslo"}')
    assert a is not None and a == b
    assert final_answer('{"quantity": 4, "city": "Oslo"}') != a
    assert final_answer("{not json} so the answer is 5") == "5"

"""Test-time compute on the real SmolLM2 model (llama.cpp), through the endpoint with the openai SDK.

What is asserted is the mechanics on real, varied output — candidates, verifier scores, the pick,
rounds, escalation, and that usage counts every token — not that a 135M model is right."""

from __future__ import annotations

import json
from typing import Any

import openai
import pytest

from openmaas.ttc import checks
from tests.real.conftest import RunningServer

pytestmark = pytest.mark.real


@pytest.fixture
def client(real_server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=real_server.base_url + "/v1", api_key="any", max_retries=0, timeout=300)


def _ttc(r: Any) -> dict[str, Any]:
    summary = (r.model_extra or {})["ttc"]
    assert isinstance(summary, dict)
    return summary


def _usage_is_every_call(r: Any, summary: dict[str, Any]) -> None:
    roles = summary["usage"]["by_role"].values()
    assert r.usage.completion_tokens == sum(role["completion_tokens"] for role in roles)
    assert r.usage.prompt_tokens == sum(role["prompt_tokens"] for role in roles)
    chosen = summary["usage"]["chosen"]["completion_tokens"]
    assert summary["usage"]["extra"]["completion_tokens"] == r.usage.completion_tokens - chosen


def test_best_of_n_with_the_requests_checks_picks_a_top_scoring_candidate(client: openai.OpenAI) -> None:
    rules = [{"kind": "include", "value": ["water"]}, {"kind": "max_words", "value": 40}]
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Write two sentences about the sea. Use the word water."}],
        max_tokens=48,
        extra_body={"ttc": {"strategy": "best_of_n", "n": 4, "verifier": {"type": "checks", "checks": rules}}},
    )
    summary = _ttc(r)
    assert len(summary["candidates"]) == 4
    scores = [c["score"] for c in summary["candidates"]]
    assert summary["candidates"][summary["chosen"]]["score"] == max(scores)
    text = r.choices[0].message.content or ""
    assert round(sum(checks.run(text, rules)) / 2, 4) == max(scores)  # the returned text is the scored one
    assert summary["usage"]["by_role"]["candidate"]["calls"] == 4
    _usage_is_every_call(r, summary)


def test_self_consistency_by_suffix_returns_the_majority_answer(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m@sc-5",
        messages=[{"role": "user", "content": "Tom has 3 apples and buys 4 more. How many apples? Answer: N"}],
        max_tokens=48,
    )
    summary = _ttc(r)
    assert summary["strategy"] == "self_consistency" and len(summary["candidates"]) == 5
    answers = [c["answer"] for c in summary["candidates"]]
    chosen = summary["candidates"][summary["chosen"]]
    top = max(answers.count(a) for a in answers if a is not None)
    assert answers.count(chosen["answer"]) == top
    assert chosen["score"] == pytest.approx(top / 5, abs=1e-4)
    assert r.model == "smollm2-135m"  # like OpenAI, the response names the model that answered
    _usage_is_every_call(r, summary)


def test_self_refine_with_a_json_schema_stops_when_valid_or_out_of_rounds(client: openai.OpenAI) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": 'Reply with JSON like {"city": "..."} naming the capital of France.'}],
        max_tokens=40,
        extra_body={
            "ttc": {"strategy": "self_refine", "max_rounds": 2, "verifier": {"type": "json_schema", "schema": schema}}
        },
    )
    summary = _ttc(r)
    scores = [c["score"] for c in summary["candidates"]]
    assert len(scores) == 1 + summary["rounds"] and summary["rounds"] <= 2
    assert all(s < 1.0 for s in scores[:-1])  # it stopped at the first valid answer
    if summary["rounds"] < 2:
        assert scores[-1] == 1.0
    assert summary["usage"]["by_role"].get("refinement", {"calls": 0})["calls"] == summary["rounds"]
    _usage_is_every_call(r, summary)


@pytest.mark.parametrize(("threshold", "escalates"), [(0.0, False), (1.0, True)])
def test_cascade_uses_the_engines_real_logprobs(client: openai.OpenAI, threshold: float, escalates: bool) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Name a colour."}],
        max_tokens=12,
        extra_body={"ttc": {"strategy": "cascade", "escalate_to": "default", "threshold": threshold}},
    )
    summary = _ttc(r)
    first = summary["candidates"][0]
    assert 0.0 < first["score"] < 1.0 and first["detail"].startswith("mean logprob")
    assert summary["escalated"] is escalates
    assert len(summary["candidates"]) == (2 if escalates else 1)
    _usage_is_every_call(r, summary)


def test_python_tests_and_judge_verifiers_on_real_answers(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Write a Python function add(a, b) that returns a + b."}],
        max_tokens=64,
        extra_body={
            "ttc": {
                "strategy": "best_of_n",
                "n": 2,
                "verifier": {"type": "python_tests", "tests": "assert add(2, 3) == 5"},
            }
        },
    )
    summary = _ttc(r)
    for c in summary["candidates"]:
        assert (c["score"], c["detail"]) in ((1.0, "ok"), (0.0, "failed"), (0.0, "error"), (0.0, "timeout"))
    judged = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say hello politely."}],
        max_tokens=16,
        extra_body={"ttc": {"strategy": "best_of_n", "n": 2, "verifier": "judge"}},
    )
    jsum = _ttc(judged)
    assert jsum["usage"]["by_role"]["judge"]["calls"] == 2  # one judgement per candidate, billed
    assert all(c["detail"].startswith("judge:") for c in jsum["candidates"])
    _usage_is_every_call(judged, jsum)


def test_a_streamed_best_of_n_sends_the_chosen_answer_then_usage_with_ttc(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="smollm2-135m@best-of-3",
        messages=[{"role": "user", "content": "Give me one word for happy."}],
        max_tokens=16,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    last = chunks[-1]
    assert text and last.usage is not None
    summary = (last.model_extra or {})["ttc"]
    assert len(summary["candidates"]) == 3
    assert last.usage.completion_tokens == sum(c["completion_tokens"] for c in summary["candidates"])


def test_enforce_makes_the_engine_write_within_the_requests_checks(client: openai.OpenAI) -> None:
    rules = [
        {"kind": "lowercase", "value": True},
        {"kind": "no_commas", "value": True},
        {"kind": "starts_with", "value": 'Note "A"'},  # a quotation mark must reach llama.cpp escaped
        {"kind": "ends_with", "value": "The end."},
        {"kind": "max_sentences", "value": 3},
    ]
    ask = [{"role": "user", "content": "Write a short text about the sea. " + " ".join(map(checks.describe, rules))}]
    ttc = {"strategy": "best_of_n", "n": 2, "verifier": {"type": "checks", "checks": rules}, "enforce": True}
    r = client.chat.completions.create(model="smollm2-135m", messages=ask, max_tokens=160, extra_body={"ttc": ttc})
    summary = _ttc(r)
    assert summary["enforced"] == ["lowercase", "no_commas", "starts_with", "ends_with", "max_sentences"]
    assert all(c["enforced"] for c in summary["candidates"])
    text = r.choices[0].message.content or ""
    # what the grammar guarantees from the first token on, whatever the model would have written
    assert text == text.lower() and "," not in text and text.startswith('note "a"'), text
    # the ending comes after at most two sentences of the model's own, unless the token budget ran out first
    finished = r.choices[0].finish_reason == "stop"
    assert (finished and all(checks.run(text, rules))) or (not finished and not text.endswith("the end.")), text
    _usage_is_every_call(r, summary)


def test_enforce_with_a_json_schema_verifier_gets_valid_json_from_the_engine(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "people": {"type": "integer"}},
        "required": ["city", "people"],
    }
    ttc = {"strategy": "best_of_n", "n": 2, "verifier": {"type": "json_schema", "schema": schema}, "enforce": True}
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Which city is the capital of France, and how many people live there?"}],
        max_tokens=96,
        extra_body={"ttc": ttc},
    )
    summary = _ttc(r)
    assert summary["enforced"] == ["json_schema"] and all(c["enforced"] for c in summary["candidates"])
    assert [c["score"] for c in summary["candidates"]] == [1.0, 1.0]
    assert set(json.loads(r.choices[0].message.content or "")) >= {"city", "people"}


@pytest.mark.parametrize("literal", ['Say "hi"', "back\\slash", "tab\there", "[a-z] ^-", "emoji 😀 中", "new\nline"])
def test_enforced_openings_reach_the_engine_intact_whatever_their_characters(
    client: openai.OpenAI, literal: str
) -> None:
    rules = [{"kind": "starts_with", "value": literal}, {"kind": "no_commas", "value": True}]
    ttc = {"strategy": "best_of_n", "n": 1, "verifier": {"type": "checks", "checks": rules}, "enforce": True}
    r = client.chat.completions.create(
        model="smollm2-135m",
        messages=[{"role": "user", "content": "Say something."}],
        max_tokens=24,
        temperature=0,
        extra_body={"ttc": ttc},
    )
    text = r.choices[0].message.content or ""
    assert text.startswith(literal) and "," not in text, repr(text)
    assert _ttc(r)["candidates"][0]["enforced"] is True

"""Test-time compute through the public endpoint (real loopback HTTP, the official SDK) on fake deployments."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from openmaas.server import create_app
from openmaas.settings import Settings
from openmaas.testing.serve import serve_app
from tests.helpers import ADMIN_KEY

pytestmark = pytest.mark.anyio
ASK = [{"role": "user", "content": "What is 6 times 7?"}]
VOTES = ["The answer is 41.", "The answer is 42.", "Let me see: 42", "I think 7"]


@contextlib.asynccontextmanager
async def stack(tmp_path: Any, monkeypatch: pytest.MonkeyPatch, policy: str = "allow") -> AsyncIterator[Any]:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)

    def fake(name: str, price: float, locality: str = "local", **params: Any) -> dict[str, Any]:
        pricing = {"input_per_mtok": price, "output_per_mtok": price}
        return {
            "name": name,
            "backend": "fake",
            "model": name,
            "locality": locality,
            "params": params,
            "pricing": pricing,
        }

    settings = Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "deployments": [
                fake("cheap", 1, replies=VOTES),
                fake("greedy", 1, reply="The answer is 41.", greedy_reply="The answer is 42."),
                fake("json", 1, replies=["not json at all", '{"name": "Ann"}', '{"name": 3}']),
                fake("unsure", 1, reply="The answer is 41.", logprobs=[-2.5]),
                fake("sure", 1, reply="The answer is 42.", logprobs=[-0.01]),
                fake("strong", 10, reply="The answer is 42."),
                fake("judge", 1, reply="Score: 9"),
                fake("cloud-strong", 10, "cloud", reply="The answer is 42."),
                # takes a grammar, as llama.cpp does: without one it writes what the checks below refuse
                fake("shaped", 1, reply="Hello, World", grammar_reply="hello world"),
            ],
            "aliases": {},
            "ttc": {"max_n": 8, "max_rounds": 3, "judge_model": "judge"},
            "privacy": {"policy": policy},
        }
    )
    async with serve_app(create_app(settings)) as url:
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
        admin = httpx.AsyncClient(base_url=url, headers={"authorization": f"Bearer {ADMIN_KEY}"})
        try:
            yield type("Stack", (), {"client": client, "admin": admin, "app": None})
        finally:
            await client.close()
            await admin.aclose()


async def ledger(s: Any, raw: Any) -> dict[str, Any]:
    await asyncio.sleep(0)
    resp = await s.admin.get(f"/admin/audit/{raw.headers['x-request-id']}")
    assert resp.status_code == 200, resp.text
    (event,) = resp.json()["data"]
    return dict(event)


async def test_best_of_n_picks_what_the_requests_regex_accepts_and_bills_every_candidate(tmp_path, monkeypatch):
    async with stack(tmp_path, monkeypatch) as s:
        ttc = {"strategy": "best_of_n", "n": 4, "verifier": {"type": "regex", "pattern": r"\b42\b"}}
        raw = await s.client.chat.completions.with_raw_response.create(
            model="cheap", messages=ASK, extra_body={"ttc": ttc}
        )
        body = json.loads(raw.text)
        assert "42" in body["choices"][0]["message"]["content"]
        info = body["ttc"]
        assert info["strategy"] == "best_of_n" and len(info["candidates"]) == 4
        assert sorted(c["score"] for c in info["candidates"]) == [0.0, 0.0, 1.0, 1.0]
        completion = sum(len(v.split()) for v in VOTES)  # the fake counts words as tokens
        assert body["usage"]["completion_tokens"] == completion
        assert info["usage"]["by_role"]["candidate"]["calls"] == 4
        assert info["usage"]["extra"]["completion_tokens"] == completion - info["usage"]["chosen"]["completion_tokens"]
        event = await ledger(s, raw)
        assert event["completion_tokens"] == completion and event["prompt_tokens"] == body["usage"]["prompt_tokens"]
        assert raw.headers["x-openmaas-ttc"] == "best_of_n"
        # the audit record (the console's data-flow view) keeps every call: role, score, tokens — never the text
        calls = event["route"]["ttc"]["calls"]
        assert len(calls) == 4 and sum(c["completion_tokens"] for c in calls) == completion
        assert sorted(c["score"] for c in calls) == [0.0, 0.0, 1.0, 1.0]
        assert [c["score"] for c in calls if c["chosen"]] == [1.0]
        assert not any(v in json.dumps(event["route"]) for v in VOTES)


async def test_best_of_n_keeps_one_greedy_candidate_unless_the_request_sets_a_temperature(tmp_path, monkeypatch):
    ttc = {"strategy": "best_of_n", "n": 4, "verifier": {"type": "regex", "pattern": r"\b42\b"}}
    async with stack(tmp_path, monkeypatch) as s:
        reply = await s.client.chat.completions.create(model="greedy", messages=ASK, extra_body={"ttc": ttc})
        scores = [c["score"] for c in (reply.model_extra or {})["ttc"]["candidates"]]
        assert sorted(scores) == [0.0, 0.0, 0.0, 1.0]  # exactly one greedy answer among the samples
        assert "42" in (reply.choices[0].message.content or "")
        sampled = await s.client.chat.completions.create(
            model="greedy", messages=ASK, temperature=0.9, extra_body={"ttc": ttc}
        )
        assert [c["score"] for c in (sampled.model_extra or {})["ttc"]["candidates"]] == [0.0] * 4


async def test_self_consistency_votes_and_the_model_suffix_asks_for_it(tmp_path, monkeypatch):
    async with stack(tmp_path, monkeypatch) as s:
        reply = await s.client.chat.completions.create(model="cheap@sc-4", messages=ASK)
        extra = reply.model_extra or {}
        assert extra["ttc"]["strategy"] == "self_consistency" and len(extra["ttc"]["candidates"]) == 4
        assert "42" in (reply.choices[0].message.content or "")
        assert [c["answer"] for c in extra["ttc"]["candidates"]] == ["41", "42", "42", "7"]
        assert reply.usage is not None and reply.usage.completion_tokens == sum(len(v.split()) for v in VOTES)


async def test_self_refine_stops_once_the_schema_is_met(tmp_path, monkeypatch):
    schema = {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}
    async with stack(tmp_path, monkeypatch) as s:
        reply = await s.client.chat.completions.create(
            model="json",
            messages=[{"role": "user", "content": "Give me a JSON person"}],
            response_format={"type": "json_schema", "json_schema": {"name": "p", "schema": schema}},
            extra_body={"ttc": {"strategy": "self_refine", "max_rounds": 3, "verifier": "json_schema"}},
        )
        info = (reply.model_extra or {})["ttc"]
        assert json.loads(reply.choices[0].message.content or "") == {"name": "Ann"}
        assert info["rounds"] == 1 and [c["role"] for c in info["candidates"]] == ["candidate", "refinement"]


async def test_cascade_escalates_only_when_confidence_is_low(tmp_path, monkeypatch):
    async with stack(tmp_path, monkeypatch) as s:
        ttc = {"strategy": "cascade", "escalate_to": "strong", "verifier": "logprob", "threshold": 0.5}
        low = await s.client.chat.completions.create(model="unsure", messages=ASK, extra_body={"ttc": ttc})
        info = (low.model_extra or {})["ttc"]
        assert info["escalated"] is True and info["candidates"][-1]["deployment"] == "strong"
        assert info["usage"]["by_role"]["escalation"]["calls"] == 1
        high = await s.client.chat.completions.create(model="sure", messages=ASK, extra_body={"ttc": ttc})
        assert (high.model_extra or {})["ttc"]["escalated"] is False
        # The escalated request costs both calls, each at its own deployment's price.
        raw = await s.client.chat.completions.with_raw_response.create(
            model="unsure", messages=ASK, extra_body={"ttc": ttc}
        )
        event = await ledger(s, raw)
        usage = json.loads(raw.text)["ttc"]["usage"]
        assert event["cost_usd"] == pytest.approx(usage["cost_usd"])
        assert event["deployment"] == "strong"


async def test_a_cascade_without_a_verifier_asks_for_logprobs_and_trusts_a_confident_answer(tmp_path, monkeypatch):
    async with stack(tmp_path, monkeypatch) as s:
        ttc = {"strategy": "cascade", "escalate_to": "strong"}
        reply = await s.client.chat.completions.create(model="sure", messages=ASK, extra_body={"ttc": ttc})
        info = (reply.model_extra or {})["ttc"]
        assert info["verifier"] == "logprob" and info["escalated"] is False
        assert info["candidates"][0]["score"] > 0.9


async def test_a_cascade_may_try_a_local_best_of_n_before_escalating(tmp_path, monkeypatch):
    rules = {"type": "checks", "checks": [{"kind": "include", "value": ["42"]}]}
    async with stack(tmp_path, monkeypatch) as s:
        ttc = {"strategy": "cascade", "n": 4, "escalate_to": "strong", "verifier": rules, "threshold": 1.0}
        kept = await s.client.chat.completions.create(model="cheap", messages=ASK, extra_body={"ttc": ttc})
        info = (kept.model_extra or {})["ttc"]
        assert info["escalated"] is False and len(info["candidates"]) == 4  # two of the four local answers pass
        assert "42" in (kept.choices[0].message.content or "")
        assert info["usage"]["by_role"]["candidate"]["calls"] == 4 and "escalation" not in info["usage"]["by_role"]
        ttc["verifier"] = {"type": "checks", "checks": [{"kind": "include", "value": ["43"]}]}
        raw = await s.client.chat.completions.with_raw_response.create(
            model="cheap", messages=ASK, extra_body={"ttc": ttc}
        )
        body = json.loads(raw.text)
        info = body["ttc"]
        assert info["escalated"] is True and [c["deployment"] for c in info["candidates"]] == ["cheap"] * 4 + ["strong"]
        assert info["chosen"] == 4 and body["choices"][0]["message"]["content"] == "The answer is 42."
        event = await ledger(s, raw)
        assert event["completion_tokens"] == sum(len(v.split()) for v in VOTES) + 4  # four local + the strong answer
        assert event["cost_usd"] == pytest.approx(info["usage"]["cost_usd"])


LOWER_NO_COMMAS = {"type": "checks", "checks": [{"kind": "lowercase"}, {"kind": "no_commas"}]}


async def test_enforce_sends_the_checks_grammar_to_deployments_that_take_one(tmp_path, monkeypatch):
    async with stack(tmp_path, monkeypatch) as s:
        ttc = {"strategy": "best_of_n", "n": 2, "verifier": LOWER_NO_COMMAS, "enforce": True}
        shaped = await s.client.chat.completions.create(model="shaped", messages=ASK, extra_body={"ttc": ttc})
        info = (shaped.model_extra or {})["ttc"]
        assert info["enforced"] == ["lowercase", "no_commas"]
        assert [c["enforced"] for c in info["candidates"]] == [True, True]
        assert shaped.choices[0].message.content == "hello world" and info["candidates"][0]["score"] == 1.0
        # without enforce the same deployment writes unconstrained, and the checks fail it
        plain = {**ttc, "enforce": False}
        free = await s.client.chat.completions.create(model="shaped", messages=ASK, extra_body={"ttc": plain})
        info = (free.model_extra or {})["ttc"]
        assert info["enforced"] == [] and [c["enforced"] for c in info["candidates"]] == [False, False]
        assert free.choices[0].message.content == "Hello, World" and info["candidates"][0]["score"] == 0.0
        # a deployment that takes no grammar gets the request unchanged; its answers are still verified
        other = await s.client.chat.completions.create(model="cheap", messages=ASK, extra_body={"ttc": ttc})
        assert [c["enforced"] for c in (other.model_extra or {})["ttc"]["candidates"]] == [False, False]
        # the caller's own grammar comes first
        own = await s.client.chat.completions.create(
            model="shaped", messages=ASK, extra_body={"ttc": ttc, "grammar": 'root ::= "x"'}
        )
        assert [c["enforced"] for c in (own.model_extra or {})["ttc"]["candidates"]] == [False, False]


async def test_an_enforced_cascade_escalates_to_a_model_without_grammars_unchanged(tmp_path, monkeypatch):
    rules = {"type": "checks", "checks": [{"kind": "lowercase"}, {"kind": "include", "value": ["answer"]}]}
    async with stack(tmp_path, monkeypatch) as s:
        ttc = {"strategy": "cascade", "escalate_to": "strong", "verifier": rules, "threshold": 1.0, "enforce": True}
        raw = await s.client.chat.completions.with_raw_response.create(
            model="shaped", messages=ASK, extra_body={"ttc": ttc}
        )
        info = json.loads(raw.text)["ttc"]
        assert info["escalated"] is True  # "hello world" is lowercase but lacks "answer"
        assert [(c["deployment"], c["enforced"]) for c in info["candidates"]] == [("shaped", True), ("strong", False)]
        event = await ledger(s, raw)
        assert event["completion_tokens"] == 2 + 4  # "hello world" and "The answer is 42.": both billed


async def test_a_cascade_never_escalates_personal_data_past_the_privacy_policy(tmp_path, monkeypatch):
    async with stack(tmp_path, monkeypatch, policy="local_only") as s:
        ttc = {"strategy": "cascade", "escalate_to": "cloud-strong", "verifier": "logprob"}
        private = [{"role": "user", "content": "Mail ann@example.com: what is 6 times 7?"}]
        reply = await s.client.chat.completions.create(model="unsure", messages=private, extra_body={"ttc": ttc})
        info = (reply.model_extra or {})["ttc"]
        assert info["escalated"] is False and info["escalation_refused"] == "privacy_policy_violation"
        assert [c["deployment"] for c in info["candidates"]] == ["unsure"]
        public = await s.client.chat.completions.create(model="unsure", messages=ASK, extra_body={"ttc": ttc})
        assert (public.model_extra or {})["ttc"]["candidates"][-1]["deployment"] == "cloud-strong"


async def test_judge_scores_are_metered_and_streaming_sends_the_chosen_answer(tmp_path, monkeypatch):
    async with stack(tmp_path, monkeypatch) as s:
        ttc = {"strategy": "best_of_n", "n": 2, "verifier": "judge"}
        stream = await s.client.chat.completions.create(
            model="cheap", messages=ASK, stream=True, stream_options={"include_usage": True}, extra_body={"ttc": ttc}
        )
        text, usage, info = "", None, None
        async for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
            if chunk.usage:
                usage, info = chunk.usage, (chunk.model_extra or {}).get("ttc")
        assert text in VOTES[:2]
        assert info is not None and info["usage"]["by_role"]["judge"]["calls"] == 2
        assert usage is not None and usage.completion_tokens == len(VOTES[0].split()) + len(VOTES[1].split()) + 2 * 2


@pytest.mark.parametrize(
    ("model", "extra", "param"),
    [
        ("cheap", {"ttc": {"strategy": "best_of_everything"}}, "ttc.strategy"),
        ("cheap", {"ttc": {"strategy": "best_of_n", "n": 99}}, "ttc.n"),
        ("cheap", {"ttc": {"strategy": "best_of_n", "n": "4"}}, "ttc.n"),
        ("cheap", {"ttc": {"strategy": "best_of_n", "verifier": "oracle"}}, "ttc.verifier.type"),
        (
            "cheap",
            {"ttc": {"strategy": "best_of_n", "verifier": {"type": "regex", "pattern": "("}}},
            "ttc.verifier.pattern",
        ),
        ("cheap", {"ttc": {"strategy": "cascade"}}, "ttc.escalate_to"),
        (
            "cheap",
            {"ttc": {"strategy": "best_of_n", "verifier": {"type": "json_schema", "schema": {"type": "nope"}}}},
            "ttc.verifier.schema",
        ),
        (
            "cheap",
            {"ttc": {"strategy": "best_of_n", "verifier": {"type": "checks", "checks": [{"kind": "rhymes"}]}}},
            "ttc.verifier.checks",
        ),
        ("cheap", {"ttc": {"strategy": "self_refine", "max_rounds": 9}}, "ttc.max_rounds"),
        (
            "cheap",
            {
                "ttc": {"strategy": "best_of_n"},
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": 5}}},
            },
            "response_format.json_schema.schema",
        ),
        ("cheap", {"ttc": "best_of_n"}, "ttc"),
        ("cheap", {"ttc": {"strategy": "best_of_n", "verifier": LOWER_NO_COMMAS, "enforce": "yes"}}, "ttc.enforce"),
        ("cheap", {"ttc": {"strategy": "best_of_n", "verifier": "vote", "enforce": True}}, "ttc.enforce"),
        ("cheap", {"ttc": {"strategy": "self_consistency", "enforce": True}}, "ttc.enforce"),
        ("cheap", {"ttc": {"strategy": "best_of_n", "surprise": 1}}, "ttc"),
        ("cheap@best-of-99", {}, "ttc.n"),
        ("cheap@magic-3", {}, "model"),
    ],
)
async def test_bad_ttc_parameters_are_a_400(tmp_path, monkeypatch, model, extra, param):
    async with stack(tmp_path, monkeypatch) as s:
        with pytest.raises(openai.BadRequestError) as err:
            await s.client.chat.completions.create(model=model, messages=ASK, extra_body=extra)
        assert err.value.status_code == 400
        assert (err.value.body or {}).get("param") == param, err.value.body

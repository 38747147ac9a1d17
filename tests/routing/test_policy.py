from __future__ import annotations

import json
from typing import Any

import pytest

from openmaas.core.view import PromptView
from openmaas.errors import ContextLengthExceeded, ModelNotFound, PrivacyPolicyViolation
from openmaas.metering.pricing import estimate_prompt_tokens
from openmaas.privacy.classify import PrivacyClass
from openmaas.routing.health import Health
from openmaas.routing.policy import Policy, estimate_difficulty
from openmaas.settings import Settings

PUBLIC = PrivacyClass()
SENSITIVE = PrivacyClass("sensitive", ("EMAIL_ADDRESS",))
BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}


def policy() -> tuple[Policy, dict[str, Health]]:
    def dep(name: str, locality: str, price: float, **kw: Any) -> dict[str, Any]:
        return {
            "name": name,
            "backend": "fake",
            "locality": locality,
            "pricing": {"input_per_mtok": price, "output_per_mtok": price},
            **kw,
        }

    settings = Settings.model_validate(
        {
            "deployments": [
                dep("local-small", "local", 0, context_length=2048, quality=0.2),
                dep("cloud-a", "cloud", 3, quality=0.9),
                dep("cloud-b", "cloud", 1, quality=0.7, capabilities={"tools": False}),
                dep("cloud-big", "cloud", 5, context_length=200_000, quality=0.8),
            ],
            "aliases": {
                "smart": {
                    "targets": ["cloud-a", {"name": "cloud-b", "weight": 2}],
                    "fallbacks": ["cloud-big"],
                    "degrade": ["local-small"],
                },
                "auto": {"targets": ["local-small", "cloud-a"]},
            },
        }
    )
    health = {d.name: Health(d.name, settings.routing.breaker) for d in settings.deployments}
    return Policy({d.name: d for d in settings.deployments}, settings.aliases, health), health


def plan(decision: Any) -> list[str]:
    return [c.name for c in decision.plan]


def test_an_alias_expands_to_targets_then_fallbacks_then_degrade() -> None:
    p, _ = policy()
    d = p.decide("smart", PromptView(BODY), PUBLIC, "allow", None, {"prefer": "quality"})
    assert plan(d) == ["cloud-a", "cloud-b", "cloud-big", "local-small"]
    assert [c.role for c in d.plan] == ["target", "target", "fallback", "degrade"]
    with pytest.raises(ModelNotFound):
        p.decide("nope", PromptView(BODY), PUBLIC, "allow", None)


def test_local_only_drops_cloud_for_sensitive_requests_and_refuses_when_nothing_local_is_left() -> None:
    p, _ = policy()
    d = p.decide("smart", PromptView(BODY), SENSITIVE, "local_only", None)
    assert plan(d) == ["local-small"]
    assert {c.name: c.reason for c in d.candidates if not c.kept} == {
        "cloud-a": "privacy",
        "cloud-b": "privacy",
        "cloud-big": "privacy",
    }
    with pytest.raises(PrivacyPolicyViolation) as err:
        p.decide("cloud-a", PromptView(BODY), SENSITIVE, "local_only", None)
    assert err.value.status == 403 and "EMAIL_ADDRESS" in str(err.value)
    assert plan(p.decide("cloud-a", PromptView(BODY), PUBLIC, "local_only", None)) == ["cloud-a"]


def test_capability_drops_and_the_context_window_fallback() -> None:
    p, _ = policy()
    tools = {**BODY, "tools": [{"type": "function", "function": {"name": "f"}}]}
    d = p.decide("smart", PromptView(tools), PUBLIC, "allow", None)
    assert "cloud-b" not in plan(d) and next(c for c in d.candidates if c.name == "cloud-b").reason == "tools"
    long = {"messages": [{"role": "user", "content": "word " * 4000}]}  # ~5k tokens: too long for local-small
    d = p.decide("smart", PromptView(long), PUBLIC, "allow", None)
    assert next(c for c in d.candidates if c.name == "local-small").reason == "context"


def test_the_window_is_checked_by_the_body_size_first_and_the_prompt_walked_only_when_that_does_not_fit() -> None:
    p, _ = policy()
    short = {"messages": [{"role": "user", "content": "word " * 100}]}
    view = PromptView(short, body_bytes=len(json.dumps(short)))
    d = p.decide("auto", view, PUBLIC, "allow", None)
    assert "local-small" in plan(d) and view._prompt_bytes is None  # the bound fitted: nothing walked
    # a body whose JSON is far larger than its text (say, padded or escaped): the bound does not fit
    # local-small's 2,048 tokens, the prompt itself does, so local-small is kept, after one walk
    view = PromptView(short, body_bytes=20_000)
    d = p.decide("auto", view, PUBLIC, "allow", None)
    assert "local-small" in plan(d) and view._prompt_bytes is not None
    long = {"messages": [{"role": "user", "content": "word " * 4000}]}
    view = PromptView(long, body_bytes=len(json.dumps(long)))
    d = p.decide("auto", view, PUBLIC, "allow", None)
    assert next(c for c in d.candidates if c.name == "local-small").reason == "context"
    with pytest.raises(ContextLengthExceeded, match=rf"about {estimate_prompt_tokens(PromptView(long))} tokens"):
        p.decide("local-small", PromptView(long, body_bytes=len(json.dumps(long))), PUBLIC, "allow", None)


def test_an_open_circuit_is_dropped() -> None:
    p, health = policy()
    health["cloud-a"].open()
    d = p.decide("smart", PromptView(BODY), PUBLIC, "allow", None)
    assert "cloud-a" not in plan(d)
    assert next(c for c in d.candidates if c.name == "cloud-a").reason == "circuit_open"


def test_preferences_order_and_max_cost_drops() -> None:
    p, _ = policy()
    assert plan(p.decide("smart", PromptView(BODY), PUBLIC, "allow", None, {"prefer": "cost"}))[:2] == [
        "cloud-b",
        "cloud-a",
    ]
    assert plan(p.decide("smart", PromptView(BODY), PUBLIC, "allow", None, {"prefer": "quality"}))[:2] == [
        "cloud-a",
        "cloud-b",
    ]
    d = p.decide("smart", PromptView(BODY), PUBLIC, "allow", 1000, {"max_cost_usd": 0.002})
    dropped = {c.name: c.reason for c in d.candidates if not c.kept}
    assert dropped == {"cloud-a": "over_max_cost", "cloud-big": "over_max_cost"}  # 1000 tokens at $3 and $5/M


def test_load_balancing_prefers_the_least_loaded_by_weight() -> None:
    p, health = policy()
    for _ in range(3):
        health["cloud-b"].begin()
    # cloud-b has weight 2 but 3 in flight: (3+1)/2 = 2 > (0+1)/1
    assert plan(p.decide("smart", PromptView(BODY), PUBLIC, "allow", None))[0] == "cloud-a"
    for _ in range(3):
        health["cloud-a"].begin()
    assert plan(p.decide("smart", PromptView(BODY), PUBLIC, "allow", None))[0] == "cloud-b"


def test_difficulty_sends_hard_requests_past_a_weak_local_model() -> None:
    p, _ = policy()
    easy = {"messages": [{"role": "user", "content": "Say hello."}]}
    hard = {
        "messages": [
            {
                "role": "user",
                "content": "Prove step by step that the algorithm below is optimal, derive its complexity:\n"
                "```python\ndef f(n):\n    return n * (n + 1) // 2\n```\n" + "Consider x = 3 + 4 * 2 - 1 / 5. " * 5,
            }
        ]
    }
    assert estimate_difficulty(PromptView(easy)) < 0.2 < estimate_difficulty(PromptView(hard))
    assert plan(p.decide("auto", PromptView(easy), PUBLIC, "allow", None))[0] == "local-small"
    assert plan(p.decide("auto", PromptView(hard), PUBLIC, "allow", None))[0] == "cloud-a"


def test_difficulty_of_a_long_prompt_reads_its_start_and_end() -> None:
    pasted = "the quarterly report lists sales by region and month. " * 200  # ~11 KB of material
    ask_last = {"messages": [{"role": "user", "content": pasted + "Prove step by step that the total is right."}]}
    ask_first = {"messages": [{"role": "system", "content": "Derive a proof."}, {"role": "user", "content": pasted}]}
    plain = {"messages": [{"role": "user", "content": pasted + "Summarise this."}]}
    assert estimate_difficulty(PromptView(ask_last)) > estimate_difficulty(PromptView(plain))
    assert estimate_difficulty(PromptView(ask_first)) > estimate_difficulty(PromptView(plain))

import dataclasses

import orjson

from openmaas.privacy.classify import PrivacyClass
from openmaas.routing.decision import Attempt, Candidate, RouteDecision


def test_the_stored_decision_keeps_every_field_and_the_derived_ones() -> None:
    decision = RouteDecision("m", "chat", PrivacyClass("sensitive", ("EMAIL_ADDRESS",)), "mask", 0.4, prefer="cost")
    decision.candidates = [
        Candidate("local", "local", "target"),
        Candidate("cloud", "cloud", "fallback", False, "privacy"),
    ]
    decision.attempts = [
        Attempt("cloud", "cloud", "upstream_error", 12.5, masked=True),
        Attempt("local", "local", "ok", 3.0, placement="engine 1: prefix"),
    ]
    decision.chosen, decision.chosen_locality = "local", "local"
    stored = orjson.loads(decision.to_json(cached_tokens=1200))
    derived = {"masked", "data_went_to", "cached_tokens"}
    assert set(stored) == {f.name for f in dataclasses.fields(RouteDecision)} | derived
    assert stored["cached_tokens"] == 1200 and stored["attempts"][1]["placement"] == "engine 1: prefix"
    assert orjson.loads(decision.to_json())["cached_tokens"] is None
    assert stored["privacy"] == {"class": "sensitive", "entities": ["EMAIL_ADDRESS"], "categories": []}
    assert stored["candidates"][1] == {
        "name": "cloud",
        "locality": "cloud",
        "role": "fallback",
        "kept": False,
        "reason": "privacy",
    }
    assert stored["attempts"][0]["masked"] is True and stored["attempts"][1]["outcome"] == "ok"
    assert stored["masked"] is True
    assert stored["data_went_to"] == ["cloud", "local"]
    assert stored["prefer"] == "cost" and stored["chosen"] == "local" and stored["degraded"] is False

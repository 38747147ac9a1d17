"""The real engine's own timings and prompt-cache hits reach /metrics as gen_ai.server.* and
gen_ai.usage.cache_read.input_tokens (measured by llama.cpp, not estimated at the proxy)."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import RunningServer
from tests.real.test_engine_pool import SYSTEM

pytestmark = pytest.mark.real


def _value(text: str, name: str, model: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels.get("gen_ai_request_model") == model:
                return float(sample.value)
    return 0.0


def test_engine_ttft_and_cached_tokens_are_in_the_metrics(real_server: RunningServer) -> None:
    body = {
        "model": "smollm2-135m",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Where is berth 5?"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    with httpx.Client(base_url=real_server.base_url, timeout=120) as http:
        before = http.get("/metrics").text
        for stream in (False, True):
            http.post("/v1/chat/completions", json={**body, "stream": stream}).raise_for_status()
        after = http.get("/metrics").text
    count = "gen_ai_server_time_to_first_token_seconds_count"
    assert _value(after, count, "smollm2-135m") - _value(before, count, "smollm2-135m") == 2  # unary and streamed
    ttft = "gen_ai_server_time_to_first_token_seconds_sum"
    assert _value(after, ttft, "smollm2-135m") > _value(before, ttft, "smollm2-135m")
    slots = {
        (s.labels["engine"], s.labels["state"]): s.value
        for family in text_string_to_metric_families(after)
        if family.name == "openmaas_engine_slots"
        for s in family.samples
        if s.labels["deployment"] == "smollm2-135m"
    }
    assert slots and sum(slots.values()) == 4 * len({e for e, _ in slots})  # parallel: 4 slots per engine
    cached = "gen_ai_usage_cache_read_input_tokens_total"
    assert _value(after, cached, "smollm2-135m") - _value(before, cached, "smollm2-135m") > 500  # the repeated prefix

"""Cached prompt tokens from the real engine, through the gateway: in the OpenAI and Anthropic usage
fields and in the ledger row and its stored route decision."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers import RunningServer
from tests.real.test_engine_pool import SYSTEM
from tests.real.test_metering_real import _rows

pytestmark = pytest.mark.real


def test_cached_tokens_reach_the_client_in_each_dialect_and_the_ledger(real_server: RunningServer) -> None:
    chat = {
        "model": "smollm2-135m",
        "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Where is berth 3?"}],
        "max_tokens": 8,
        "temperature": 0,
    }
    with httpx.Client(base_url=real_server.base_url, timeout=120) as http:
        http.post("/v1/chat/completions", json=chat).raise_for_status()  # computes the prefix
        again = http.post("/v1/chat/completions", json=chat, headers={"x-request-id": "cached-openai"})
        usage = again.json()["usage"]
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        assert 500 < cached < usage["prompt_tokens"]

        messages = {
            "model": "smollm2-135m",
            "system": SYSTEM,
            "messages": [{"role": "user", "content": "Where is berth 3?"}],
            "max_tokens": 8,
            "temperature": 0,
        }
        anthropic = http.post(
            "/v1/messages", json=messages, headers={"anthropic-version": "2023-06-01", "x-request-id": "cached-msg"}
        ).json()["usage"]
        assert anthropic["cache_read_input_tokens"] > 500
        assert anthropic["input_tokens"] < 50  # Anthropic's input_tokens leaves the cached ones out

        stream = dict(chat, stream=True, stream_options={"include_usage": True})
        with http.stream("POST", "/v1/chat/completions", json=stream, headers={"x-request-id": "cached-s"}) as r:
            lines = [line for line in r.iter_lines() if line.startswith("data: {")]
        streamed = json.loads(lines[-1][6:])["usage"]
        assert streamed["prompt_tokens_details"]["cached_tokens"] > 500

    [row] = _rows(real_server, "cached-openai")
    assert row["cached_tokens"] == cached and row["prompt_tokens"] == usage["prompt_tokens"]
    assert json.loads(row["route"])["cached_tokens"] == cached
    [msg_row] = _rows(real_server, "cached-msg")
    assert msg_row["cached_tokens"] == anthropic["cache_read_input_tokens"]
    [stream_row] = _rows(real_server, "cached-s")
    assert stream_row["cached_tokens"] == streamed["prompt_tokens_details"]["cached_tokens"]

"""The agent loop on the real engine: SmolLM2 (through constrained-decoding tool emulation) calls the real
mcp-server-time through the gateway and then answers; the calls and the ledger agree."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from tests.helpers import RunningServer
from tests.real.test_metering_real import _rows

pytestmark = pytest.mark.real


def test_smollm2_calls_the_time_tool_and_answers(real_server: RunningServer) -> None:
    body = {
        "model": "smollm2-135m",
        "input": "What time is it in Tokyo right now?",
        "tools": [
            {"type": "mcp", "server_label": "time", "allowed_tools": ["get_current_time"], "require_approval": "never"}
        ],
        "tool_choice": "required",  # step 1 must call a tool; the last step allowed (2) answers in words
        "agent": {"max_steps": 2},
        "max_output_tokens": 60,
        "temperature": 0,
    }
    with httpx.Client(base_url=real_server.base_url, timeout=300) as http:
        r = http.post("/v1/responses", json=body, headers={"x-request-id": "real-agent-1"})
        assert r.status_code == 200, r.text
        response = r.json()
    calls = [i for i in response["output"] if i["type"] == "mcp_call"]
    assert calls and all(c["server_label"] == "time" and c["name"] == "get_current_time" for c in calls)
    for call in calls:  # the real server answered each: a time, or its own error for a zone the model made up
        assert call["output"] is not None or call["error"]["type"] == "mcp_tool_execution_error"
        if call["output"] is not None:
            assert "datetime" in json.loads(call["output"])
    messages = [i for i in response["output"] if i["type"] == "message"]
    assert messages and messages[-1]["content"][0]["text"].strip()  # it answered in words
    agent = response["openmaas"]["agent"]
    assert agent["steps"] == 2 and agent["end"] in ("completed", "max_tokens")  # an answer, maybe cut at 60 tokens
    rows = _rows(real_server, "real-agent-1")
    for _ in range(50):  # the spool is imported in batches: wait until every call's row is in
        if len(rows) >= len(calls) + 2:
            break
        time.sleep(0.1)
        rows = _rows(real_server, "real-agent-1")
    assert len([r for r in rows if r["endpoint"] == "tool"]) == len(calls)
    assert len([r for r in rows if r["endpoint"] == "responses"]) == 2

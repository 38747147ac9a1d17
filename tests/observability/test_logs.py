"""The access log: one line per request with what an operator needs and nothing it must not hold; JSON lines on
request (``server.log_format: json``)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from openmaas.observability.logs import configure
from tests.conftest import running_app
from tests.helpers import ADMIN_KEY
from tests.observability.test_metrics import settings

pytestmark = pytest.mark.anyio
PROMPT = "my very private question about berth 7"


async def test_json_access_lines_join_the_response_and_hold_no_prompt_or_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    configure("info", "json")
    out = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(out)
    try:
        async with running_app(settings(tmp_path)) as (_, client):
            admin = {"authorization": f"Bearer {ADMIN_KEY}"}
            await client.post("/admin/tenants", json={"name": "acme"}, headers=admin)
            key = (await client.post("/admin/keys", json={"tenant": "acme"}, headers=admin)).json()["key"]
            chat = {"model": "fake-chat", "messages": [{"role": "user", "content": PROMPT}]}
            r = await client.post("/v1/chat/completions", json=chat, headers={"authorization": f"Bearer {key}"})
            streamed = await client.post(
                "/v1/chat/completions", json={**chat, "stream": True}, headers={"authorization": f"Bearer {key}"}
            )
            missing = await client.post(
                "/v1/chat/completions", json={**chat, "model": "nope"}, headers={"authorization": f"Bearer {key}"}
            )
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    access = {line["request_id"]: line for line in lines if line["logger"] == "openmaas.access"}
    one = access[r.headers["x-request-id"]]
    assert one["level"] == "INFO" and "time" in one
    assert (one["dialect"], one["model"], one["deployment"], one["tenant"], one["status"]) == (
        "chat",
        "fake-chat",
        "fake-chat",
        "acme",
        200,
    )
    assert one["prompt_tokens"] > 0 and one["completion_tokens"] == 5 and one["cost_usd"] > 0
    prefix = one["key"].removesuffix("…")
    assert key.startswith(prefix) and len(prefix) < len(key) // 2  # the listed prefix, never the key
    assert access[streamed.headers["x-request-id"]]["ttft_ms"] is not None
    assert access[missing.headers["x-request-id"]]["error_code"] == "model_not_found"
    text = out.getvalue()
    assert PROMPT not in text and key not in text

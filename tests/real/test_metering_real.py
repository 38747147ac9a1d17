"""Metering against the real engine: llama-server's usage, and its own tokenizer when a stream is cut short."""

from __future__ import annotations

import sqlite3
import time

import httpx
import openai
import pytest

from tests.helpers import RunningServer

pytestmark = pytest.mark.real
QUESTION = [{"role": "user", "content": "Write a long story about a lighthouse keeper and the sea."}]


def _rows(server: RunningServer, request_id: str) -> list[sqlite3.Row]:
    """The request's ledger rows, read from outside the gateway: they reach the SQLite file when the
    ledger's spool is imported (every 0.5 s while the gateway runs)."""
    for _ in range(100):
        conn = sqlite3.connect(server.data_dir / "openmaas.db")
        conn.row_factory = sqlite3.Row
        try:
            rows = list(conn.execute("SELECT * FROM usage_events WHERE request_id = ?", (request_id,)))
        finally:
            conn.close()
        if rows:
            return rows
        time.sleep(0.1)
    return []


def test_a_cut_stream_is_billed_by_the_models_own_tokenizer(real_server: RunningServer) -> None:
    client = openai.OpenAI(base_url=real_server.base_url + "/v1", api_key="any", max_retries=0)
    full = client.chat.completions.with_raw_response.create(
        model="smollm2-135m", messages=QUESTION, max_tokens=8, temperature=0
    )
    usage = full.parse().usage
    assert usage is not None
    [row] = _rows(real_server, full.headers["x-request-id"])
    assert row["usage_source"] == "upstream"
    assert (row["prompt_tokens"], row["completion_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)

    body = {"model": "smollm2-135m", "messages": QUESTION, "max_tokens": 400, "temperature": 0, "stream": True}
    pieces = []
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST", real_server.base_url + "/v1/chat/completions", json=body, headers={"x-request-id": "real-cut-1"}
        ) as resp,
    ):
        for line in resp.iter_lines():
            if line.startswith("data: {") and '"content"' in line:
                pieces.append(line)
            if len(pieces) >= 12:
                break
    [cut] = _rows(real_server, "real-cut-1")
    assert cut["interrupted"] == 1 and cut["usage_source"] == "tokenizer"
    # the same prompt as counted by llama-server itself (chat template included), not a character guess
    assert cut["prompt_tokens"] == usage.prompt_tokens
    assert 8 <= cut["completion_tokens"] < 100

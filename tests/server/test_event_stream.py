"""Event streams share socket writes in a steady cadence, and never hold an event past ``hold``.

Each test records, in one log, when the source made an event and what was written, so the assertions are
about order (was the held event written before the late one was even made?), with margins of 10–100× the
scheduling noise between the source's gaps and ``hold``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from openmaas.server import create_app
from openmaas.server.event_stream import EventStreamResponse
from openmaas.settings import Settings
from openmaas.testing.serve import serve_app

Log = list[tuple[str, bytes]]


def source(log: Log, gaps: list[float], finished: list[bool] | None = None) -> AsyncIterator[bytes]:
    """Events ``e0``, ``e1``, … each after its gap (seconds), logged as made just before they are yielded."""

    async def events() -> AsyncIterator[bytes]:
        try:
            for i, gap in enumerate(gaps):
                if gap:
                    await asyncio.sleep(gap)
                data = f"data: e{i}\n\n".encode()
                log.append(("made", data))
                yield data
        finally:
            if finished is not None:
                finished.append(True)

    return events()


def recorder(log: Log) -> Any:
    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            log.append(("sent" if message["more_body"] else "end", message["body"]))

    return send


def run(gaps: list[float], hold: float) -> Log:
    log: Log = []
    response = EventStreamResponse(source(log, gaps), hold)
    asyncio.run(response.stream_response(recorder(log)))
    return log


def written(log: Log) -> list[bytes]:
    return [body for kind, body in log if kind in ("sent", "end") and body]


def test_every_event_arrives_once_in_order_and_the_last_write_ends_the_response() -> None:
    gaps = [0, 0, 0.3, *([0.002] * 30), 0.3, 0.002, 0.002]
    log = run(gaps, hold=0.1)
    expected = b"".join(f"data: e{i}\n\n".encode() for i in range(len(gaps)))
    assert b"".join(written(log)) == expected
    assert log[-1][0] == "end"
    assert len(written(log)) < len(gaps)  # the steady part shared writes


def test_hold_zero_writes_each_event_as_it_comes() -> None:
    log = run([0, 0, *([0.002] * 10)], hold=0)
    kinds = [kind for kind, _ in log]
    assert kinds == ["made", "sent"] * 12 + ["end"]
    assert log[-1] == ("end", b"")


def test_opening_events_and_events_after_a_pause_are_written_at_once() -> None:
    # e0..e2 open the stream (within hold of e0); e3 follows a pause longer than hold
    log = run([0, 0, 0.001, 0.4, 0.001, 0.001], hold=0.2)
    for i in range(4):
        made = log.index(("made", f"data: e{i}\n\n".encode()))
        assert log[made + 1] == ("sent", f"data: e{i}\n\n".encode()), log
    assert b"data: e4\n\n" in b"".join(written(log))


def test_a_steady_cadence_shares_writes() -> None:
    # past the opening, events 5 ms apart under a 300 ms hold: they leave several to a write
    log = run([0, 0.5, *([0.005] * 20)], hold=0.3)
    bodies = written(log)
    assert max(body.count(b"data: ") for body in bodies) >= 3, bodies


def test_a_held_event_is_written_when_the_next_is_late() -> None:
    # e2 follows a short gap (so it is held); e3 comes after 1 s — e2 must be written before e3 is made
    log = run([0, 0.3, 0.002, 1.0], hold=0.2)
    e2 = log.index(("made", b"data: e2\n\n"))
    assert log[e2 + 1] == ("sent", b"data: e2\n\n"), log  # alone, by the timer
    assert log.index(("sent", b"data: e2\n\n")) < log.index(("made", b"data: e3\n\n"))


def test_the_held_events_leave_with_the_end_of_the_response() -> None:
    log = run([0, 0.6, 0.002], hold=0.5)
    assert log[-1] == ("end", b"data: e2\n\n")
    assert [kind for kind, _ in log].count("sent") == 2  # e0 and e1 at once; e2 with the end


def test_a_cancelled_response_writes_nothing_more_and_closes_its_source() -> None:
    async def scenario() -> tuple[Log, int, list[bool]]:
        log: Log = []
        finished: list[bool] = []
        response = EventStreamResponse(source(log, [0, 0.3, 0.002, 5.0], finished), 0.2)
        task = asyncio.create_task(response.stream_response(recorder(log)))
        await asyncio.sleep(0.31)  # e2 made and held (its timer runs until ~0.5 s)
        assert log[-1] == ("made", b"data: e2\n\n")
        task.cancel()  # the client left
        with pytest.raises(asyncio.CancelledError):
            await task
        writes = len(log)
        await asyncio.sleep(0.4)  # past the held event's timer
        return log, writes, finished

    log, writes, finished = asyncio.run(scenario())
    assert len(log) == writes
    assert ("sent", b"data: e2\n\n") not in log
    assert finished == [True]


WORDS = [f"w{i}" for i in range(60)]


@pytest.mark.anyio
@pytest.mark.parametrize("surface", ["chat", "messages"])
async def test_a_paced_stream_over_http_arrives_whole_in_fewer_reads(tmp_path: Any, surface: str) -> None:
    """Through uvicorn on loopback, a deployment streaming a token every 5 ms: every event arrives, in order,
    in at most half as many socket reads as events (about four events share a write under the 20 ms hold)."""
    deployment = {"name": "fake-paced", "backend": "fake", "params": {"tokens_per_s": 200, "reply": " ".join(WORDS)}}
    app = create_app(Settings.model_validate({"deployments": [deployment], "aliases": {}, "data_dir": str(tmp_path)}))
    body: dict[str, Any] = {"model": "fake-paced", "stream": True, "max_tokens": 200}
    body["messages"] = [{"role": "user", "content": "count"}]
    path = "/v1/chat/completions" if surface == "chat" else "/v1/messages"
    reads, data = 0, b""
    async with serve_app(app) as url, aiohttp.ClientSession() as session, session.post(url + path, json=body) as resp:
        assert resp.status == 200
        async for part in resp.content.iter_any():
            reads += 1
            data += part
    events = [json.loads(line[6:]) for line in data.split(b"\n") if line.startswith(b"data: {")]
    if surface == "chat":
        assert data.endswith(b"data: [DONE]\n\n")
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in events if c.get("choices"))
    else:
        assert events[-1]["type"] == "message_stop"
        text = "".join(e["delta"]["text"] for e in events if e["type"] == "content_block_delta")
    assert text.split() == WORDS
    assert reads <= len(events) / 2, (reads, len(events))


def test_what_was_held_is_written_before_a_failure_of_the_source_propagates() -> None:
    async def failing(log: Log) -> AsyncIterator[bytes]:
        async for event in source(log, [0, 0.6, 0.002]):
            yield event
        raise RuntimeError("upstream gone")

    log: Log = []
    response = EventStreamResponse(failing(log), 0.5)
    with pytest.raises(RuntimeError, match="upstream gone"):
        asyncio.run(response.stream_response(recorder(log)))
    assert log[-1] == ("sent", b"data: e2\n\n")  # e2 was held when the source failed

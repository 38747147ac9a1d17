"""A saturated local engine is busy, not broken: the supervisor must not restart it under load."""

from __future__ import annotations

import asyncio

import httpx
import openai
import pytest

from tests.real.conftest import RunningServer

pytestmark = [pytest.mark.real, pytest.mark.anyio]


async def test_forty_queued_requests_all_complete_and_the_engine_is_never_restarted(real_server: RunningServer) -> None:
    # 40 requests on 4 slots keep the engine saturated for well over three health-check periods (3 × 5 s);
    # with too few HTTP threads its /health went unanswered and the supervisor killed it mid-work.
    client = openai.AsyncOpenAI(base_url=real_server.base_url + "/v1", api_key="x", max_retries=0, timeout=600)
    ask = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
    before = real_server.log.read_text(errors="replace").count("restarting")

    async def readiness_while_busy() -> list[int]:
        codes = []
        async with httpx.AsyncClient(timeout=5) as http:
            for _ in range(6):
                await asyncio.sleep(4)
                codes.append((await http.get(real_server.base_url + "/readyz")).status_code)
        return codes

    calls = [client.chat.completions.create(model="smollm2-135m", messages=ask, max_tokens=64) for _ in range(40)]
    results, codes = await asyncio.gather(asyncio.gather(*calls), readiness_while_busy())
    assert all(r.choices[0].message.content for r in results)
    assert codes == [200] * 6
    assert real_server.log.read_text(errors="replace").count("restarting") == before
    await client.close()

"""Serve an ASGI app on a real loopback socket inside the running event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import uvicorn


@contextlib.asynccontextmanager
async def serve_app(
    app: Any, host: str = "127.0.0.1", lifespan: Literal["auto", "on", "off"] = "on"
) -> AsyncIterator[str]:
    config = uvicorn.Config(
        app,
        host=host,
        port=0,
        log_level="warning",
        lifespan=lifespan,
        loop="asyncio",
        http="httptools",
        access_log=False,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(2000):  # bounded wait: at most ~20 s
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if not server.started:
            task.result() if task.done() else None
            raise RuntimeError("test server did not start")
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=10)

"""The fast OpenAI-compatible upstream for benchmarks: ``python bench/upstream.py PORT [CHUNK_DELAY_MS]``."""

import sys

import uvicorn

from openmaas.testing.openai_upstream import OpenAIUpstream

if __name__ == "__main__":
    port = int(sys.argv[1])
    delay = float(sys.argv[2]) / 1000 if len(sys.argv) > 2 else 0.0
    reply = " ".join(["token"] * 16)
    app = OpenAIUpstream(reply=reply, keep=1, chunk_delay=delay)
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        log_level="warning",
        access_log=False,
        lifespan="on",
    )

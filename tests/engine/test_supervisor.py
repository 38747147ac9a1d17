"""The supervisor against a real process: a tiny HTTP server standing in for llama-server."""

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import pytest

from openmaas.engine.supervisor import EngineFailed, LlamaServerProcess

pytestmark = pytest.mark.anyio

FAKE_ENGINE = textwrap.dedent("""
    import http.server, sys
    port = int(sys.argv[sys.argv.index("--port") + 1])
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200); self.end_headers(); self.wfile.write(b'{"status": "ok"}')
        def log_message(self, *a): pass
    http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
""")


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "engine.py"
    path.write_text(body)
    return path


async def test_an_engine_that_dies_is_restarted_on_the_same_port(tmp_path: Path) -> None:
    proc = LlamaServerProcess(
        "t", Path(sys.executable), [str(_script(tmp_path, FAKE_ENGINE))], tmp_path / "engine.log", health_interval=0.2
    )
    await proc.start()
    try:
        assert proc.ready
        port, pid = proc.port, proc.pid
        assert pid is not None
        os.kill(pid, 9)
        for _ in range(200):  # bounded: ~20 s
            if proc.restarts and proc.ready:
                break
            await asyncio.sleep(0.1)
        assert proc.restarts == 1 and proc.ready
        assert proc.port == port and proc.pid != pid
        assert (await proc.get_json("/health"))["status"] == "ok"
    finally:
        await proc.stop()
    assert not proc.ready


async def test_an_engine_that_cannot_start_fails_with_its_log(tmp_path: Path) -> None:
    proc = LlamaServerProcess(
        "t", Path(sys.executable), [str(_script(tmp_path, "raise SystemExit(3)"))], tmp_path / "engine.log"
    )
    with pytest.raises(EngineFailed, match="exited with code 3"):
        await proc.start()
    await proc.stop()

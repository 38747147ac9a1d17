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


STALLING_ENGINE = textwrap.dedent("""
    import http.server, sys, threading, time
    port = int(sys.argv[sys.argv.index("--port") + 1])
    busy = "--busy" in sys.argv
    answered = []
    def spin():
        while True:
            sum(range(10000))
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if answered:  # ready once, then /health never answers in time
                time.sleep(30)
            answered.append(1)
            self.send_response(200); self.end_headers(); self.wfile.write(b'{"status": "ok"}')
        def log_message(self, *a): pass
    if busy:
        threading.Thread(target=spin, daemon=True).start()
    http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
""")


@pytest.mark.parametrize(("busy", "restarted"), [(True, False), (False, True)])
async def test_a_silent_health_check_restarts_a_hung_engine_but_not_a_busy_one(
    tmp_path: Path, busy: bool, restarted: bool
) -> None:
    args = [str(_script(tmp_path, STALLING_ENGINE)), *(["--busy"] if busy else [])]
    proc = LlamaServerProcess(
        "t", Path(sys.executable), args, tmp_path / "engine.log", health_interval=0.3, health_timeout=0.2
    )
    await proc.start()
    try:
        for _ in range(40):  # ~3 failures' worth of checks several times over (bounded: ~8 s)
            if proc.restarts:
                break
            await asyncio.sleep(0.2)
        assert (proc.restarts > 0) is restarted
        if busy:
            assert proc.busy_checks >= 3 and proc.ready
    finally:
        await proc.stop()


PARENT = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from openmaas.engine.supervisor import LlamaServerProcess
    async def main():
        proc = LlamaServerProcess("t", Path(sys.executable), [sys.argv[1]], Path(sys.argv[2]))
        await proc.start()
        print(proc.pid, flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
""")


@pytest.mark.skipif(sys.platform != "linux", reason="PR_SET_PDEATHSIG is Linux's")
async def test_an_engine_does_not_outlive_a_gateway_killed_with_sigkill(tmp_path: Path) -> None:
    parent = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PARENT,
        str(_script(tmp_path, FAKE_ENGINE)),
        str(tmp_path / "engine.log"),
        stdout=asyncio.subprocess.PIPE,
    )
    assert parent.stdout is not None
    engine_pid = int((await asyncio.wait_for(parent.stdout.readline(), 30)).strip())
    assert alive(engine_pid)
    parent.kill()
    await parent.wait()
    for _ in range(100):
        if not alive(engine_pid):
            return
        await asyncio.sleep(0.1)
    pytest.fail("the engine outlived its gateway")


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False

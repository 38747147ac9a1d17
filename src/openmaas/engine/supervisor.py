"""Start, health-check and restart one ``llama-server`` process.

One process per local GGUF deployment, on a private loopback port. The
supervisor waits for ``/health`` before declaring the engine ready, restarts
the process with backoff when it exits or stops answering, and stops it with
the gateway. A ``/health`` that times out while the process keeps using CPU is a
busy engine (every core decoding for a deep queue), not a hung one: it is not
restarted, which would fail every request in it. The engine's output goes to a log file under the data directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

log = logging.getLogger("openmaas.engine")


def _die_with_parent() -> None:
    """In the engine's process before exec: SIGTERM when the gateway dies, even by SIGKILL (Linux), so an
    engine never outlives its supervisor holding a port, memory and slots."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU a process used so far (Linux), or None when unknown."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class EngineFailed(RuntimeError):
    pass


class LlamaServerProcess:
    def __init__(
        self,
        name: str,
        binary: Path,
        args: list[str],
        log_path: Path,
        *,
        ready_timeout: float = 120.0,
        health_interval: float = 5.0,
        max_health_failures: int = 3,
        health_timeout: float = 2.0,
        env: dict[str, str] | None = None,
        on_ready: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``env``: added to the gateway's environment (e.g. ``OMP_WAIT_POLICY``); ``on_ready``: run after
        every start and restart once the engine answers (restoring saved slots), its failures logged."""
        self.name = name
        self.binary = binary
        self.args = args
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        self.health_interval = health_interval
        self.max_health_failures = max_health_failures
        self.health_timeout = health_timeout
        self.env = env or {}
        self.on_ready = on_ready
        self.busy_checks = 0  # health checks that timed out while the engine was working
        self.port = 0
        self.restarts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._watch: asyncio.Task[None] | None = None
        self._stopping = False
        self._relaunching = False
        self._lifecycle = asyncio.Lock()
        self._ready = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        await self._spawn()
        self._watch = asyncio.create_task(self._supervise(), name=f"engine-{self.name}")

    async def _spawn(self) -> None:
        self._ready.clear()
        self.port = self.port or free_port()  # stable across restarts: clients keep their URL
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self._proc = await asyncio.create_subprocess_exec(
                str(self.binary),
                *self.args,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                stdout=out,
                stderr=out,
                stdin=asyncio.subprocess.DEVNULL,
                env={**os.environ, **self.env} if self.env else None,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        log.info("engine %s: started pid %s on port %s", self.name, self._proc.pid, self.port)
        await self._wait_ready()

    async def _wait_ready(self) -> None:
        assert self._proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        delay = 0.05
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                raise EngineFailed(
                    f"engine '{self.name}' exited with code {self._proc.returncode}; see {self.log_path}"
                )
            if await self._healthy():
                if self.on_ready is not None:
                    try:
                        await self.on_ready()
                    except Exception:  # a hook never keeps a working engine from serving
                        log.exception("engine %s: start-up hook failed", self.name)
                self._ready.set()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        raise EngineFailed(f"engine '{self.name}' not ready after {self.ready_timeout}s; see {self.log_path}")

    async def _healthy(self) -> bool:
        return await self._health() == "ok"

    async def _health(self) -> str:
        """ "ok", "timeout" (no answer in time) or "error" (refused, or not 200)."""
        assert self._session is not None
        timeout = aiohttp.ClientTimeout(total=self.health_timeout)
        try:
            async with self._session.get(self.base_url + "/health", timeout=timeout) as resp:
                return "ok" if resp.status == 200 else "error"
        except TimeoutError:
            return "timeout"
        except aiohttp.ClientError:
            return "error"

    def _cpu_seconds(self) -> float | None:
        return cpu_seconds(self.pid)

    async def get_json(self, path: str) -> Any:
        assert self._session is not None
        async with self._session.get(self.base_url + path, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            resp.raise_for_status()
            return await resp.json(content_type=None)

    async def post_json(self, path: str, body: dict[str, Any], timeout: float = 60.0) -> tuple[int, Any]:
        """(status, parsed body or None) of a POST to the engine's own API (slot save and restore)."""
        assert self._session is not None
        async with self._session.post(
            self.base_url + path, json=body, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as resp:
            try:
                data = await resp.json(content_type=None)
            except ValueError:
                data = None
            return resp.status, data

    async def _supervise(self) -> None:
        failures = 0
        backoff = 0.5
        cpu = self._cpu_seconds()
        while not self._stopping:
            assert self._proc is not None
            exited = False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._proc.wait(), timeout=self.health_interval)
                exited = True
            if self._stopping:
                return
            if self._relaunching or (exited and self._proc.returncode is None):
                await asyncio.sleep(0.05)  # a planned relaunch owns the process
                continue
            if not exited:
                state = await self._health()
                used, cpu = cpu, self._cpu_seconds()
                working = used is not None and cpu is not None and cpu - used > 0.05 * self.health_interval
                if state == "timeout" and working:
                    self.busy_checks += 1
                    log.info("engine %s: busy (health check timed out while it computes)", self.name)
                    state = "ok"
                failures = 0 if state == "ok" else failures + 1
                if failures < self.max_health_failures:
                    backoff = 0.5
                    continue
                log.warning("engine %s: unhealthy %s times, restarting", self.name, failures)
                await self._terminate()
            else:
                log.warning("engine %s: exited with code %s, restarting", self.name, self._proc.returncode)
            self._ready.clear()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 10.0)
            failures = 0
            async with self._lifecycle:  # one (re)start at a time: never two processes on one port
                if self._stopping:
                    return
                if self._proc is not None and self._proc.returncode is None:
                    continue  # a relaunch already replaced the process
                self.restarts += 1
                try:
                    await self._spawn()
                except EngineFailed as exc:
                    log.error("engine %s: restart failed: %s", self.name, exc)
            cpu = self._cpu_seconds()

    async def relaunch(self, args: list[str]) -> None:
        """Restart on purpose with new arguments (same port): not a failure, no backoff. A process that
        is down (the supervisor is restarting it) is left to the supervisor, which then uses ``args``."""
        self.args = args
        async with self._lifecycle:
            if self._stopping or self._proc is None or self._proc.returncode is not None:
                return
            self._relaunching = True
            try:
                await self._terminate()
                await self._spawn()
            except EngineFailed as exc:
                log.error("engine %s: relaunch failed: %s", self.name, exc)
                await self._terminate()  # the supervisor sees the exit and restarts it
            finally:
                self._relaunching = False

    async def wait_ready(self, timeout: float) -> bool:
        try:
            await asyncio.wait_for(self._ready.wait(), timeout)
        except TimeoutError:
            return False
        return True

    async def _terminate(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):  # it died and is not reaped yet
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), timeout=5)
        except TimeoutError:
            proc.kill()
            await proc.wait()

    async def stop(self) -> None:
        self._stopping = True
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        await self._terminate()
        if self._session is not None:
            await self._session.close()

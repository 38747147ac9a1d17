"""Shared test helpers: gateway subprocesses, and the two store backends (SQLite; PostgreSQL + Redis)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

PG_URL = os.environ.get("OPENMAAS_TEST_PG_URL", "postgresql://openmaas:openmaas@127.0.0.1:5432/openmaas_test")
REDIS_URL = os.environ.get("OPENMAAS_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
ADMIN_KEY = "test-admin-key-0123456789"


def log_dir() -> Path:
    """Every log a test run writes goes here (the log-scanning test reads them all)."""
    path = Path(os.environ.setdefault("OPENMAAS_TEST_LOG_DIR", tempfile.mkdtemp(prefix="openmaas-test-logs-")))
    path.mkdir(parents=True, exist_ok=True)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningServer:
    def __init__(self, proc: subprocess.Popen[bytes], base_url: str, log: Path, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.proc = proc
        self.base_url = base_url
        self.log = log

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"openmaas serve exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"openmaas serve not ready: {self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_server(
    name: str, data_dir: Path, config: dict[str, Any] | None = None, env: dict[str, str] | None = None
) -> RunningServer:
    """``python -m openmaas serve`` on a free loopback port; its log goes to the run's log directory."""
    port = free_port()
    args = [sys.executable, "-m", "openmaas", "serve", "--port", str(port)]
    if config is not None:
        path = data_dir / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config))
        args += ["--config", str(path)]
    log = log_dir() / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPENMAAS_DATA_DIR": str(data_dir), **(env or {})},
        )
    server = RunningServer(proc, f"http://127.0.0.1:{port}", log, data_dir)
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server


async def reset_postgres_and_redis() -> None:
    """A clean slate: drop every table (migrations re-create them) and flush the test Redis database."""
    import asyncpg
    import redis.asyncio as redis

    try:
        conn = await asyncpg.connect(PG_URL, timeout=5)
    except (OSError, asyncpg.PostgresError) as exc:
        raise RuntimeError(f"PostgreSQL at {PG_URL} is not reachable ({exc}); run `bash scripts/services.sh`") from exc
    try:
        await conn.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public;")
    finally:
        await conn.close()
    client = redis.from_url(REDIS_URL)
    try:
        await client.flushdb()
    except OSError as exc:
        raise RuntimeError(f"Redis at {REDIS_URL} is not reachable ({exc}); run `bash scripts/services.sh`") from exc
    finally:
        await client.aclose()


async def store_settings(kind: str, tmp_path: Path) -> dict[str, Any]:
    """``store`` settings for one backend, on a clean slate."""
    if kind == "sqlite":
        return {"url": f"sqlite:///{tmp_path / 'openmaas.db'}"}
    await reset_postgres_and_redis()
    return {"url": PG_URL, "redis_url": REDIS_URL}


async def script_calls(client: Any) -> int:
    """Lua script calls Redis has served so far (``INFO commandstats``)."""
    stats = await client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))

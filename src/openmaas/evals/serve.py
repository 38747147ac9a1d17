"""The server an evaluation talks to: ``openmaas serve`` on a free loopback port, from the user's
config (or the embedded defaults) with an overlay — its own data directory (fresh ledger, open
mode on loopback), optionally a compute price for local deployments, and the simulated strong
deployment (``backend: oracle``) holding the answers of this run's tasks."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from openmaas.backends.oracle import task_key
from openmaas.evals.tasks import Task
from openmaas.settings import Settings

STRONG_SIM = "strong-sim"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def overlay(
    settings: Settings,
    workdir: Path,
    tasks: list[Task],
    strong_accuracy: float | None,
    strong_price: tuple[float, float],
    local_price: tuple[float, float] | None,
    seed: int,
) -> dict[str, Any]:
    data = settings.model_dump(mode="json", exclude_none=True)
    data["data_dir"] = str(workdir / "data")
    data["store"] = {}
    data["auth"] = {**data.get("auth", {}), "required": False}
    data["server"] = {**data.get("server", {}), "host": "127.0.0.1", "log_level": "warning"}
    for d in data["deployments"]:
        if local_price is not None and d.get("locality") == "local":
            d["pricing"] = {"input_per_mtok": local_price[0], "output_per_mtok": local_price[1]}
    if strong_accuracy is not None:
        answers = {task_key(t.question): {"correct": t.correct, "wrong": t.wrong} for t in tasks if t.correct}
        path = workdir / "strong-answers.json"
        path.write_text(json.dumps(answers))
        data["deployments"].append(
            {
                "name": STRONG_SIM,
                "backend": "oracle",
                "locality": "cloud",
                "params": {"answers": str(path), "accuracy": strong_accuracy, "seed": seed},
                "pricing": {"input_per_mtok": strong_price[0], "output_per_mtok": strong_price[1]},
                "quality": 0.9,
            }
        )
    return data


class EvalServer:
    def __init__(self, config: dict[str, Any], workdir: Path) -> None:
        self.config, self.workdir = config, workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.base_url = ""

    def prices(self) -> dict[str, tuple[float, float]]:
        out = {}
        for d in self.config["deployments"]:
            p = d.get("pricing") or {}
            out[d["name"]] = (float(p.get("input_per_mtok", 0)), float(p.get("output_per_mtok", 0)))
        return out

    def __enter__(self) -> EvalServer:
        path = self.workdir / "openmaas-eval.yaml"
        path.write_text(yaml.safe_dump(self.config))
        port = _free_port()
        log = (self.workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "openmaas", "serve", "--config", str(path), "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 900  # the first run may build llama.cpp
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"openmaas serve exited; see {self.workdir / 'server.log'}")
            try:
                if httpx.get(self.base_url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        self.__exit__()
        raise RuntimeError("openmaas serve did not become ready")

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="openmaas-eval-"))

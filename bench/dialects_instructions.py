"""Instructions per request of chat, Messages and Responses, counted by valgrind (steadier than a VM clock).

Method: ``valgrind --tool=callgrind`` runs this file with ``--child TARGET N``: the whole app in-process
(``httpx.ASGITransport``, one fake deployment, privacy off), 20 warm-up requests, then N requests.
Per-request instructions = (Ir(N=110) − Ir(N=10)) / 100, so start-up cancels out. Two valgrind runs at a
time (about a minute each).

With ``--before DIR`` (a git worktree of an earlier commit, e.g. ``git worktree add /tmp/before 7250679``)
chat is also counted on that code (``PYTHONPATH=DIR/src``), in the same run: the cost of the typed core.

Usage: python bench/dialects_instructions.py [--before DIR]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS

BODY = {"model": "bench", "max_tokens": 16, "messages": [{"role": "user", "content": "Say something short."}]}
TARGETS = {
    "chat": ("/v1/chat/completions", BODY),
    "messages": ("/v1/messages", BODY),
    "responses": (
        "/v1/responses",
        {"model": "bench", "max_output_tokens": 16, "input": "Say something short.", "store": False},
    ),
}


async def child(target: str, n: int) -> None:
    import httpx

    from openmaas.server import create_app
    from openmaas.settings import Settings

    data = tempfile.mkdtemp(prefix="openmaas-ir-")
    deployment = {"name": "bench", "backend": "fake", "locality": "local"}
    # No time-driven work inside the count (the key cache's refresh, health probes): under valgrind a run
    # lasts ~50x longer, so that work would be counted in proportion to run time, favouring the faster path.
    settings = Settings.model_validate(
        {
            "data_dir": data,
            "deployments": [deployment],
            "aliases": {},
            "privacy": {"enabled": False},
            "auth": {"refresh_seconds": 3600},
            # the ledger commits on a thread, and how often the loop wakes while it waits depends on timing
            "metering": {"enabled": False},
            "routing": {"breaker": {"health_interval": 3600}},
        }
    )
    app = create_app(settings)
    path, body = TARGETS[target]
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c,
    ):
        for _ in range(20 + n):
            (await c.post(path, json=body)).raise_for_status()


def instructions(target: str, n: int) -> int:
    env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts in every run
    if target.startswith("before:"):  # chat on an earlier checkout of the code
        env["PYTHONPATH"] = str(Path(target.removeprefix("before:")) / "src")
        target = "chat"
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={tmp}/cg.out",
                sys.executable,
                __file__,
                "--child",
                target,
                str(n),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
    found = re.search(r"Collected : (\d+)", out.stderr)
    assert found is not None, out.stderr[-2000:]
    return int(found.group(1))


def main() -> None:
    targets = list(TARGETS)
    if "--before" in sys.argv:
        targets.append("before:" + sys.argv[sys.argv.index("--before") + 1])
    runs = [(t, n) for t in targets for n in (10, 110)]
    with ThreadPoolExecutor(2) as pool:
        counts = dict(zip(runs, pool.map(lambda r: instructions(*r), runs), strict=True))
    per = {t.split(":")[0]: (counts[(t, 110)] - counts[(t, 10)]) / 100 for t in targets}
    result = {"instructions_per_request": per, "ratio_to_chat": {t: round(v / per["chat"], 3) for t, v in per.items()}}
    (RESULTS / "dialects_instructions.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        asyncio.run(child(sys.argv[2], int(sys.argv[3])))
    else:
        main()

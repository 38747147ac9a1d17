"""Time to first token of a second Claude Code-shaped turn on the local engine, with and without
volatile-block normalisation (``dialects.anthropic.volatile_system``).

Method: ``openmaas serve`` on its embedded defaults (llama.cpp, SmolLM2-135M) is started twice, one after
the other: normalising (the default) and not (``volatile_system: []``). Each runs ``--conversations``
two-turn conversations in the shape of tests/dialects/shapes.py, with a system prompt of about
``--system-tokens`` tokens (it must fit the model's 8k context); every request carries a fresh billing
line (a new ``cch=`` nonce, as Claude Code sends). Each conversation starts with a distinct first user
message; turn 2 repeats turn 1 plus the answer and a new question. Reported: median time to the first
``content_block_delta`` of turn 2 (and of turn 1), and the ratio.

Usage: python bench/claude_code_ttft.py [--conversations 6] [--system-tokens 3000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import RESULTS, free_port, python, start, stop, wait_http
from tests.dialects.shapes import claude_code_request

SENTENCE = "When a task needs a file, read it first, change only what is asked, and say what changed. "


def ttft(client: httpx.Client, url: str, body: dict[str, Any]) -> tuple[float, str]:
    started = time.perf_counter()
    first = None
    text = []
    with client.stream("POST", url + "/v1/messages", json=body, timeout=300) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("data: ") and '"content_block_delta"' in line:
                first = first or time.perf_counter() - started
                text.append(json.loads(line[6:])["delta"].get("text", ""))
    assert first is not None, "no content arrived"
    return first * 1000, "".join(text)


def request(system: str, messages: list[dict[str, Any]]) -> dict[str, Any]:
    """A Claude Code-shaped turn with a fresh billing nonce, a long fixed system prompt, few tools."""
    body = claude_code_request("unused", uuid.uuid4().hex[:12])
    body["system"][2]["text"] = system
    body["tools"] = body["tools"][:4]
    body["max_tokens"] = 8
    body["messages"] = messages
    return body


def run(label: str, config: dict[str, Any], conversations: int, system: str) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix=f"openmaas-ttft-{label}-"))
    (tmp / "config.yaml").write_text(json.dumps(config))
    port = free_port()
    cmd = [python(), "-m", "openmaas", "serve", "--config", str(tmp / "config.yaml"), "--port", str(port)]
    proc = start(cmd, "0-1", tmp / "serve.log", {"OPENMAAS_DATA_DIR": str(tmp)})
    url = f"http://127.0.0.1:{port}"
    first_turn: list[float] = []
    second_turn: list[float] = []
    try:
        wait_http(url + "/readyz", timeout=300)
        with httpx.Client() as client:
            for n in range(conversations):
                messages = [{"role": "user", "content": f"Conversation {n}: which file should I open first?"}]
                ms, answer = ttft(client, url, request(system, messages))
                first_turn.append(ms)
                messages += [{"role": "assistant", "content": answer or "."}, {"role": "user", "content": "And then?"}]
                ms, _ = ttft(client, url, request(system, messages))
                second_turn.append(ms)
                print(label, n, round(first_turn[-1]), round(second_turn[-1]), flush=True)
    finally:
        stop(proc)
    return {
        "turn1_ms": [round(x, 1) for x in first_turn],
        "turn2_ms": [round(x, 1) for x in second_turn],
        "turn1_median_ms": round(statistics.median(first_turn), 1),
        "turn2_median_ms": round(statistics.median(second_turn), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conversations", type=int, default=6)
    parser.add_argument("--system-tokens", type=int, default=3000)
    args = parser.parse_args()
    system = SENTENCE * max(1, args.system_tokens // 20)  # the sentence is ~20 tokens
    results = {
        "normalised": run("normalised", {}, args.conversations, system),
        "raw": run("raw", {"dialects": {"anthropic": {"volatile_system": []}}}, args.conversations, system),
    }
    results["turn2_speedup"] = round(results["raw"]["turn2_median_ms"] / results["normalised"]["turn2_median_ms"], 2)
    results["method"] = {"conversations": args.conversations, "system_tokens": args.system_tokens}
    (RESULTS / "claude_code_ttft.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "method"}, indent=1))


if __name__ == "__main__":
    main()

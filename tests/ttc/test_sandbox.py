"""The Python-tests verifier's sandbox: working code passes; escapes are refused."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest

from openmaas.ttc.sandbox import extract_code, run_tests

pytestmark = pytest.mark.anyio


def exists(path: str) -> bool:
    return os.path.exists(path)


GOOD = "def add(a, b):\n    return a + b\n"
TEST = "assert add(1, 2) == 3\n"


async def test_correct_code_passes_and_wrong_code_fails() -> None:
    assert (await run_tests(GOOD, TEST)).passed
    assert not (await run_tests(GOOD.replace("+", "-"), TEST)).passed
    humaneval = "def check(candidate):\n    assert candidate(2, 3) == 5\nentry_point = 'add'\n"
    assert (await run_tests(GOOD, humaneval)).passed


async def test_answers_may_import_the_usual_standard_library() -> None:
    code = "from typing import List\nimport math, collections, itertools, re\n\ndef add(a: int, b: int) -> int:\n"
    code += "    return int(math.fsum([a, b]))\n"
    assert (await run_tests(code, TEST)).passed


async def test_many_sandboxes_run_at_once() -> None:
    results = await asyncio.gather(*(run_tests(GOOD, TEST) for _ in range(6)))
    assert all(r.passed for r in results)


async def test_network_is_refused() -> None:
    code = "import socket\nsocket.create_connection(('127.0.0.1', 5432), timeout=1)\n" + GOOD
    assert not (await run_tests(code, TEST)).passed
    code = "import urllib.request\nurllib.request.urlopen('http://127.0.0.1:6379', timeout=1)\n" + GOOD
    assert not (await run_tests(code, TEST)).passed


async def test_writes_outside_the_sandbox_are_refused_inside_are_fine(tmp_path) -> None:
    target = f"/tmp/openmaas-escape-{uuid.uuid4().hex}"
    for code in (
        f"open({target!r}, 'w').write('x')\n",
        f"import os\nos.mkdir({target!r})\n",
        f"import pathlib\npathlib.Path({target!r}).write_text('x')\n",
        f"import shutil\nshutil.copyfile('candidate.py', {target!r})\n",
    ):
        assert not (await run_tests(code + GOOD, TEST)).passed, code
        assert not exists(target)
    assert (await run_tests("open('scratch.txt', 'w').write('x')\n" + GOOD, TEST)).passed


async def test_subprocesses_and_fork_bombs_are_refused() -> None:
    marker = f"/tmp/openmaas-escape-{uuid.uuid4().hex}"
    code = f"import subprocess\nsubprocess.run(['touch', {marker!r}])\n" + GOOD
    assert not (await run_tests(code, TEST)).passed
    assert not exists(marker)
    assert not (await run_tests("import os\nwhile True:\n    os.fork()\n" + GOOD, TEST)).passed
    assert not (await run_tests(f"import os\nos.system('touch {marker}')\n" + GOOD, TEST)).passed
    assert not exists(marker)


async def test_infinite_loops_and_sleeps_are_killed_on_time() -> None:
    spin = await run_tests("while True:\n    pass\n", TEST, timeout_s=1)
    sleep = await run_tests("import time\ntime.sleep(60)\n", TEST, timeout_s=1)
    assert not spin.passed and not sleep.passed
    assert sleep.reason == "timeout"


async def test_memory_is_bounded() -> None:
    assert not (await run_tests("x = bytearray(4 * 1024**3)\n" + GOOD, TEST, memory_mb=256)).passed


def test_code_is_taken_from_the_last_fenced_block() -> None:
    text = "Here:\n```python\ndef f():\n    return 1\n```\nand better:\n```python\ndef f():\n    return 2\n```"
    assert extract_code(text) == "def f():\n    return 2\n"
    assert extract_code("def g(): pass") == "def g(): pass"

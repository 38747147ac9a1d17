"""A deterministic fake backend: a real class, used by tests and benchmarks.

Params (all optional): ``reply`` (fixed text; default echoes the last user
message), ``latency_ms`` (before the first token), ``tokens_per_s`` (stream
pacing; 0 = as fast as possible), ``fail_every`` (every Nth call fails with
``fail_status``), ``fail_after_tokens`` (streams break after that many tokens),
``embedding_dims``, ``replies`` (a list: the Nth call answers the Nth reply, cycling — varied
candidates for test-time compute), ``logprobs`` (a list of per-token log-probabilities, cycled
like ``replies``, returned when the request asks for ``logprobs``), ``echo: prompt`` (answer with the
whole prompt, every message: shows a test what the model was given), ``greedy_reply`` (the answer
when the request's temperature is 0), ``script`` (``{"tools": {name: arguments}, "final": text}``: with
tools offered, call the first offered tool it names until a tool result is in the conversation, then
answer ``final`` and that result — a deterministic agent for client end-to-end tests; or
``{"steps": [...]}``: a multi-step agent, see ``_stepped``; offered no tools it answers the script's last
text, unless ``"force": true`` makes it call them anyway, like a model that ignores ``tool_choice``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from pydantic import Field

from openmaas.backends.base import Backend, Params, Payload
from openmaas.errors import UpstreamError, UpstreamRateLimited, UpstreamUnavailable
from openmaas.settings import Deployment


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def count_words(text: str) -> int:
    return len(text.split())


class FakeParams(Params):
    reply: str | None = None
    latency_ms: float = Field(default=0, ge=0)
    tokens_per_s: float = Field(default=0, ge=0)
    fail_every: int = Field(default=0, ge=0)
    fail_status: int = 503
    fail_after_tokens: int | None = None
    embedding_dims: int = Field(default=8, ge=1)
    replies: list[str] = Field(default_factory=list)
    logprobs: list[float] = Field(default_factory=list)
    echo: Literal["prompt"] | None = None
    greedy_reply: str | None = None
    grammar_reply: str | None = None
    script: dict[str, Any] | None = None
    engine_timings: bool = False  # answer with llama.cpp-shaped ``timings`` (prompt 20 ms, 10 ms per token)


def _timings(tokens: int) -> dict[str, float]:
    return {
        "prompt_n": 5,
        "prompt_ms": 20.0,
        "predicted_n": tokens,
        "predicted_ms": 10.0 * tokens,
        "predicted_per_token_ms": 10.0,
    }


class FakeBackend(Backend):
    Params = FakeParams

    def __init__(self, deployment: Deployment) -> None:
        super().__init__(deployment)
        p = self.typed_params(FakeParams)
        self.reply = p.reply
        self.latency = p.latency_ms / 1000
        self.tokens_per_s = p.tokens_per_s
        self.fail_every = p.fail_every
        self.fail_status = p.fail_status
        self.fail_after_tokens = p.fail_after_tokens
        self.dims = p.embedding_dims
        self.replies = list(p.replies)
        self.logprobs = list(p.logprobs)
        self.echo_prompt = p.echo == "prompt"
        self.greedy_reply = p.greedy_reply
        # takes a grammar (as llama.cpp does) and answers this when it gets one, for ttc.enforce tests
        self.accepts_grammar = p.grammar_reply is not None
        self.grammar_reply = p.grammar_reply
        # {"tools": {name: arguments}, "final": text}: a deterministic agent turn pair (client e2e tests)
        self.script = p.script
        self.engine_timings = p.engine_timings
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.fail_every and self.calls % self.fail_every == 0:
            message = f"fake deployment '{self.deployment.name}' failed on purpose"
            if self.fail_status == 429:
                raise UpstreamRateLimited(message)
            if self.fail_status == 503:
                raise UpstreamUnavailable(message)
            raise UpstreamError(message)

    def _scripted(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]
    ) -> tuple[str, str, list[dict[str, Any]] | None]:
        """An agent's two turns: call the first offered tool the script names until a tool result is in
        the conversation, then answer the script's final text followed by that result."""
        assert self.script is not None
        if "steps" in self.script:
            return self._stepped(messages, self.script["steps"], bool(self.script.get("retry_on_error")))
        offered = [t["function"]["name"] for t in tools]
        scripted: dict[str, Any] = self.script.get("tools") or {}
        name = next((n for n in offered if n in scripted), None)
        results = [_text_of(m.get("content")) for m in messages if m.get("role") == "tool"]
        if results or name is None:
            return f"{self.script['final']} {results[-1] if results else ''}".strip(), "stop", None
        arguments = json.dumps(scripted[name])
        call = {"id": "call_script_0", "type": "function", "function": {"name": name, "arguments": arguments}}
        return "", "tool_calls", [call]

    @staticmethod
    def _stepped(
        messages: list[dict[str, Any]], steps: list[dict[str, Any]], retry: bool = False
    ) -> tuple[str, str, list[Payload] | None]:
        """A scripted agent of several steps: step N (the Nth assistant turn since the last user message) is
        ``{"tool_calls": [{"name", "arguments"}...]}`` or ``{"text": …}``; ``{results}`` in a text is every tool
        result since the last user message, joined by " | "; with ``retry``, a failed tool result makes it repeat
        its last calling step."""
        since = 0
        for i, m in enumerate(messages):
            if m.get("role") == "user":
                since = i
        turn = messages[since + 1 :]
        index = min(sum(1 for m in turn if m.get("role") == "assistant"), len(steps) - 1)
        failed = bool(turn) and turn[-1].get("role") == "tool" and "[tool error]" in _text_of(turn[-1].get("content"))
        if failed and retry:  # an agent that retries a failed tool call: its last calling step again
            index = max((i for i in range(index) if "tool_calls" in steps[i]), default=index)
        step = steps[index]
        if "tool_calls" in step:
            calls = [
                {
                    "id": f"call_s{len(turn)}_{n}",
                    "type": "function",
                    "function": {"name": c["name"], "arguments": json.dumps(c.get("arguments", {}))},
                }
                for n, c in enumerate(step["tool_calls"])
            ]
            return "", "tool_calls", calls
        results = " | ".join(_text_of(m.get("content")) for m in turn if m.get("role") == "tool")
        return str(step.get("text", "")).replace("{results}", results), "stop", None

    def _answer(self, payload: Payload, index: int = 0) -> tuple[str, int, str | None, list[dict[str, Any]] | None]:
        messages = payload.get("messages") or []
        prompt = " ".join(_text_of(m.get("content")) for m in messages)
        last_user = next((_text_of(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
        text = self.reply if self.reply is not None else f"fake reply to: {last_user}".strip()
        if self.replies:
            text = self.replies[index % len(self.replies)]
        if self.echo_prompt:
            text = prompt
        if self.greedy_reply is not None and payload.get("temperature") == 0:
            text = self.greedy_reply
        if self.grammar_reply is not None and payload.get("grammar"):
            text = self.grammar_reply
        limit = payload.get("max_completion_tokens") or payload.get("max_tokens")
        finish = "stop"
        words = text.split()
        if limit is not None and len(words) > int(limit):
            text, finish = " ".join(words[: int(limit)]), "length"
        tool_calls = None
        choice = payload.get("tool_choice")
        tools = payload.get("tools") or []
        if tools and choice not in (None, "none", "auto"):
            name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
            tool_calls = [{"id": "call_fake_0", "type": "function", "function": {"name": name, "arguments": "{}"}}]
            finish = "tool_calls"
        if self.script is not None and (tools or self.script.get("force")):
            text, finish, tool_calls = self._scripted(messages, tools)
        elif self.script is not None and "steps" in self.script:  # no tools offered: the script's last text
            texts = [s for s in self.script["steps"] if "text" in s] or [{"text": "no tools offered"}]
            text, finish, _ = self._stepped(messages, texts[-1:])
        fmt = (payload.get("response_format") or {}).get("type")
        if fmt in ("json_object", "json_schema") and tool_calls is None and not self.replies:
            text = '{"answer": "fake"}'
        return text, count_words(prompt), finish, tool_calls

    async def chat(self, payload: Payload) -> Payload:
        self._maybe_fail()
        index = self.calls - 1
        if self.latency:
            await asyncio.sleep(self.latency)
        text, prompt_tokens, finish, tool_calls = self._answer(payload, index)
        message: dict[str, Any] = {"role": "assistant", "content": None if tool_calls else text}
        if tool_calls:
            message["tool_calls"] = tool_calls
        n = int(payload.get("n") or 1)
        completion = 0 if tool_calls else count_words(text)
        result = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": payload.get("model"),
            "choices": [
                {
                    "index": i,
                    "message": message,
                    "finish_reason": finish,
                    "logprobs": self._logprobs(payload, text, index),
                }
                for i in range(n)
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion * n,
                "total_tokens": prompt_tokens + completion * n,
            },
        }
        if self.engine_timings:
            result["timings"] = _timings(completion)
        return result

    def _logprobs(self, payload: Payload, text: str, index: int) -> dict[str, Any] | None:
        if not payload.get("logprobs") or not self.logprobs:
            return None
        value = self.logprobs[index % len(self.logprobs)]
        return {"content": [{"token": w, "logprob": value, "top_logprobs": []} for w in text.split()]}

    async def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        self._maybe_fail()
        if self.latency:
            await asyncio.sleep(self.latency)
        text, prompt_tokens, finish, tool_calls = self._answer(payload)
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": payload.get("model"),
        }
        yield {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}
        sent = 0
        if tool_calls:
            for n, tool_call in enumerate(tool_calls):
                delta = {"tool_calls": [{"index": n, **tool_call}]}
                yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        else:
            for i, word in enumerate(text.split()):
                if self.fail_after_tokens is not None and sent >= int(self.fail_after_tokens):
                    raise UpstreamError(
                        f"fake deployment '{self.deployment.name}' broke the stream on purpose",
                        code="upstream_stream_broken",
                    )
                if self.tokens_per_s:
                    await asyncio.sleep(1 / self.tokens_per_s)
                yield {
                    **base,
                    "choices": [
                        {"index": 0, "delta": {"content": ("" if i == 0 else " ") + word}, "finish_reason": None}
                    ],
                }
                sent += 1
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}
        yield {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": sent, "total_tokens": prompt_tokens + sent},
            **({"timings": _timings(sent)} if self.engine_timings else {}),
        }

    async def complete(self, payload: Payload) -> Payload:
        prompt = payload.get("prompt")
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
        result = await self.chat({**payload, "messages": [{"role": "user", "content": text}]})
        choice = result["choices"][0]
        return {
            **result,
            "object": "text_completion",
            "id": "cmpl-fake",
            "choices": [
                {
                    "index": 0,
                    "text": choice["message"]["content"] or "",
                    "finish_reason": choice["finish_reason"],
                    "logprobs": None,
                }
            ],
        }

    async def complete_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        prompt = payload.get("prompt")
        text = prompt if isinstance(prompt, str) else " ".join(map(str, prompt or []))
        async for chunk in self.chat_stream({**payload, "messages": [{"role": "user", "content": text}]}):
            choices = [
                {
                    "index": c["index"],
                    "text": c["delta"].get("content") or "",
                    "finish_reason": c["finish_reason"],
                    "logprobs": None,
                }
                for c in chunk["choices"]
            ]
            yield {**chunk, "object": "text_completion", "id": "cmpl-fake", "choices": choices}

    async def count_tokens(self, text: str) -> int | None:
        return count_words(text)

    async def count_prompt_tokens(self, payload: Payload) -> int | None:
        return count_words(" ".join(_text_of(m.get("content")) for m in payload.get("messages") or []))

    async def embed(self, payload: Payload) -> Payload:
        if not self.deployment.capabilities.embeddings:
            return await super().embed(payload)
        self._maybe_fail()
        inputs = payload["input"]
        items = [inputs] if isinstance(inputs, str) else inputs
        data = []
        tokens = 0
        for i, item in enumerate(items):
            text = item if isinstance(item, str) else " ".join(map(str, item))
            tokens += max(1, count_words(text))
            digest = hashlib.sha256(text.encode()).digest() * ((self.dims * 4) // 32 + 1)
            raw = struct.unpack(f"<{self.dims}i", digest[: self.dims * 4])
            norm = sum(v * v for v in raw) ** 0.5 or 1.0
            data.append({"object": "embedding", "index": i, "embedding": [v / norm for v in raw]})
        return {
            "object": "list",
            "data": data,
            "model": payload.get("model"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

"""A stream whose first chunk already arrived, and the metering of what it delivers.

``Stream.chunks`` is what a client receives: masked values restored, usage kept for the ledger and
shown only when asked for, and a failure after the first chunk billed for what was produced and
raised (the route then sends an explicit error event: never a silently truncated stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from openmaas.backends.anthropic_translate import PROMPT_TOKENS_KEY
from openmaas.backends.base import Backend, Payload
from openmaas.core.view import cached_tokens, completion_text, engine_timings, reported_usage
from openmaas.errors import OpenMaaSError
from openmaas.metering import tokens
from openmaas.metering.meter import EngineTimings, Metering, Outcome, Ticket, failure
from openmaas.privacy.classify import Restorer
from openmaas.routing.router import Served

if TYPE_CHECKING:
    from openmaas.gateway import Call


@dataclass
class StreamMeter:
    metering: Metering
    ticket: Ticket
    backend: Backend
    payload: Payload
    text: list[str] = field(default_factory=list)
    content_chunks: int = 0

    async def _outcome(self, usage: Payload | None, status: int, code: str | None, interrupted: bool) -> Outcome:
        if usage and not interrupted:
            outcome = Outcome(
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
                cached_tokens=cached_tokens(usage),
            )
        else:
            text = "".join(self.text)
            outcome = await tokens.from_partial_stream(self.backend, self.payload, usage, text, self.content_chunks)
        outcome.status, outcome.error_code, outcome.interrupted = status, code, interrupted
        return outcome

    async def end(
        self, usage: Payload | None, status: int = 200, code: str | None = None, engine: EngineTimings | None = None
    ) -> Outcome:
        outcome = await self._outcome(usage, status, code, interrupted=status != 200)
        outcome.engine = engine
        await self.metering.finish(self.ticket, outcome)
        return outcome

    def abandon(self, usage: Payload | None, exc: BaseException, then: Callable[[Outcome], None]) -> None:
        """The stream ended without our error (the client went away, or a bug): bill what was produced,
        without blocking the teardown; ``then`` hears the outcome."""
        status, code, _ = failure(exc)

        async def later() -> None:
            try:
                outcome = await self._outcome(usage, status, code, interrupted=True)
            except Exception:
                outcome = Outcome(0, self.content_chunks, "estimate", status, code, True)
            self.metering.finish_later(self.ticket, outcome)
            then(outcome)

        if not self.ticket.finished:
            self.metering.spawn(later())


@dataclass
class Stream:
    """A stream whose first chunk has already arrived (so early failures are HTTP errors)."""

    first: Payload
    rest: AsyncIterator[Payload]
    public_model: str
    include_usage: bool
    usage: Payload | None = None
    engine: EngineTimings | None = None  # the engine's own timings, from the chunk that carried them
    meter: StreamMeter | None = None
    restorer: Restorer | None = None
    served: Served | None = None  # the deployment and payload that answered
    call: Call | None = None  # told ``finish`` as the stream ends (the lifecycle's observers)

    async def chunks(self) -> AsyncIterator[Payload]:
        """The client's chunks. A failure after the first chunk bills what was produced, sends a
        final usage chunk (``choices: []``) and then raises, so the route sends an error event:
        the stream is never silently truncated."""
        held: Payload | None = None
        chunk: Payload | None = self.first
        try:
            while chunk is not None:
                chunk.pop(PROMPT_TOKENS_KEY, None)
                if chunk.get("usage"):
                    self.usage = chunk["usage"]
                if "timings" in chunk and (timed := engine_timings(chunk)) is not None:
                    self.engine = EngineTimings(*timed)
                chunk["model"] = self.public_model
                if chunk.get("choices"):
                    if self.restorer is not None:
                        self._restore(self.restorer, chunk)
                    if self.meter is not None:
                        self._observe(self.meter, chunk)
                    if not self.include_usage:
                        chunk.pop("usage", None)
                    yield chunk
                elif self.include_usage:
                    held = chunk  # the usage chunk goes out after the ledger commit
                chunk = await anext(self.rest, None)
        except OpenMaaSError as exc:
            usage = self.usage
            if self.meter is not None:
                outcome = await self.meter.end(self.usage, exc.status, exc.code)
                self._finish(outcome)
                usage = {
                    "prompt_tokens": outcome.prompt_tokens,
                    "completion_tokens": outcome.completion_tokens,
                    "total_tokens": outcome.prompt_tokens + outcome.completion_tokens,
                }
            else:
                self._finish(self._unmetered(exc.status, exc.code))
            if usage:
                yield {"object": "chat.completion.chunk", "model": self.public_model, "choices": [], "usage": usage}
            raise
        except BaseException as exc:
            if self.meter is not None:
                self.meter.abandon(self.usage, exc, self._finish)
            else:
                status, code, _ = failure(exc)
                self._finish(self._unmetered(status, code))
            raise
        if self.meter is not None:
            self._finish(await self.meter.end(self.usage, engine=self.engine))
        else:
            unmetered = self._unmetered(200, None)
            unmetered.engine = self.engine
            self._finish(unmetered)
        if held is not None:
            yield held

    def _finish(self, outcome: Outcome) -> None:
        if self.call is not None:
            self.call.finish(outcome)

    def _unmetered(self, status: int, code: str | None) -> Outcome:
        prompt, completion = reported_usage({"usage": self.usage}) or (0, 0)
        return Outcome(prompt, completion, status=status, error_code=code, interrupted=status != 200)

    @staticmethod
    def _restore(restorer: Restorer, chunk: Payload) -> None:
        """Restore masked values in each choice's text and each streamed tool call's arguments;
        a choice's last chunk (``finish_reason``) also carries whatever was held back for it."""
        for choice in chunk["choices"]:
            index = choice.get("index", 0)
            delta = choice.get("delta")
            owner, key = (delta, "content") if isinstance(delta, dict) else (choice, "text")
            piece = owner.get(key)
            if isinstance(piece, str):
                owner[key] = restorer.feed(piece, (index, key))
            calls = delta.get("tool_calls") if isinstance(delta, dict) else None
            for call in calls if isinstance(calls, list) else ():
                function = call.get("function") if isinstance(call, dict) else None
                if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                    function["arguments"] = restorer.feed(function["arguments"], (index, "tool", call.get("index")))
            if choice.get("finish_reason") is None:
                continue
            for slot in restorer.held():
                if not isinstance(slot, tuple) or slot[0] != index:
                    continue
                rest = restorer.flush(slot)
                if slot[1] == "tool" and isinstance(delta, dict):
                    tail = {"index": slot[2], "function": {"arguments": rest}}
                    delta["tool_calls"] = [*(delta.get("tool_calls") or []), tail]
                else:
                    owner[key] = (owner.get(key) or "") + rest

    @staticmethod
    def _observe(meter: StreamMeter, chunk: Payload) -> None:
        for choice in chunk["choices"]:
            piece = completion_text({"choices": [choice]})
            if piece:
                meter.text.append(piece)
                meter.content_chunks += 1

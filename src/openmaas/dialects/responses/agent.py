"""An agent run (``agents.loop``) → the Responses stream and response object, in OpenAI's hosted-MCP shape.

Output items: ``mcp_list_tools`` (one per server), the model's messages and reasoning of every step,
``mcp_call`` (arguments, output or error), ``mcp_approval_request``, and ``function_call`` for tools the
client runs. SSE: ``response.mcp_list_tools.in_progress|completed|failed``, ``response.mcp_call.in_progress``,
``response.mcp_call_arguments.delta|done``, ``response.mcp_call.completed|failed`` — each as it happens, with
the model's text deltas in between. A unary request renders the same events into the final object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from openmaas.agents.events import (
    AgentEvent,
    ApprovalRequested,
    ModelEvent,
    RunEnded,
    ToolCallEnded,
    ToolCallStarted,
    ToolsListed,
)
from openmaas.dialects.responses.render import Encoder, Item
from openmaas.errors import OpenMaaSError


class AgentEncoder(Encoder):
    """The Responses encoder, extended with the agent's items (keyed by negative numbers beside the model's
    part indexes)."""

    next_key = -1
    mcp_keys: dict[str, int]
    raise_errors = False  # unary: a failed run is the HTTP error, not a failed response object

    def _key(self) -> int:
        key = self.next_key
        self.next_key -= 1
        return key

    async def encode_run(self, events: AsyncIterator[AgentEvent]) -> AsyncIterator[bytes]:
        self.mcp_keys = {}
        yield self._event("response.created", response=self.shell.response("in_progress", [], None))
        yield self._event("response.in_progress", response=self.shell.response("in_progress", [], None))
        try:
            async for event in events:
                for out in self._agent(event):
                    yield out
                if isinstance(event, RunEnded):
                    status = "completed" if event.complete else "incomplete"
                    reason = "max_output_tokens" if event.reason == "max_tokens" else event.reason
                    final = self.shell.response(status, self._output(), event.usage, incomplete=reason)
                    final.setdefault("openmaas", {})["agent"] = {
                        "end": event.reason,
                        "steps": event.steps,
                        "tool_calls": event.tool_calls,
                        "cost_usd": event.cost_nanos / 1e9,
                    }
                    await self.finished(final)
                    kind = "response.completed" if status == "completed" else "response.incomplete"
                    yield self._event(kind, response=final)
        except OpenMaaSError as exc:
            if self.raise_errors:
                raise
            error = {"code": exc.code or exc.type, "message": exc.message}
            failed = self.shell.response("failed", self._output(), None, error)
            await self.finished(failed)
            yield self._event("error", code=error["code"], message=exc.message, param=exc.param)
            yield self._event("response.failed", response=failed)

    def _agent(self, event: AgentEvent) -> list[bytes]:
        if isinstance(event, ModelEvent):
            return self._render(event.event)
        if isinstance(event, ToolsListed):
            key = self._key()
            item: Item = {
                "type": "mcp_list_tools",
                "id": "mcpl_" + self.new_id(),
                "server_label": event.server_label,
                "tools": [],
            }
            out = [self._open(key, item)]
            at = self._at(key)
            out.append(self._event("response.mcp_list_tools.in_progress", item_id=item["id"], output_index=at))
            item["tools"] = event.tools
            if event.error:
                item["error"] = event.error
            done = (
                "response.mcp_list_tools.failed"
                if event.error and not event.tools
                else "response.mcp_list_tools.completed"
            )
            out.append(self._event(done, item_id=item["id"], output_index=at))
            out.append(self._event("response.output_item.done", output_index=at, item=item))
            return out
        if isinstance(event, ToolCallStarted):
            key = self._key()
            self.mcp_keys[event.item_id] = key
            item = {
                "type": "mcp_call",
                "id": event.item_id,
                "server_label": event.server_label,
                "name": event.name,
                "arguments": "",
                "output": None,
                "error": None,
                "status": "in_progress",
            }
            out = [self._open(key, item)]
            at = self._at(key)
            out.append(self._event("response.mcp_call.in_progress", item_id=item["id"], output_index=at))
            item["arguments"] = event.arguments
            out.append(
                self._event(
                    "response.mcp_call_arguments.delta", item_id=item["id"], output_index=at, delta=event.arguments
                )
            )
            out.append(
                self._event(
                    "response.mcp_call_arguments.done", item_id=item["id"], output_index=at, arguments=event.arguments
                )
            )
            return out
        if isinstance(event, ToolCallEnded):
            key = self.mcp_keys[event.item_id]
            item = self.items[key]
            at = self._at(key)
            item["output"] = event.output
            item["error"] = _error(event)
            item["status"] = "failed" if event.error is not None else "completed"
            kind = "response.mcp_call.failed" if event.error is not None else "response.mcp_call.completed"
            return [
                self._event(kind, item_id=item["id"], output_index=at),
                self._event("response.output_item.done", output_index=at, item=item),
            ]
        if isinstance(event, ApprovalRequested):
            key = self._key()
            item = {
                "type": "mcp_approval_request",
                "id": event.item_id,
                "server_label": event.server_label,
                "name": event.name,
                "arguments": event.arguments,
            }
            return [
                self._open(key, item),
                self._event("response.output_item.done", output_index=self._at(key), item=item),
            ]
        return []


def _error(event: ToolCallEnded) -> dict[str, Any] | None:
    if event.error is None:
        return None
    if event.status is None:  # the tool ran and reported a failure
        return {"type": "mcp_tool_execution_error", "content": [{"type": "text", "text": event.error}]}
    return {"type": "http_error", "code": event.status, "message": event.error}


async def render_unary(encoder: AgentEncoder, events: AsyncIterator[AgentEvent]) -> None:
    """Run the events through the encoder for its final object (``finished`` receives it)."""
    encoder.raise_errors = True
    async for _ in encoder.encode_run(events):
        pass

"""Thin routes of the Responses API, its stored state and background runs (errors: the OpenAI envelope)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.agents.loop import AgentLoop
from openmaas.agents.spec import AgentSpec
from openmaas.agents.spec import limits as agent_limits
from openmaas.agents.steps import prime
from openmaas.core.execute import EventStream, Executor
from openmaas.core.types import Request as Canonical
from openmaas.dialects.responses.agent import AgentEncoder, render_unary
from openmaas.dialects.responses.load import Item, agent_spec, load, normalise, validate
from openmaas.dialects.responses.render import Encoder, Finished, Shell, from_result
from openmaas.dialects.responses.wire import ResponsesRequest
from openmaas.errors import InvalidRequest, OpenMaaSError, ServiceUnavailable
from openmaas.gateway import Call
from openmaas.ids import IdGenerator
from openmaas.mcp.config import AgentSettings
from openmaas.server.event_stream import event_stream
from openmaas.server.routes import authenticate, read_json
from openmaas.settings import ResponsesDialect
from openmaas.store.responses import ResponseStore, StoredResponse

log = logging.getLogger("openmaas.responses")
Agents = tuple[AgentLoop, AgentSettings]  # when hosted MCP tools are served


def _json(data: object, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json", headers=headers)


class ResponsesAPI:
    def __init__(
        self, executor: Executor, store: ResponseStore, settings: ResponsesDialect, agents: Agents | None = None
    ) -> None:
        self.executor, self.store, self.settings, self.agents = executor, store, settings, agents
        self.new_response_id = IdGenerator("resp")
        self.new_id = IdGenerator("item")
        self.tasks: dict[str, asyncio.Task[None]] = {}  # background responses running in this process
        self.purge: asyncio.Task[None] | None = None  # the retention purge, when one runs
        self.last_purge = 0.0

    def _call(self, request: Request) -> Call:
        principal = authenticate(request)
        return Call(request.state.request_id, principal, surface="responses")

    async def _save(self, call: Call, shell: Shell, items: list[Item], history: list[Item], response: Item) -> None:
        kept = not (call.privacy == "sensitive" and self.settings.store_sensitive == "none")
        stored = response if kept else {**response, "output": [], "openmaas": {"content_stored": False}}
        await self.store.put(
            StoredResponse(
                id=shell.id,
                tenant_id=call.principal.tenant_id,
                key_id=call.principal.key_id,
                status=str(response["status"]),
                model=shell.model,
                response=stored,
                input_items=items if kept else None,
                conversation=[*history, *items, *response["output"]] if kept else None,
                content_stored=kept,
                background=bool(shell.wire.background),
                previous_response_id=shell.wire.previous_response_id,
                privacy=call.privacy,
                created_at=float(shell.created_at),
            )
        )

    def _maybe_purge(self) -> None:
        now = time.time()
        if self.settings.retention_days <= 0 or now - self.last_purge < self.settings.retention_check_seconds:
            return
        self.last_purge = now
        cutoff = now - self.settings.retention_days * 86_400

        async def purge() -> None:
            try:
                removed = await self.store.purge(cutoff)
                if removed:
                    log.info("retention: deleted %d stored responses", removed)
            except Exception:
                log.exception("retention purge failed")

        task = asyncio.get_running_loop().create_task(purge())
        self.purge = task

    async def create(self, request: Request) -> Response:
        call = self._call(request)
        wire = validate(await read_json(request, call))
        history: list[Item] = []
        if wire.previous_response_id:
            previous = await self.store.get(wire.previous_response_id, call.principal.tenant_id)
            if not previous.content_stored or previous.conversation is None:
                raise InvalidRequest(
                    f"Response '{previous.id}' cannot be continued: its content was not stored (sensitive request, "
                    "dialects.responses.store_sensitive: none)",
                    param="previous_response_id",
                )
            history = previous.conversation
            call.body_bytes = None  # the prompt is larger than this body: admission bounds it from the items
        items = normalise(wire, self.new_id)
        canonical = load(wire, items, history)
        shell = Shell(self.new_response_id(), wire.model, wire, canonical.notes)
        storing = wire.store is not False and self.settings.store
        if storing:
            self._maybe_purge()

        async def finished(response: Item) -> None:
            if storing:
                await self._save(call, shell, items, history, response)

        spec = agent_spec(wire, items, history)
        if spec is not None:
            if self.agents is None:
                raise InvalidRequest("hosted MCP tools are not enabled on this gateway", param="tools")
            if wire.background:
                raise InvalidRequest("background responses with hosted MCP tools are not supported", param="background")
            return await self._agent_run(request, call, wire, canonical, shell, spec, finished)
        if wire.background:
            return await self._start_background(call, wire, canonical, shell, items, history, storing)
        out = await self.executor.run(canonical, call)
        headers = dict(call.headers)
        if isinstance(out, EventStream):
            body = Encoder(shell, self.new_id, finished).encode(out.events)
            response: Response = event_stream(request, body, headers)
        else:
            result = from_result(shell, out, self.new_id)
            await finished(result)
            response = _json(result, headers=headers)
        response.raw_headers += call.raw_headers
        return response

    async def _agent_run(
        self,
        request: Request,
        call: Call,
        wire: ResponsesRequest,
        canonical: Canonical,
        shell: Shell,
        spec: AgentSpec,
        finished: Finished,
    ) -> Response:
        assert self.agents is not None
        loop, defaults = self.agents
        limits = agent_limits(defaults, spec.asked)
        events = loop.run(canonical, call.principal, call.request_id, "responses", spec, limits)
        if wire.stream:
            primed = await prime(events)  # errors before the first model output are HTTP errors
            body = AgentEncoder(shell, self.new_id, finished).encode_run(primed)
            return event_stream(request, body)
        final: list[Item] = []

        async def keep(response: Item) -> None:
            final.append(response)
            await finished(response)

        await render_unary(AgentEncoder(shell, self.new_id, keep), events)  # a failure raises: an HTTP error
        response = _json(final[-1], headers=call.headers)
        response.raw_headers += call.raw_headers
        return response

    async def _start_background(
        self,
        call: Call,
        wire: ResponsesRequest,
        canonical: Canonical,
        shell: Shell,
        items: list[Item],
        history: list[Item],
        storing: bool,
    ) -> Response:
        if not storing:
            raise InvalidRequest("background responses must be stored (store: true)", param="background")
        if wire.stream:
            raise InvalidRequest("background responses are polled with GET; stream must be false", param="stream")
        if len(self.tasks) >= self.settings.max_background:
            raise ServiceUnavailable("Too many background responses are running; try again shortly.")
        queued = shell.response("queued", [], None)
        await self._save(call, shell, items, history, queued)
        canonical.stream = False

        async def run() -> None:
            try:
                await self._save(call, shell, items, history, shell.response("in_progress", [], None))
                try:
                    out = await self.executor.run(canonical, call)
                    assert not isinstance(out, EventStream)  # stream is off for background runs
                    result = from_result(shell, out, self.new_id)
                except OpenMaaSError as exc:
                    error = {"code": exc.code or exc.type, "message": exc.message}
                    result = shell.response("failed", [], None, error)
                current = await self.store.get(shell.id, call.principal.tenant_id)
                if current.status != "cancelled":  # a cancel on another replica wins
                    await self._save(call, shell, items, history, result)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("background response %s failed", shell.id)
            finally:
                self.tasks.pop(shell.id, None)

        self.tasks[shell.id] = asyncio.get_running_loop().create_task(run())
        return _json(queued, headers=call.headers)

    async def retrieve(self, request: Request) -> Response:
        call = self._call(request)
        stored = await self.store.get(request.path_params["response_id"], call.principal.tenant_id)
        return _json(stored.response)

    async def delete(self, request: Request) -> Response:
        call = self._call(request)
        response_id = request.path_params["response_id"]
        await self.store.delete(response_id, call.principal.tenant_id)
        task = self.tasks.pop(response_id, None)
        if task is not None:
            task.cancel()
        return _json({"id": response_id, "object": "response", "deleted": True})

    async def cancel(self, request: Request) -> Response:
        call = self._call(request)
        response_id = request.path_params["response_id"]
        stored = await self.store.get(response_id, call.principal.tenant_id)
        if not stored.background:
            raise InvalidRequest("Only background responses can be cancelled.", param="response_id")
        task = self.tasks.pop(response_id, None)
        if task is not None:
            task.cancel()
        await self.store.set_status(response_id, call.principal.tenant_id, "cancelled", ("queued", "in_progress"))
        return _json((await self.store.get(response_id, call.principal.tenant_id)).response)

    async def input_items(self, request: Request) -> Response:
        call = self._call(request)
        stored = await self.store.get(request.path_params["response_id"], call.principal.tenant_id)
        q = request.query_params
        try:
            limit = int(q.get("limit", "20"))
        except ValueError:
            raise InvalidRequest("limit must be an integer from 1 to 100", param="limit") from None
        if not 1 <= limit <= 100:
            raise InvalidRequest("limit must be an integer from 1 to 100", param="limit")
        order = q.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("order must be 'asc' or 'desc'", param="order")
        items: list[dict[str, Any]] = list(stored.input_items or [])
        if order == "desc":
            items.reverse()
        after = q.get("after")
        if after:
            ids = [i.get("id") for i in items]
            if after not in ids:
                raise InvalidRequest(f"No input item '{after}' in this response", param="after")
            items = items[ids.index(after) + 1 :]
        page = items[:limit]
        first, last = (page[0].get("id"), page[-1].get("id")) if page else (None, None)
        return _json(
            {"object": "list", "data": page, "first_id": first, "last_id": last, "has_more": len(items) > limit}
        )


def routes(
    executor: Executor, store: ResponseStore, settings: ResponsesDialect, agents: Agents | None = None
) -> list[Route]:
    api = ResponsesAPI(executor, store, settings, agents)
    return [
        Route("/v1/responses", api.create, methods=["POST"]),
        Route("/v1/responses/{response_id}", api.retrieve, methods=["GET"]),
        Route("/v1/responses/{response_id}", api.delete, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", api.input_items, methods=["GET"]),
        Route("/v1/responses/{response_id}/cancel", api.cancel, methods=["POST"]),
    ]

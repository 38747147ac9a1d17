"""Structured logs: text for a terminal (the default) or JSON lines (``server.log_format: json``, formatted by
``python-json-logger``), and the access log — one line per request, written as the request ends (a lifecycle
observer): request id, dialect, model, deployment, tenant, key prefix, privacy class, status, latency, time to
first token, tokens, cost. Never prompt text, never a key (the prefix shown in lists is not enough to
authenticate)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from pythonjsonlogger.json import JsonFormatter

from openmaas.lifecycle import Observer
from openmaas.metering.pricing import cost_nanos

if TYPE_CHECKING:
    from openmaas.gateway import Call
    from openmaas.metering.meter import Outcome
    from openmaas.routing.decision import RouteDecision
    from openmaas.routing.registry import Registry

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(level: str, fmt: str) -> None:
    """The process's root handler: text or JSON lines on stderr."""
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class AccessLog(Observer):
    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.log = logging.getLogger("openmaas.access")
        self._open: dict[int, tuple[float, str, float | None]] = {}  # call → (started, endpoint, first token)
        self._models: dict[int, str] = {}

    def started(self, call: Call, endpoint: str) -> None:
        self._open[id(call)] = (time.perf_counter(), call.surface if endpoint == "chat" else endpoint, None)

    def routed(self, call: Call, decision: RouteDecision, deployment: str | None) -> None:
        self._models[id(call)] = decision.requested

    def first_token(self, call: Call) -> None:
        state = self._open.get(id(call))
        if state is not None:
            self._open[id(call)] = (state[0], state[1], time.perf_counter())

    def finished(self, call: Call, outcome: Outcome) -> None:
        state = self._open.pop(id(call), None)
        model = self._models.pop(id(call), None)
        if state is None or not self.log.isEnabledFor(logging.INFO):
            return
        started, endpoint, first = state
        now = time.perf_counter()
        deployment = self.registry.deployments.get(call.deployment) if call.deployment else None
        nanos = outcome.cost_nanos
        if nanos is None:
            nanos = cost_nanos(deployment, outcome.prompt_tokens, outcome.completion_tokens) if deployment else 0
        principal = call.principal
        fields: dict[str, Any] = {
            "request_id": call.request_id,
            "dialect": endpoint,
            "model": model,
            "deployment": call.deployment,
            "tenant": principal.tenant_name or None,
            "key": None if principal.anonymous else principal.key_prefix,
            "privacy": call.privacy,
            "status": outcome.status,
            "error_code": outcome.error_code,
            "latency_ms": round((now - started) * 1000, 1),
            "ttft_ms": None if first is None else round((first - started) * 1000, 1),
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
            "cached_tokens": outcome.cached_tokens,
            "cost_usd": nanos / 1e9,
        }
        line = " ".join(f"{k}={v}" for k, v in fields.items() if v is not None and v != "")
        self.log.info("access %s", line, extra=fields)

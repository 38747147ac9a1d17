"""The HTTP provider shared by upstream backends: pooling, timeouts, error mapping.

Provider concerns (base URL, auth header, connection pool, timeouts) live
here; dialect translation lives in the backends. Every aiohttp exception is
translated into the ``openmaas.errors`` tree at this seam, with secrets
redacted from anything quoted back.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from openmaas.errors import (
    ContextLengthExceeded,
    OpenMaaSError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamTimeout,
    UpstreamUnavailable,
    redact,
)
from openmaas.settings import Deployment

try:  # opentelemetry-api ships with the MCP SDK; the SDK (exporting) is the ``otel`` extra
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
except ImportError:  # pragma: no cover
    otel_context = None  # type: ignore[assignment]

log = logging.getLogger("openmaas.upstream")
MAX_SSE_LINE = 16 * 1024 * 1024  # one server-sent event line, in bytes


def resolve_api_key(api_key_env: str | None, api_key: str | None) -> str | None:
    """The key from the named environment variable (preferred: no secret in the config file), else the config."""
    if api_key_env:
        return os.environ.get(api_key_env) or None
    return api_key or None


def traced(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` with the W3C ``traceparent`` of the current span, when tracing runs (observability.tracing).
    Nothing attached to the OpenTelemetry context (tracing off, or this request not sampled) is one lookup."""
    if otel_context is None or not otel_context.get_current():
        return headers
    if not trace.get_current_span().get_span_context().is_valid:
        return headers
    carrier = dict(headers)
    propagate.inject(carrier)
    return carrier


class HTTPProvider:
    def __init__(self, deployment: Deployment, base_url: str, headers: dict[str, str]) -> None:
        self.name = deployment.name
        self.base_url = base_url.rstrip("/")
        self.headers = {"content-type": "application/json", **headers}
        self.secrets = tuple(v for v in headers.values() if v)
        t = deployment.timeouts
        # Streams: the first chunk (and each next one) within first_token, all within total. A unary response
        # only starts once the whole answer is generated, so it is bound by total alone — else any answer
        # slower than first_token (a long one, or a local engine's queue) would time out.
        self.timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect, sock_read=t.first_token)
        self.unary_timeout = aiohttp.ClientTimeout(total=t.total, sock_connect=t.connect)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=30)
            self._session = aiohttp.ClientSession(
                connector=connector,
                # one session carries every tenant's calls: a cookie an upstream sets (a CDN's bot-management
                # cookie, a sticky-session cookie) must not tie one tenant's requests to another's
                cookie_jar=aiohttp.DummyCookieJar(),
                json_serialize=lambda o: orjson.dumps(o).decode(),
                auto_decompress=True,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, path: str, data: bytes, timeout: aiohttp.ClientTimeout) -> aiohttp.ClientResponse:
        """POST, once more on a fresh connection when the pooled one was already closing while the
        request was written (the peer closed an idle keep-alive connection: it never got the request,
        so sending it again cannot run it twice)."""
        headers = traced(self.headers)
        try:
            return await self.session.post(self.base_url + path, data=data, headers=headers, timeout=timeout)
        except aiohttp.ClientOSError:
            log.debug("upstream %s: pooled connection was closing; sending on a new one", self.name)
            return await self.session.post(self.base_url + path, data=data, headers=headers, timeout=timeout)

    async def post_json(self, path: str, body: dict[str, Any]) -> Any:
        try:
            async with await self._post(path, orjson.dumps(body), self.unary_timeout) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise self.http_error(resp.status, raw)
                return loads(raw)
        except OpenMaaSError:
            raise
        except ValueError as exc:
            raise UpstreamError(f"upstream for '{self.name}' returned invalid JSON") from exc
        except Exception as exc:
            raise self.transport_error(exc) from exc

    async def get_json(self, path: str, timeout: float = 5.0) -> Any:
        try:
            async with self.session.get(
                self.base_url + path,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise self.http_error(resp.status, raw)
                return orjson.loads(raw)
        except OpenMaaSError:
            raise
        except Exception as exc:
            raise self.transport_error(exc) from exc

    async def stream_sse(self, path: str, body: dict[str, Any]) -> AsyncIterator[tuple[str | None, bytes]]:
        """POST and yield ``(event, data)`` for each server-sent event.

        Lines are split here from whatever each socket read brought (one wake-up per read, not one per
        line: an engine sends each token as ``data: …`` plus a blank line, so this halves the relay's
        steps per token); a line longer than ``MAX_SSE_LINE`` is an upstream error, never unbounded memory."""
        try:
            async with await self._post(path, orjson.dumps(body), self.timeout) as resp:
                if resp.status >= 400:
                    raise self.http_error(resp.status, await resp.read())
                event: str | None = None
                pending = b""
                async for data in resp.content.iter_any():
                    if pending:
                        data = pending + data
                    start = 0
                    while (end := data.find(b"\n", start)) >= 0:
                        line = data[start:end]
                        start = end + 1
                        if line.endswith(b"\r"):
                            line = line[:-1]
                        if not line:
                            event = None
                        elif line.startswith(b"data:"):
                            yield event, line[5:].lstrip()
                        elif line.startswith(b"event:"):
                            event = line[6:].strip().decode()
                    pending = data[start:]
                    if len(pending) > MAX_SSE_LINE:
                        raise UpstreamError(f"upstream for '{self.name}' sent a stream line over {MAX_SSE_LINE} bytes")
                if pending.startswith(b"data:"):  # the last line had no newline
                    yield event, pending[5:].rstrip(b"\r").lstrip()
        except OpenMaaSError:
            raise
        except Exception as exc:
            raise self.transport_error(exc) from exc

    def transport_error(self, exc: Exception) -> Exception:
        if isinstance(exc, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return UpstreamTimeout(f"upstream for '{self.name}' timed out")
        if isinstance(exc, aiohttp.ClientConnectorError | ConnectionError):
            return UpstreamUnavailable(f"could not connect to the upstream for '{self.name}'")
        if isinstance(exc, aiohttp.ClientError):
            return UpstreamError(f"upstream for '{self.name}' failed: {redact(type(exc).__name__, self.secrets)}")
        return exc

    def http_error(self, status: int, raw: bytes) -> OpenMaaSError:
        detail, error = _upstream_message(raw)
        detail = redact(detail, self.secrets)[:500]
        where = f"upstream for '{self.name}'"
        kind = str(error.get("type") or "") + str(error.get("code") or "")
        if status == 429:
            return UpstreamRateLimited(f"{where} is rate limiting: {detail}")
        if status in (401, 403):
            return UpstreamError(f"{where} refused the gateway's credentials (HTTP {status})")
        if "context" in kind or "context length" in detail or "context size" in detail:
            limit = error.get("n_ctx")
            suffix = f" (the model's context is {limit} tokens)" if limit else ""
            return ContextLengthExceeded(f"{detail}{suffix}", param="messages")
        if status == 408:
            return UpstreamTimeout(f"{where} timed out: {detail}")
        if 400 <= status < 500:
            return UpstreamRejected(f"{where} rejected the request: {detail}")
        if status == 503:
            return UpstreamUnavailable(f"{where} is unavailable: {detail}")
        if status == 504:
            return UpstreamTimeout(f"{where} timed out: {detail}")
        return UpstreamError(f"{where} failed with HTTP {status}: {detail}")


def loads(raw: bytes) -> Any:
    """Parse JSON; engines may cut a multi-byte character at max_tokens, so
    invalid UTF-8 is replaced rather than failing the whole response."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return orjson.loads(raw.decode("utf-8", "replace"))


def _upstream_message(raw: bytes) -> tuple[str, dict[str, Any]]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw[:300].decode("utf-8", "replace"), {}
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error), error
    if isinstance(error, str):
        return error, {}
    return str(body)[:300], {}

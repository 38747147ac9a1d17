"""Runs last (file order): no API key, admin key or upstream secret was written to any log of this run.

It first drives a full flow itself (admin creates a key, the key is used, mistyped,
rotated and revoked, an upstream with a secret is called), so the scan means
something even when run alone; after a full run it also covers every log the
other tests wrote (in-process and every ``openmaas serve`` subprocess).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest

from openmaas.console.sessions import COOKIE, CSRF_HEADER
from openmaas.testing.serve import serve_app
from tests.conftest import metered_settings, running_app
from tests.console.conftest import ADMIN_KEY as CONSOLE_ADMIN_KEY
from tests.console.test_sessions import ADMIN as SESSIONS_ADMIN_KEY
from tests.helpers import ADMIN_KEY, log_dir
from tests.observability.test_tracing import Receiver
from tests.server.test_upstreams_e2e import ANTHROPIC_KEY, UPSTREAM_KEY

pytestmark = pytest.mark.anyio
FULL_KEY = re.compile(r"om-[A-Za-z0-9_\-]{30,}")
SECRET_PROMPT = "my card 4111 1111 1111 1111 and my HIV test"


async def test_no_secret_reaches_any_log(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    used: list[str] = []
    receiver = Receiver()  # the flow's traces go to a real OTLP/HTTP receiver and are scanned too
    async with contextlib.AsyncExitStack() as stack:
        collector = await stack.enter_async_context(serve_app(receiver))
        tracing = {"enabled": True, "endpoint": collector + "/v1/traces", "flush_ms": 50}
        store = {"url": f"sqlite:///{tmp_path / 'db.sqlite'}"}
        _, client = await stack.enter_async_context(running_app(metered_settings(tmp_path, store, tracing=tracing)))
        await client.post("/admin/tenants", json={"name": "scan"}, headers=admin)
        created = (await client.post("/admin/keys", json={"tenant": "scan", "rpm": 2}, headers=admin)).json()
        used.append(created["key"])
        auth = {"authorization": f"Bearer {created['key']}"}
        for _ in range(3):  # the third is rate limited
            body = {"model": "fake-chat", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
            await client.post("/v1/chat/completions", json=body, headers=auth)
        await client.post("/v1/chat/completions", json={"model": "x"}, headers={"x-api-key": created["key"] + "x"})
        signed_in = await client.post("/console/session", json={"key": created["key"]})  # a console session too
        used.append(client.cookies[COOKIE])
        csrf = {CSRF_HEADER: signed_in.json()["csrf"]}
        await client.get("/admin/requests", headers=csrf)
        body = {"model": "fake-chat", "messages": [{"role": "user", "content": SECRET_PROMPT}]}
        await client.post("/v1/chat/completions", json=body, headers=csrf)
        await client.delete("/console/session", headers=csrf)
        rotated = (await client.post(f"/admin/keys/{created['id']}/rotate", headers=admin)).json()
        used.append(rotated["key"])
        await client.post(f"/admin/keys/{created['id']}/revoke", headers=admin)
        await client.get("/v1/models", headers={"authorization": f"Bearer {rotated['key']}"})
        telemetry = (await client.get("/metrics", headers=admin)).text  # the metrics of that same flow

    spans = b"".join(receiver.bodies)
    assert len(Receiver.spans(receiver)) >= 2, "the flow's requests were not traced"
    assert not [s[:6] for s in [*used, ADMIN_KEY] if s.encode() in spans], "a key appears in an exported span"
    assert SECRET_PROMPT.encode() not in spans and not FULL_KEY.findall(spans.decode("latin-1"))

    assert "openmaas_requests_total" in telemetry
    assert not [s[:6] for s in [*used, ADMIN_KEY] if s in telemetry], "a key appears in /metrics"
    assert not FULL_KEY.findall(telemetry)

    logs = sorted(p for p in log_dir().rglob("*.log") if p.is_file())
    assert logs, f"no logs found in {log_dir()}"
    text = "\n".join(p.read_text(errors="replace") for p in logs)
    assert "openmaas" in text  # the scan reads real log output
    secrets = [*used, ADMIN_KEY, UPSTREAM_KEY, ANTHROPIC_KEY, CONSOLE_ADMIN_KEY, SESSIONS_ADMIN_KEY]
    leaked = [s[:6] for s in secrets if s in text]
    assert not leaked, f"secrets starting with {leaked} appear in the logs under {log_dir()}"
    shaped = FULL_KEY.findall(text)
    assert not shaped, f"{len(shaped)} full API keys appear in the logs under {log_dir()}"

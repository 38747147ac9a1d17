"""Console sign-in at the API level: cookie flags, CSRF, expiry, revocation, and what each scope may read."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from openmaas.console.sessions import COOKIE, CSRF_HEADER
from openmaas.store.schema import console_sessions
from tests.conftest import fake_settings, running_app

pytestmark = pytest.mark.anyio
ADMIN = "adm-console-test-key"
CHAT = {"model": "fake-chat", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
async def app_client(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Any, httpx.AsyncClient]]:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN)
    async with running_app(fake_settings(tmp_path)) as (app, client):
        yield app, client


async def sign_in(client: httpx.AsyncClient, key: str | None) -> tuple[httpx.Response, dict[str, str]]:
    """Signs in; returns the response and the headers the console's script sends (CSRF only: the cookie
    stays in the client's jar)."""
    resp = await client.post("/console/session", json={"key": key} if key else {})
    return resp, ({CSRF_HEADER: resp.json()["csrf"]} if resp.status_code == 200 else {})


async def make_tenant(client: httpx.AsyncClient, name: str) -> tuple[str, dict[str, Any]]:
    admin = {"authorization": f"Bearer {ADMIN}"}
    tenant = (await client.post("/admin/tenants", json={"name": name}, headers=admin)).json()
    key = (await client.post("/admin/keys", json={"tenant": name, "name": f"{name}-key"}, headers=admin)).json()
    return key["key"], {"tenant": tenant, "key": key}


async def test_the_cookie_is_httponly_strict_and_only_secure_over_tls(app_client: Any) -> None:
    _app, client = app_client
    resp, _ = await sign_in(client, ADMIN)
    assert resp.status_code == 200 and resp.json()["scope"] == "admin"
    cookie = SimpleCookie(resp.headers["set-cookie"])[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http on loopback
    assert ADMIN not in resp.text and ADMIN not in resp.headers["set-cookie"]
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    behind_tls = await client.post("/console/session", json={"key": ADMIN}, headers={"x-forwarded-proto": "https"})
    assert SimpleCookie(behind_tls.headers["set-cookie"])[COOKIE]["secure"]


async def test_the_console_page_has_a_strict_content_security_policy(app_client: Any) -> None:
    _, client = app_client
    page = await client.get("/console/")
    assert page.status_code == 200 and "<title>OpenMaaS console</title>" in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert (await client.get("/console", follow_redirects=False)).status_code == 308


async def test_a_session_needs_its_csrf_header_and_ends_at_sign_out(app_client: Any) -> None:
    _, client = app_client
    _, csrf = await sign_in(client, ADMIN)
    assert (await client.get("/admin/tenants")).status_code in (401, 403)  # cookie without the CSRF header
    assert (await client.get("/admin/tenants", headers={CSRF_HEADER: "wrong"})).status_code in (401, 403)
    assert (await client.get("/admin/tenants", headers=csrf)).status_code == 200
    assert (await client.post("/admin/tenants", json={"name": "made-in-console"}, headers=csrf)).status_code == 201
    assert (await client.delete("/console/session")).status_code == 401  # sign-out needs the header too
    out = await client.delete("/console/session", headers=csrf)
    assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
    assert (await client.get("/admin/tenants", headers=csrf)).status_code in (401, 403)
    assert (await client.get("/console/session")).json()["signed_in"] is False


async def test_a_session_expires(app_client: Any) -> None:
    app, client = app_client
    _, csrf = await sign_in(client, ADMIN)
    assert (await client.get("/admin/models", headers=csrf)).status_code == 200
    async with app.state.services.db.engine.begin() as conn:
        await conn.execute(update(console_sessions).values(expires_at=time.time() - 1))
    assert (await client.get("/admin/models", headers=csrf)).status_code in (401, 403)


async def test_a_changed_admin_key_ends_admin_sessions(app_client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    _, client = app_client
    _, csrf = await sign_in(client, ADMIN)
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", "a-new-admin-key")
    assert (await client.get("/admin/tenants", headers=csrf)).status_code in (401, 403)


async def test_wrong_keys_are_refused_and_open_mode_ends_when_keys_exist(app_client: Any) -> None:
    _, client = app_client
    assert (await client.post("/console/session", json={"key": "om-not-a-key"})).status_code == 401
    assert (await client.post("/console/session", json={"key": 42})).status_code == 400
    opened, csrf = await sign_in(client, None)  # no keys yet: the open mode
    assert opened.json()["scope"] == "open"
    assert (await client.get("/admin/requests", headers=csrf)).status_code == 200
    assert (await client.post("/admin/tenants", json={"name": "x"}, headers=csrf)).status_code == 403  # reads only
    await make_tenant(client, "first")
    assert (await client.get("/admin/requests", headers=csrf)).status_code in (401, 403)
    assert (await client.post("/console/session", json={})).status_code == 401


async def test_a_tenant_session_runs_requests_as_its_key_and_ends_when_the_key_is_revoked(app_client: Any) -> None:
    _, client = app_client
    secret, made = await make_tenant(client, "acme")
    resp, csrf = await sign_in(client, secret)
    assert resp.json()["scope"] == "tenant" and resp.json()["tenant_name"] == "acme"
    chat = await client.post("/v1/chat/completions", json=CHAT, headers=csrf)
    assert chat.status_code == 200
    rows = (await client.get("/admin/requests", headers=csrf)).json()["data"]
    assert [r["request_id"] for r in rows] == [chat.headers["x-request-id"]]
    assert rows[0]["key_id"] == made["key"]["id"]  # billed to the signed-in key
    admin = {"authorization": f"Bearer {ADMIN}"}
    await client.post(f"/admin/keys/{made['key']['id']}/revoke", headers=admin)
    again = await client.post("/v1/chat/completions", json=CHAT, headers=csrf)
    assert again.status_code == 401 and again.json()["error"]["code"] == "key_revoked"


async def test_a_tenant_never_reads_another_tenants_rows(app_client: Any) -> None:
    _, client = app_client
    key_a, a = await make_tenant(client, "tenant-a")
    key_b, b = await make_tenant(client, "tenant-b")
    ids = {}
    for name, key in (("a", key_a), ("b", key_b)):
        resp = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
        ids[name] = resp.headers["x-request-id"]
    for how in ("key", "session"):
        if how == "key":
            headers = {"authorization": f"Bearer {key_a}"}
        else:
            _, headers = await sign_in(client, key_a)
        other = {"tenant": "tenant-b"}
        requests = (await client.get("/admin/requests", params=other, headers=headers)).json()["data"]
        assert {r["request_id"] for r in requests} == {ids["a"]}
        overview = (await client.get("/admin/overview", params=other, headers=headers)).json()
        assert overview["totals"]["requests"] == 1 and [t["value"] for t in overview["by"]["tenant"]] == [
            a["tenant"]["id"]
        ]
        usage = (await client.get("/admin/usage", params={**other, "group_by": "tenant"}, headers=headers)).json()
        assert [r["tenant"] for r in usage["data"]] == [a["tenant"]["id"]]
        assert (await client.get(f"/admin/audit/{ids['b']}", headers=headers)).status_code == 404
        assert (await client.get(f"/admin/audit/{ids['a']}", headers=headers)).status_code == 200
        keys = (await client.get("/admin/keys", params=other, headers=headers)).json()["data"]
        assert [k["id"] for k in keys] == [a["key"]["id"]]
        assert (await client.get(f"/admin/keys/{b['key']['id']}", headers=headers)).status_code == 404
        tenants = (await client.get("/admin/tenants", headers=headers)).json()["data"]
        assert [t["name"] for t in tenants] == ["tenant-a"]
        assert (await client.get("/admin/tenants/tenant-b", headers=headers)).status_code == 404
        # and no writes
        assert (await client.post("/admin/keys", json={"tenant": "tenant-a"}, headers=headers)).status_code == 403
        assert (await client.post(f"/admin/keys/{b['key']['id']}/revoke", headers=headers)).status_code == 403
        assert "key" not in str(
            (await client.get("/admin/keys", headers=headers)).json()["data"][0].keys() - {"key_id"}
        )


async def test_anonymous_callers_get_nothing_from_the_console_api(app_client: Any) -> None:
    _, client = app_client
    await make_tenant(client, "someone")  # keys exist: the API is closed
    for path in (
        "/admin/overview",
        "/admin/requests",
        "/admin/models",
        "/admin/usage",
        "/admin/keys",
        "/admin/tenants",
    ):
        resp = await client.get(path)
        assert resp.status_code in (401, 403), path
        assert resp.json()["error"]["message"]


async def test_bad_console_queries_are_400s_in_the_openai_envelope(app_client: Any) -> None:
    _, client = app_client
    admin = {"authorization": f"Bearer {ADMIN}"}
    bad = [
        ("/admin/overview", {"start": "nan"}),
        ("/admin/overview", {"start": "yesterday"}),
        ("/admin/overview", {"start": "2026-01-02", "end": "2026-01-01"}),
        ("/admin/overview", {"start": "2020-01-01"}),  # longer than 400 days
        ("/admin/requests", {"limit": "0"}),
        ("/admin/requests", {"limit": "²"}),
        ("/admin/requests", {"limit": "1000"}),
        ("/admin/requests", {"status": "99999999999999999999"}),
        ("/admin/requests", {"status": "²"}),
        ("/admin/requests", {"cursor": "not-a-cursor"}),
        ("/admin/requests", {"end": "inf"}),
    ]
    for path, params in bad:
        resp = await client.get(path, params=params, headers=admin)
        assert resp.status_code == 400, (path, params, resp.text)
        assert resp.json()["error"]["type"] == "invalid_request_error"


async def test_sign_in_refuses_form_posts_and_other_origins(app_client: Any) -> None:
    """Login CSRF: another site must not sign a visitor in (with its own key) through a form or a fetch."""
    _, client = app_client
    as_form = await client.post(
        "/console/session", content=f'{{"key": "{ADMIN}", "x": "="}}', headers={"content-type": "text/plain"}
    )
    assert as_form.status_code == 400 and "set-cookie" not in as_form.headers
    elsewhere = await client.post("/console/session", json={"key": ADMIN}, headers={"origin": "https://evil.example"})
    assert elsewhere.status_code == 403 and "set-cookie" not in elsewhere.headers
    own = await client.post("/console/session", json={"key": ADMIN}, headers={"origin": "http://test"})
    assert own.status_code == 200 and "set-cookie" in own.headers

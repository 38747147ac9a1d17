"""Every Anthropic error type, as the official SDK raises it, from a gateway that requires keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
from starlette.applications import Starlette

from tests.conftest import metered_settings, running_app
from tests.helpers import ADMIN_KEY

pytestmark = pytest.mark.anyio
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
ASK = [{"role": "user", "content": "hi"}]


def sdk(app: Starlette, key: str) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")
    return anthropic.AsyncAnthropic(base_url="http://test", api_key=key, http_client=http, max_retries=0)


@pytest.fixture
async def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Starlette, dict[str, str]]]:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    store = {"url": f"sqlite:///{tmp_path / 'openmaas.db'}"}
    settings = metered_settings(tmp_path, store)
    extra = [
        {"name": "fake-500", "backend": "fake", "params": {"fail_every": 1, "fail_status": 500}},
        {"name": "fake-down", "backend": "fake", "params": {"fail_every": 1, "fail_status": 503}},
    ]
    settings = settings.model_copy(
        update={"deployments": [*settings.deployments, *(settings.deployments[0].model_validate(d) for d in extra)]}
    )
    async with running_app(settings) as (app, client):
        keys: dict[str, str] = {}
        r = await client.post("/admin/tenants", json={"name": "acme"}, headers=ADMIN)
        assert r.status_code == 201, r.text
        for name, fields in {"open": {}, "narrow": {"models": ["fake-other"]}, "slow": {"rpm": 1}}.items():
            r = await client.post("/admin/keys", json={"tenant": "acme", "name": name, **fields}, headers=ADMIN)
            keys[name] = r.json()["key"]
        yield app, keys


async def expect(error: type[anthropic.APIStatusError], kind: str, call: Any) -> anthropic.APIStatusError:
    with pytest.raises(error) as raised:
        await call
    body = raised.value.body
    assert isinstance(body, dict) and body["type"] == "error" and body["error"]["type"] == kind, body
    assert raised.value.response.headers["request-id"] == body["request_id"]
    return raised.value


async def test_every_error_type_in_anthropics_envelope(env: tuple[Starlette, dict[str, str]]) -> None:
    app, keys = env
    ok = sdk(app, keys["open"])
    create = ok.messages.create
    await expect(
        anthropic.BadRequestError, "invalid_request_error", create(model="fake-chat", max_tokens=0, messages=ASK)
    )  # type: ignore[arg-type]
    bad_key = sdk(app, "om-not-a-real-key-000000000000").messages.create(model="fake-chat", max_tokens=5, messages=ASK)  # type: ignore[arg-type]
    await expect(anthropic.AuthenticationError, "authentication_error", bad_key)
    narrow = sdk(app, keys["narrow"]).messages.create(model="fake-chat", max_tokens=5, messages=ASK)  # type: ignore[arg-type]
    await expect(anthropic.PermissionDeniedError, "permission_error", narrow)
    await expect(anthropic.NotFoundError, "not_found_error", create(model="no-such-model", max_tokens=5, messages=ASK))  # type: ignore[arg-type]
    slow = sdk(app, keys["slow"])
    await slow.messages.create(model="fake-chat", max_tokens=5, messages=ASK)  # type: ignore[arg-type]
    limited = await expect(
        anthropic.RateLimitError,
        "rate_limit_error",
        slow.messages.create(model="fake-chat", max_tokens=5, messages=ASK),  # type: ignore[arg-type]
    )
    assert limited.response.headers.get("retry-after")
    await expect(anthropic.APIStatusError, "api_error", create(model="fake-500", max_tokens=5, messages=ASK))  # type: ignore[arg-type]
    await expect(anthropic.APIStatusError, "overloaded_error", create(model="fake-down", max_tokens=5, messages=ASK))  # type: ignore[arg-type]
    counted = ok.messages.count_tokens(model="no-such-model", messages=ASK)  # type: ignore[arg-type]
    await expect(anthropic.NotFoundError, "not_found_error", counted)

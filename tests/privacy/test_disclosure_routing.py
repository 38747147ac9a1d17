"""Disclosures under a privacy policy, end to end through every dialect: what the cloud upstream received
is the assertion (real loopback upstreams, the official SDKs)."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import openai
import pytest

from tests.conftest import metered_settings, running_app
from tests.dialects.test_upstreams import stack
from tests.helpers import ADMIN_KEY

pytestmark = pytest.mark.anyio
HEALTH_EN = "My doctor told me my HIV test came back positive, how do I tell my partner?"
HEALTH_ZH = "我上周确诊了乙肝，公司体检会不会查出来？"
FINANCE_EN = "My salary is $85,000 and I owe $32,000 on three credit cards. Make me a plan."
GENERAL = "What are the symptoms of type 2 diabetes?"


def _sent(upstream: Any) -> str:
    return json.dumps(list(upstream.requests), ensure_ascii=False)


async def test_disclosures_under_local_only_never_reach_the_cloud_through_any_dialect(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path, monkeypatch, policy="local_only") as s:
        for text in (HEALTH_EN, HEALTH_ZH):
            chat = await s.openai.chat.completions.with_raw_response.create(
                model="private", messages=[{"role": "user", "content": text}]
            )
            assert chat.parse().choices[0].message.content == "local answer"
            route = chat.headers["x-openmaas-route"]
            assert "privacy=sensitive(HEALTH)" in route and "rule=HEALTH:local_only" in route
            message = await s.anthropic.messages.create(
                model="private", max_tokens=50, messages=[{"role": "user", "content": text}]
            )
            assert message.content[0].text == "local answer"
            response = await s.openai.responses.create(model="private", input=text)
            assert response.output_text == "local answer"
        # a disclosure in a tool result (what an agent loop hands back) is classified too
        response = await s.openai.responses.create(
            model="private",
            input=[
                {"type": "function_call", "call_id": "c1", "name": "read_inbox", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": FINANCE_EN},
            ],
        )
        assert response.output_text == "local answer"
        assert not s.cloud.requests
        assert len(s.local.requests) == 7
        # a general question on the same topic is public: it goes where the alias sends it
        chat = await s.openai.chat.completions.create(model="private", messages=[{"role": "user", "content": GENERAL}])
        assert chat.choices[0].message.content != "local answer" and len(s.cloud.requests) == 1
        assert "HIV" not in _sent(s.cloud) and "乙肝" not in _sent(s.cloud)


async def test_per_category_rules_keep_health_local_and_let_finance_go(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path, monkeypatch, policy="allow;HEALTH=local_only") as s:
        await s.anthropic.messages.create(
            model="private", max_tokens=50, messages=[{"role": "user", "content": HEALTH_EN}]
        )
        assert not s.cloud.requests and len(s.local.requests) == 1
        await s.anthropic.messages.create(
            model="private", max_tokens=50, messages=[{"role": "user", "content": FINANCE_EN}]
        )
        assert len(s.cloud.requests) == 1 and "$85,000" in _sent(s.cloud)  # FINANCE is allowed out here


async def test_mask_keeps_a_disclosure_local_and_refuse_refuses_it_in_each_dialects_envelope(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with stack(tmp_path, monkeypatch, policy="mask") as s:
        response = await s.openai.responses.create(model="private", input=HEALTH_EN)
        assert response.output_text == "local answer" and not s.cloud.requests  # nothing to mask: kept local
    async with stack(tmp_path, monkeypatch, policy="allow;FINANCE=refuse") as s:
        with pytest.raises(anthropic.PermissionDeniedError) as refused:
            await s.anthropic.messages.create(
                model="private", max_tokens=50, messages=[{"role": "user", "content": FINANCE_EN}]
            )
        assert refused.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
        assert "FINANCE" in refused.value.message and "85,000" not in refused.value.message
        with pytest.raises(openai.PermissionDeniedError) as denied:
            await s.openai.chat.completions.create(model="private", messages=[{"role": "user", "content": FINANCE_EN}])
        assert denied.value.code == "privacy_refused"
        assert not s.cloud.requests and not s.local.requests


async def test_a_keys_per_category_policy_set_through_the_admin_api_routes_its_requests(
    tmp_path: Any, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    settings = metered_settings(
        tmp_path,
        store,
        deployments=[
            {"name": "edge", "backend": "fake", "locality": "local", "params": {"reply": "from the edge"}},
            {"name": "cloud", "backend": "fake", "locality": "cloud", "params": {"reply": "from the cloud"}},
        ],
        aliases={"assistant": {"targets": ["cloud"], "fallbacks": ["edge"]}},
    )
    admin = {"authorization": f"Bearer {ADMIN_KEY}"}
    async with running_app(settings) as (_, client):
        clinic = {"name": "clinic", "privacy": "allow;HEALTH=local_only"}
        assert (await client.post("/admin/tenants", json=clinic, headers=admin)).status_code == 201
        bad = {"tenant": "clinic", "privacy": "allow;HEALTH=maybe"}
        refused = await client.post("/admin/keys", json=bad, headers=admin)
        assert refused.status_code == 400 and "HEALTH=maybe" in refused.text
        key = (await client.post("/admin/keys", json={"tenant": "clinic"}, headers=admin)).json()["key"]
        strict = {"tenant": "clinic", "privacy": "local_only"}
        strict_key = (await client.post("/admin/keys", json=strict, headers=admin)).json()["key"]
        for token, text, served in (
            (key, HEALTH_EN, "from the edge"),
            (key, FINANCE_EN, "from the cloud"),  # the tenant's rule covers HEALTH only
            (strict_key, FINANCE_EN, "from the edge"),  # the key's own policy wins over its tenant's
        ):
            r = await client.post(
                "/v1/chat/completions",
                json={"model": "assistant", "messages": [{"role": "user", "content": text}]},
                headers={"authorization": f"Bearer {token}"},
            )
            assert r.json()["choices"][0]["message"]["content"] == served, (text, r.headers["x-openmaas-route"])
        assert "rule=FINANCE:local_only" in r.headers["x-openmaas-route"]
        trail = await client.get(f"/admin/audit/{r.headers['x-request-id']}", headers=admin)
        [event] = trail.json()["data"]
        assert event["route"]["privacy"]["categories"] == ["FINANCE"]
        assert event["route"]["rule"] == "FINANCE:local_only"

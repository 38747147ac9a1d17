"""Knowledge bases through the whole app (real encoder, fake chat model), on both store backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from starlette.applications import Starlette

from openmaas.store.schema import kb_chunks
from tests.conftest import ledger_events, metered_settings, running_app
from tests.helpers import ADMIN_KEY
from tests.rag.docs import DOGS_HTML, EIFFEL_TXT, LISTS_MD, VOLCANO_PDF_LINES, pdf

pytestmark = pytest.mark.anyio
ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
ENCODER = {
    "name": "all-minilm-l6-v2",
    "backend": "encoder",
    "locality": "local",
    "context_length": 256,
    "pricing": {"input_per_mtok": 100.0},
    "capabilities": {"embeddings": True, "chat": False, "completions": False},
}
ECHO = {"name": "echo", "backend": "fake", "locality": "local", "context_length": 4096, "params": {"echo": "prompt"}}
PARROT = {
    "name": "parrot",
    "backend": "fake",
    "locality": "local",
    "params": {"reply": "The Eiffel Tower was completed in 1889. I like turtles."},
}
SMALL = {"name": "small", "backend": "fake", "locality": "local", "context_length": 200, "params": {"echo": "prompt"}}
FILES = {
    "lists.md": LISTS_MD,
    "dogs.html": DOGS_HTML,
    "eiffel.txt": EIFFEL_TXT,
    "volcano.pdf": pdf(VOLCANO_PDF_LINES, title="Field notes"),
}


class Env:
    def __init__(self, app: Starlette, client: httpx.AsyncClient, keys: dict[str, str]) -> None:
        self.app, self.client, self.keys = app, client, keys

    def h(self, who: str) -> dict[str, str]:
        return {"authorization": f"Bearer {self.keys[who]}"}

    async def kb(self, who: str = "acme", **fields: Any) -> str:
        r = await self.client.post("/v1/knowledge_bases", json={"name": "docs", **fields}, headers=self.h(who))
        assert r.status_code == 200, r.text
        return str(r.json()["id"])

    async def upload(self, kb: str, files: dict[str, bytes], who: str = "acme") -> httpx.Response:
        parts = [("file", (name, data)) for name, data in files.items()]
        return await self.client.post(f"/v1/knowledge_bases/{kb}/documents", files=parts, headers=self.h(who))

    async def search(self, kb: str, query: str, who: str = "acme", **options: Any) -> httpx.Response:
        body = {"query": query, **options}
        return await self.client.post(f"/v1/knowledge_bases/{kb}/search", json=body, headers=self.h(who))

    async def events(self) -> list[dict[str, Any]]:
        return await ledger_events(self.app)


@pytest.fixture
async def env(tmp_path: Any, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Env]:
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    settings = metered_settings(tmp_path, store)
    settings = settings.model_copy(
        update={
            "deployments": [*settings.deployments, settings.deployments[0].model_validate(ENCODER)]
            + [settings.deployments[0].model_validate(d) for d in (ECHO, SMALL, PARROT)],
            "rag": settings.rag.model_copy(update={"max_document_bytes": 64 * 1024}),
        }
    )
    async with running_app(settings) as (app, client):
        keys = {}
        for tenant in ("acme", "globex"):
            r = await client.post("/admin/tenants", json={"name": tenant}, headers=ADMIN)
            assert r.status_code == 201, r.text
            r = await client.post("/admin/keys", json={"tenant": tenant}, headers=ADMIN)
            keys[tenant] = r.json()["key"]
        yield Env(app, client, keys)


async def test_ingest_every_format_then_search_finds_the_right_document(env: Env) -> None:
    kb = await env.kb()
    r = await env.upload(kb, FILES)
    assert r.status_code == 200, r.text
    docs = {d["filename"]: d for d in r.json()["data"]}
    assert set(docs) == set(FILES) and all(d["created"] and d["chunks"] >= 1 for d in docs.values())
    assert docs["volcano.pdf"]["kind"] == "pdf" and docs["dogs.html"]["title"] == "Dog care"
    cases = {
        "how many meals do puppies need": "dogs.html",
        "when was the Eiffel Tower finished": "eiffel.txt",
        "height of Kilimanjaro's highest peak": "volcano.pdf",
        "add an element at the end of a list": "lists.md",
    }
    for mode in ("bm25", "vector", "hybrid"):
        for query, expected in cases.items():
            if mode == "bm25" and expected == "lists.md":
                continue  # no shared terms after stemming ("add"/"element" vs "append"/"item"): vectors' job
            r = await env.search(kb, query, mode=mode, top_k=3)
            assert r.status_code == 200, r.text
            top = r.json()["data"][0]
            assert top["filename"] == expected, (mode, query, r.json()["data"])
            assert top["document_id"] == docs[expected]["id"] and top["rank"] == 1
            assert set(top["scores"]) <= {"bm25", "vector"} and top["score"] > 0
    hybrid = (await env.search(kb, "how many meals do puppies need", top_k=2)).json()["data"][0]
    assert set(hybrid["scores"]) == {"bm25", "vector"}
    assert hybrid["score"] == pytest.approx(1 / 61 + 1 / 61, abs=1e-6)  # first in both lists
    info = (await env.client.get(f"/v1/knowledge_bases/{kb}", headers=env.h("acme"))).json()
    assert info["documents"] == 4 and info["chunks"] == sum(d["chunks"] for d in docs.values())


async def test_reingesting_unchanged_files_is_a_no_op(env: Env) -> None:
    kb = await env.kb()
    first = (await env.upload(kb, {"eiffel.txt": EIFFEL_TXT})).json()["data"][0]
    again = (await env.upload(kb, {"renamed.txt": EIFFEL_TXT})).json()["data"][0]
    assert first["created"] and not again["created"] and again["id"] == first["id"]
    listed = (await env.client.get(f"/v1/knowledge_bases/{kb}/documents", headers=env.h("acme"))).json()["data"]
    assert len(listed) == 1


async def test_deleting_a_document_removes_its_chunks_from_every_index(env: Env) -> None:
    kb = await env.kb()
    docs = {d["filename"]: d["id"] for d in (await env.upload(kb, FILES)).json()["data"]}
    before = (await env.search(kb, "Eiffel Tower 1889", top_k=10)).json()["data"]
    assert before[0]["filename"] == "eiffel.txt"
    r = await env.client.delete(f"/v1/knowledge_bases/{kb}/documents/{docs['eiffel.txt']}", headers=env.h("acme"))
    assert r.status_code == 200 and r.json()["deleted"] is True
    for mode in ("bm25", "vector", "hybrid"):
        after = (await env.search(kb, "Eiffel Tower 1889", mode=mode, top_k=10)).json()["data"]
        assert all(d["document_id"] != docs["eiffel.txt"] for d in after)
    async with env.app.state.services.db.engine.connect() as conn:
        left = (await conn.execute(select(func.count()).where(kb_chunks.c.document_id == docs["eiffel.txt"]))).scalar()
    assert left == 0
    again = await env.client.delete(f"/v1/knowledge_bases/{kb}/documents/{docs['eiffel.txt']}", headers=env.h("acme"))
    assert again.status_code == 404 and again.json()["error"]["code"] == "document_not_found"
    r = await env.client.delete(f"/v1/knowledge_bases/{kb}", headers=env.h("acme"))
    assert r.status_code == 200
    assert (await env.client.get(f"/v1/knowledge_bases/{kb}", headers=env.h("acme"))).status_code == 404


async def test_one_tenant_never_sees_or_retrieves_another_tenants_knowledge(env: Env) -> None:
    kb = await env.kb("acme")
    await env.upload(kb, {"eiffel.txt": EIFFEL_TXT})
    other = await env.kb("globex")
    await env.upload(other, {"dogs.html": DOGS_HTML}, who="globex")
    for method, path, body in [
        ("GET", f"/v1/knowledge_bases/{kb}", None),
        ("GET", f"/v1/knowledge_bases/{kb}/documents", None),
        ("POST", f"/v1/knowledge_bases/{kb}/search", {"query": "Eiffel"}),
        ("DELETE", f"/v1/knowledge_bases/{kb}", None),
    ]:
        r = await env.client.request(method, path, json=body, headers=env.h("globex"))
        assert r.status_code == 404, (path, r.text)
        assert r.json()["error"]["code"] == "knowledge_base_not_found"
    r = await env.upload(kb, {"x.txt": b"globex text"}, who="globex")
    assert r.status_code == 404
    chat = await env.client.post(
        "/v1/chat/completions",
        json={"model": "echo", "messages": [{"role": "user", "content": "Eiffel?"}], "knowledge_base": {"id": kb}},
        headers=env.h("globex"),
    )
    assert chat.status_code == 404 and "1889" not in chat.text
    mine = (await env.client.get("/v1/knowledge_bases", headers=env.h("globex"))).json()["data"]
    assert [k["id"] for k in mine] == [other]


async def test_bad_uploads_get_clear_errors_and_do_not_stop_the_rest(env: Env) -> None:
    kb = await env.kb()
    r = await env.upload(kb, {"empty.txt": b""})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_document"
    assert "empty.txt" in r.json()["error"]["message"]
    r = await env.upload(kb, {"garbage.txt": bytes(range(256)) * 16})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_document"
    r = await env.upload(kb, {"tool.exe": b"MZ\x90\x00"})
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_document"
    r = await env.upload(kb, {"huge.txt": b"word " * 20_000})  # 100 KB over the 64 KB limit
    assert r.status_code == 413 and r.json()["error"]["code"] == "document_too_large"
    mixed = await env.upload(kb, {"broken.pdf": b"%PDF-1.4 garbage", "eiffel.txt": EIFFEL_TXT})
    assert mixed.status_code == 200
    assert [d["filename"] for d in mixed.json()["data"]] == ["eiffel.txt"]
    assert [e["filename"] for e in mixed.json()["errors"]] == ["broken.pdf"]
    assert mixed.json()["errors"][0]["error"]["code"] == "invalid_document"
    no_file = await env.client.post(f"/v1/knowledge_bases/{kb}/documents", json={"x": 1}, headers=env.h("acme"))
    assert no_file.status_code == 400
    bad_search = await env.search(kb, "x", top_k=0)
    assert bad_search.status_code == 400 and bad_search.json()["error"]["param"] == "top_k"
    bad_kb = await env.client.post("/v1/knowledge_bases", json={"name": ""}, headers=env.h("acme"))
    assert bad_kb.status_code == 400
    bad_model = await env.client.post(
        "/v1/knowledge_bases", json={"name": "x", "embedding_model": "echo"}, headers=env.h("acme")
    )
    assert bad_model.status_code == 400 and bad_model.json()["error"]["param"] == "embedding_model"


async def test_chat_answers_with_numbered_sources_and_meters_retrieval(env: Env) -> None:
    kb = await env.kb()
    await env.upload(kb, FILES)
    before = len(await env.events())
    r = await env.client.post(
        "/v1/chat/completions",
        json={
            "model": "echo",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "When was the Eiffel Tower completed?"},
            ],
            "knowledge_base": {"id": kb, "top_k": 2, "attribute": False},
        },
        headers=env.h("acme"),
    )
    assert r.status_code == 200, r.text
    body = r.json()
    answer = body["choices"][0]["message"]["content"]  # the echo model answers with its whole prompt
    assert answer.startswith("Be brief. Answer the user's question using only the numbered sources")
    assert "[1] eiffel (eiffel.txt)\nThe Eiffel Tower is in Paris." in answer
    sources = body["knowledge_base"]["sources"]
    assert [s["index"] for s in sources] == [1, 2] and sources[0]["filename"] == "eiffel.txt"
    assert body["knowledge_base"]["citations"] == [1, 2]  # the echoed prompt names both sources
    assert body["knowledge_base"]["inferred_citations"] == []  # attribution off: the answer is untouched
    events = (await env.events())[before:]
    by_endpoint = {e["endpoint"]: e for e in events}
    assert set(by_endpoint) == {"chat", "embeddings"}
    assert by_endpoint["embeddings"]["prompt_tokens"] > 0 and by_endpoint["embeddings"]["cost_nanos"] > 0
    assert len({e["request_id"] for e in events}) == 1  # one request, each model call its own priced row


async def test_uncited_sentences_get_inferred_citations(env: Env) -> None:
    kb = await env.kb()
    await env.upload(kb, {"eiffel.txt": EIFFEL_TXT, "dogs.html": DOGS_HTML})
    r = await env.client.post(
        "/v1/chat/completions",
        json={
            "model": "parrot",
            "messages": [{"role": "user", "content": "When was the Eiffel Tower completed?"}],
            "knowledge_base": {"id": kb, "top_k": 2},
        },
        headers=env.h("acme"),
    )
    body = r.json()
    assert body["choices"][0]["message"]["content"] == "The Eiffel Tower was completed in 1889 [1]. I like turtles."
    info = body["knowledge_base"]
    assert info["sources"][0]["filename"] == "eiffel.txt"
    assert info["citations"] == [1] and info["inferred_citations"] == [1]


async def test_rewriting_and_hyde_are_metered_calls_of_the_caller(env: Env) -> None:
    kb = await env.kb()
    await env.upload(kb, {"eiffel.txt": EIFFEL_TXT, "dogs.html": DOGS_HTML})
    before = len(await env.events())
    r = await env.search(kb, "Eiffel Tower completion year", rewrite=True, hyde=True, rewrite_model="echo", top_k=2)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["hyde"] and len(body["queries"]) >= 2  # the echo model's lines become extra queries
    assert body["usage"]["calls"] == 2 and body["usage"]["completion_tokens"] > 0
    assert body["data"][0]["filename"] == "eiffel.txt"
    events = (await env.events())[before:]
    chats = [e for e in events if e["endpoint"] == "chat"]
    assert [e["deployment"] for e in chats] == ["echo", "echo"]
    assert sum(e["completion_tokens"] for e in chats) == body["usage"]["completion_tokens"]
    assert {e["key_id"] for e in events} == {events[0]["key_id"]} and events[0]["key_id"] is not None
    assert len({e["request_id"] for e in events}) == 1


async def test_sources_never_overflow_the_models_context(env: Env) -> None:
    kb = await env.kb(chunk_tokens=64, chunk_overlap=0)
    text = "\n\n".join(f"Fact {i}: the Eiffel Tower has {i} painted rivets in section {i}." for i in range(40))
    up = await env.upload(kb, {"rivets.md": f"# Rivets\n\n{text}".encode()})
    assert up.status_code == 200 and up.json()["data"][0]["chunks"] > 10, up.text
    r = await env.client.post(
        "/v1/chat/completions",
        json={
            "model": "small",
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "How many rivets does the Eiffel Tower have?"}],
            "knowledge_base": {"id": kb, "top_k": 10},
        },
        headers=env.h("acme"),
    )
    assert r.status_code == 200, r.text
    info = r.json()["knowledge_base"]
    assert 1 <= len(info["sources"]) < info["retrieved"], info["context_tokens"]  # some fit, not all ten
    prompt_words = r.json()["usage"]["prompt_tokens"]  # the fake model counts words
    assert prompt_words + 20 <= 200


async def test_streaming_chat_carries_sources_in_the_first_chunk(env: Env) -> None:
    kb = await env.kb()
    await env.upload(kb, {"eiffel.txt": EIFFEL_TXT})
    async with env.client.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": "echo",
            "stream": True,
            "messages": [{"role": "user", "content": "Eiffel Tower?"}],
            "knowledge_base": {"id": kb},
        },
        headers=env.h("acme"),
    ) as r:
        assert r.status_code == 200
        lines = [line async for line in r.aiter_lines() if line.startswith("data: {")]
    import json

    first = json.loads(lines[0][6:])
    assert first["knowledge_base"]["sources"][0]["filename"] == "eiffel.txt"
    text = "".join((json.loads(line[6:])["choices"] or [{}])[0].get("delta", {}).get("content") or "" for line in lines)
    assert "[1] eiffel (eiffel.txt)" in text


async def test_bad_knowledge_base_fields_are_400(env: Env) -> None:
    for spec, param in [({"id": "kb_x", "top_k": 0}, "knowledge_base.top_k"), ({"top_k": 3}, "knowledge_base.id")]:
        r = await env.client.post(
            "/v1/chat/completions",
            json={"model": "echo", "messages": [{"role": "user", "content": "q"}], "knowledge_base": spec},
            headers=env.h("acme"),
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param


async def test_a_replica_never_serves_a_document_another_replica_deleted(
    tmp_path: Any, store: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gateways on one store: each caches its own index, and the knowledge base's revision tells the
    first one that the second changed it (SQLite file shared, or PostgreSQL)."""
    monkeypatch.setenv("OPENMAAS_ADMIN_KEY", ADMIN_KEY)
    base = metered_settings(tmp_path, store, auth={"required": False})
    settings = base.model_copy(update={"deployments": [*base.deployments, base.deployments[0].model_validate(ENCODER)]})
    async with running_app(settings) as (_, one), running_app(settings) as (_, two):
        kb = (await one.post("/v1/knowledge_bases", json={"name": "shared"})).json()["id"]
        files = [("file", ("eiffel.txt", EIFFEL_TXT)), ("file", ("dogs.html", DOGS_HTML))]
        docs = {
            d["filename"]: d["id"]
            for d in (await one.post(f"/v1/knowledge_bases/{kb}/documents", files=files)).json()["data"]
        }
        query = {"query": "Eiffel Tower 1889", "top_k": 5}
        first = (await one.post(f"/v1/knowledge_bases/{kb}/search", json=query)).json()["data"]
        assert first[0]["filename"] == "eiffel.txt"  # replica one has built and cached its index
        gone = await two.delete(f"/v1/knowledge_bases/{kb}/documents/{docs['eiffel.txt']}")
        assert gone.status_code == 200
        after = (await one.post(f"/v1/knowledge_bases/{kb}/search", json=query)).json()["data"]
        assert after and all(d["filename"] != "eiffel.txt" for d in after)
        added = await two.post(f"/v1/knowledge_bases/{kb}/documents", files=[("file", ("lists.md", LISTS_MD))])
        assert added.status_code == 200
        found = (await one.post(f"/v1/knowledge_bases/{kb}/search", json={"query": "append to a list"})).json()
        assert found["data"][0]["filename"] == "lists.md"  # and sees what the other one added

"""Thin routes for knowledge bases: parse, delegate to ``openmaas.rag.service``, serialize."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmaas.errors import InvalidRequest, OpenMaaSError, PayloadTooLarge
from openmaas.gateway import Call, validate
from openmaas.protocol.knowledge import KnowledgeBaseCreate, SearchRequest
from openmaas.server.routes import _call, _json, read_json

if TYPE_CHECKING:
    from openmaas.rag.service import KnowledgeBases

FORM_SLACK = 64 * 1024  # multipart framing and small fields around the files


def _kbs(request: Request) -> KnowledgeBases:
    kbs: KnowledgeBases | None = request.app.state.knowledge
    if kbs is None:
        raise InvalidRequest("Knowledge bases are not enabled on this server", code="knowledge_bases_disabled")
    return kbs


def _public(kb: dict[str, Any]) -> dict[str, Any]:
    return {"object": "knowledge_base", **{k: v for k, v in kb.items() if k != "tenant_id"}}


async def create_kb(request: Request) -> Response:
    call = _call(request)
    spec = validate(KnowledgeBaseCreate, await read_json(request))
    return _json(_public(await _kbs(request).create(call, spec)))


async def list_kbs(request: Request) -> Response:
    call = _call(request)
    rows = await _kbs(request).store.all(call.principal.tenant_id)
    return _json({"object": "list", "data": [_public(r) for r in rows]})


async def get_kb(request: Request) -> Response:
    call = _call(request)
    return _json(_public(await _kbs(request).get(call, request.path_params["kb_id"])))


async def delete_kb(request: Request) -> Response:
    call = _call(request)
    kb_id = request.path_params["kb_id"]
    await _kbs(request).delete(call, kb_id)
    return _json({"id": kb_id, "object": "knowledge_base.deleted", "deleted": True})


async def upload(request: Request) -> Response:
    """``multipart/form-data`` with one or more ``file`` (or ``files``) parts. Each file succeeds or fails
    on its own; when every file failed, the first failure is the response's error."""
    call = _call(request)
    kbs = _kbs(request)
    kb_id = request.path_params["kb_id"]
    await kbs.get(call, kb_id)
    limit = kbs.settings.max_document_bytes * kbs.settings.max_files_per_upload + FORM_SLACK
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"Upload of {declared} bytes exceeds the limit of {limit} bytes")
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest("Upload documents as multipart/form-data with a 'file' part", code="invalid_upload")
    data: list[dict[str, Any]] = []
    failures: list[tuple[str, OpenMaaSError]] = []
    async with request.form(max_files=kbs.settings.max_files_per_upload, max_fields=100) as form:
        files = [f for f in form.getlist("file") + form.getlist("files") if isinstance(f, UploadFile)]
        if not files:
            raise InvalidRequest("The upload has no 'file' part", param="file", code="invalid_upload")
        for upload_file in files:
            name = upload_file.filename or "upload"
            try:
                if upload_file.size is not None and upload_file.size > kbs.settings.max_document_bytes:
                    raise PayloadTooLarge(
                        f"'{name}' is {upload_file.size} bytes; the limit is {kbs.settings.max_document_bytes}",
                        code="document_too_large",
                    )
                content = await upload_file.read()
                result = await kbs.ingest(call, kb_id, name, content, upload_file.content_type)
            except OpenMaaSError as exc:
                failures.append((name, exc))
                continue
            doc = result["document"]
            data.append({"object": "knowledge_base.document", "created": result["created"], "filename": name, **doc})
    if failures and not data:
        name, first = failures[0]
        first.message = first.message if name in first.message else f"{name}: {first.message}"
        raise first
    errors = [{"filename": name, **exc.envelope()} for name, exc in failures]
    return _json({"object": "list", "data": data, "errors": errors})


async def list_documents(request: Request) -> Response:
    call = _call(request)
    rows = await _kbs(request).documents(call, request.path_params["kb_id"])
    return _json({"object": "list", "data": [{"object": "knowledge_base.document", **r} for r in rows]})


async def delete_document(request: Request) -> Response:
    call = _call(request)
    doc_id = request.path_params["document_id"]
    await _kbs(request).delete_document(call, request.path_params["kb_id"], doc_id)
    return _json({"id": doc_id, "object": "knowledge_base.document.deleted", "deleted": True})


async def search(request: Request) -> Response:
    call: Call = _call(request)
    spec = validate(SearchRequest, await read_json(request))
    found = await _kbs(request).search(call, request.path_params["kb_id"], spec.query, spec)
    return _json(
        {
            "object": "knowledge_base.search",
            "query": spec.query,
            "queries": found.queries,
            "hyde": found.hyde,
            "mode": spec.mode,
            "data": found.results,
            "usage": found.usage,
        }
    )


kb_routes = [
    Route("/v1/knowledge_bases", create_kb, methods=["POST"]),
    Route("/v1/knowledge_bases", list_kbs, methods=["GET"]),
    Route("/v1/knowledge_bases/{kb_id}", get_kb, methods=["GET"]),
    Route("/v1/knowledge_bases/{kb_id}", delete_kb, methods=["DELETE"]),
    Route("/v1/knowledge_bases/{kb_id}/documents", upload, methods=["POST"]),
    Route("/v1/knowledge_bases/{kb_id}/documents", list_documents, methods=["GET"]),
    Route("/v1/knowledge_bases/{kb_id}/documents/{document_id}", delete_document, methods=["DELETE"]),
    Route("/v1/knowledge_bases/{kb_id}/search", search, methods=["POST"]),
]

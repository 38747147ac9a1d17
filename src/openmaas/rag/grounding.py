"""``knowledge_base`` on a chat completion: retrieve, fit the sources into the model's context, answer.

Budget: the smallest context window among the deployments the model name may route to, minus the
output reserve (the request's ``max_tokens``/``max_completion_tokens``, else a quarter of the window
up to 1024), minus the conversation itself as the model's tokenizer counts it (or the router's byte estimate when
that is larger: the router must place the grounded request too). Sources go in by rank
while they fit; the first one is cut to fit rather than dropped; the final prompt is counted once more
and sources come off the end until it fits. The prompt never exceeds the window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from openmaas.core.view import PromptView
from openmaas.errors import InvalidRequest, ModelNotFound, from_validation_error
from openmaas.gateway import Call, ChatExtension, Gateway
from openmaas.metering.pricing import estimate_prompt_tokens
from openmaas.protocol.chat import ChatCompletionRequest
from openmaas.protocol.knowledge import ChatKnowledge
from openmaas.rag import context
from openmaas.streams import Stream

if TYPE_CHECKING:
    from openmaas.backends.base import Backend
    from openmaas.rag.service import KnowledgeBases

MIN_SOURCE_TOKENS = 24


async def _count(backend: Backend, text: str) -> int:
    """The larger of the model's own count and the router's estimate (which places the request)."""
    counted = await backend.count_tokens(text)
    estimate = len(text.encode()) // 4 + 1
    return estimate if counted is None else max(counted, estimate)


async def _prompt_tokens(backend: Backend, payload: dict[str, Any]) -> int:
    counted = await backend.count_prompt_tokens(payload)
    estimate = estimate_prompt_tokens(PromptView(payload))
    return estimate if counted is None else max(counted, estimate)


def _cut(text: str, tokens: int, budget: int) -> str:
    words = text.split()
    keep = max(1, len(words) * budget // max(tokens, 1) - 2)
    return " ".join(words[:keep]) + " …"


async def ground(
    kbs: KnowledgeBases, call: Call, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any], list[str]]:
    """The request with its sources in a system message (and without ``knowledge_base``), what to report
    back (the sources used, the queries run, the tokens retrieval spent), and the sources' texts."""
    try:
        spec = ChatKnowledge.model_validate(body["knowledge_base"])
    except ValidationError as exc:
        error = from_validation_error(exc)
        error.param = f"knowledge_base.{error.param}" if error.param else "knowledge_base"
        raise error from None
    messages = list(body.get("messages") or [])
    query = context.last_user_text(messages).strip()
    if not query:
        raise InvalidRequest("knowledge_base needs a user message to search with", param="messages")
    model = str(body.get("model"))
    registry = kbs.gateway.registry
    names = registry.aliases.get(model, [model])
    if any(n not in registry.deployments for n in names):
        raise ModelNotFound(f"The model '{model}' does not exist", param="model")
    window = min(registry.deployments[n].context_length for n in names)
    backend = registry.backends[names[0]]
    found = await kbs.search(call, spec.id, query, spec, chat_model=model)

    base = {k: v for k, v in body.items() if k != "knowledge_base"}
    requested = body.get("max_completion_tokens") or body.get("max_tokens")
    reserve = int(requested) if isinstance(requested, int) and requested > 0 else min(1024, window // 4)
    budget = window - reserve - await _prompt_tokens(backend, base) - await _count(backend, context.INSTRUCTIONS) - 16
    if spec.max_context_tokens is not None:
        budget = min(budget, spec.max_context_tokens)
    blocks: list[str] = []
    used_sources: list[dict[str, Any]] = []
    spent = 0
    for source in found.results:
        block = context.source_block(len(blocks) + 1, source)
        n = await _count(backend, block)
        if spent + n > budget:
            if blocks or budget - spent < MIN_SOURCE_TOKENS:
                break
            block = _cut(block, n, budget - spent)
            n = await _count(backend, block)
        blocks.append(block)
        used_sources.append(source)
        spent += n
    payload = base
    while blocks:
        payload = {**base, "messages": context.inject(messages, context.system_message(blocks))}
        if await _prompt_tokens(backend, payload) + reserve <= window:
            break
        blocks.pop()
        used_sources.pop()
        payload = base
    info = {
        "id": spec.id,
        "mode": spec.mode,
        "queries": found.queries,
        "hyde": found.hyde,
        "sources": [
            {
                "index": i,
                "document_id": s["document_id"],
                "filename": s["filename"],
                "title": s["title"],
                "chunk_id": s["chunk_id"],
                "position": s["position"],
                "heading": s["heading"],
                "score": s["score"],
                "scores": s["scores"],
            }
            for i, s in enumerate(used_sources, 1)
        ],
        "retrieved": len(found.results),
        "context_tokens": spent,
        "usage": found.usage,
        "attribute": spec.attribute,
    }
    return payload, info, [s["text"] for s in used_sources]


def attach(result: dict[str, Any], info: dict[str, Any], texts: list[str], attribute: bool) -> dict[str, Any]:
    """A unary answer gets ``knowledge_base``: the sources and which of them the answer cites. With
    ``attribute``, sentences the model left uncited get the source they come from (``inferred_citations``)."""
    choice = (result.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    text = str(message.get("content") or "")
    inferred: list[int] = []
    if attribute and text:
        text, inferred = context.attribute(text, texts)
        message["content"] = text
    cited = context.citations(text, len(info["sources"]))
    result["knowledge_base"] = {**info, "citations": cited, "inferred_citations": inferred}
    return result


class Grounding(ChatExtension):
    """``knowledge_base`` on a chat request: retrieve, put the sources in the prompt, answer as usual
    (through ``gateway.chat`` again, so routing, privacy, TTC and metering apply to the grounded request)."""

    key = "knowledge_base"

    def __init__(self, knowledge: KnowledgeBases | None) -> None:
        self.knowledge = knowledge  # None: knowledge bases are off on this server

    async def handle(
        self, gateway: Gateway, body: dict[str, Any], call: Call, request: ChatCompletionRequest
    ) -> dict[str, Any] | Stream:
        if self.knowledge is None:
            raise InvalidRequest("Knowledge bases are not enabled on this server", param="knowledge_base")
        grounded, info, texts = await ground(self.knowledge, call, body)
        call.body_bytes = None  # the grounded body is larger than the one the client sent
        attribute = bool(info.pop("attribute"))
        result = await gateway.chat(grounded, call)
        if isinstance(result, Stream):
            result.first["knowledge_base"] = info  # citations: the client reads them from the streamed text
            return result
        return attach(result, info, texts, attribute)

"""Wire types of the knowledge-base API and of ``knowledge_base`` on chat completions."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["hybrid", "bm25", "vector"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class KnowledgeBaseCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    embedding_model: str | None = Field(default=None, min_length=1)  # None: settings.rag.embedding_model
    chunk_tokens: int | None = Field(default=None, ge=32, le=8192)
    chunk_overlap: int | None = Field(default=None, ge=0, le=4096)


class Retrieval(_Strict):
    """How to retrieve: shared by ``/search`` and by chat's ``knowledge_base``."""

    top_k: int = Field(default=5, ge=1, le=50)
    mode: Mode = "hybrid"
    rewrite: bool = False  # an LLM rewrites the query into up to 3 search queries, fused with the original
    hyde: bool = False  # an LLM writes a hypothetical answer passage; its embedding joins the vector search
    rewrite_model: str | None = None  # None: settings.rag.rewrite_model, else the chat's model, else "default"


class SearchRequest(Retrieval):
    query: str = Field(min_length=1, max_length=8000)


class ChatKnowledge(Retrieval):
    id: str = Field(min_length=1)
    # cite, after the fact, answer sentences the model left uncited (reported as ``inferred_citations``)
    attribute: bool = True
    max_context_tokens: int | None = Field(default=None, ge=1)  # a further cap on the sources' share

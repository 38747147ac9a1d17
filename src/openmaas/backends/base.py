"""The backend interface.

A backend speaks OpenAI wire dicts on both sides: it receives a request body
already validated by ``openmaas.protocol`` (with ``model`` set to the
upstream's own model id) and returns an OpenAI response dict, or an async
iterator of OpenAI chunk dicts when streaming. Streams always end with a
usage chunk (``choices == []``); the gateway decides whether the client sees
it. Failures are raised as ``openmaas.errors.OpenMaaSError`` subclasses.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from openmaas.errors import UnsupportedCapability
from openmaas.settings import Deployment

Payload = dict[str, Any]


class Backend(ABC):
    # takes a GBNF ``grammar`` field with a chat request (llama.cpp); used by ``ttc.enforce``
    accepts_grammar = False
    # the inbound dialect whose original body this backend takes as is (``core.chat.NATIVE_KEY``)
    native_dialect: str | None = None

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment

    async def start(self) -> None:
        """Acquire resources (HTTP pools, engine processes). Called once."""

    async def close(self) -> None:
        """Release everything ``start`` acquired."""

    async def health(self) -> bool:
        return True

    @abstractmethod
    async def chat(self, payload: Payload) -> Payload: ...

    @abstractmethod
    def chat_stream(self, payload: Payload) -> AsyncIterator[Payload]: ...

    async def complete(self, payload: Payload) -> Payload:
        raise UnsupportedCapability(f"model '{self.deployment.name}' does not serve text completions", param="model")

    def complete_stream(self, payload: Payload) -> AsyncIterator[Payload]:
        raise UnsupportedCapability(f"model '{self.deployment.name}' does not serve text completions", param="model")

    async def embed(self, payload: Payload) -> Payload:
        raise UnsupportedCapability(f"model '{self.deployment.name}' does not serve embeddings", param="model")

    async def count_tokens(self, text: str) -> int | None:
        """Tokens of ``text`` by the model's own tokenizer; None when we do not have it."""
        return None

    async def count_prompt_tokens(self, payload: Payload) -> int | None:
        """Prompt tokens of a request as the model will see them (template applied); None if unknown."""
        return None


def create_backend(deployment: Deployment, data_dir: Any = None) -> Backend:
    """Build the backend a deployment names (imports stay lazy and cheap)."""
    if deployment.backend == "openai_compat":
        from openmaas.backends.openai_compat import OpenAICompatBackend

        return OpenAICompatBackend(deployment)
    if deployment.backend == "anthropic":
        from openmaas.backends.anthropic import AnthropicBackend

        return AnthropicBackend(deployment)
    if deployment.backend == "fake":
        from openmaas.backends.fake import FakeBackend

        return FakeBackend(deployment)
    if deployment.backend == "oracle":
        from openmaas.backends.oracle import OracleBackend

        return OracleBackend(deployment)
    if deployment.backend == "encoder":
        from openmaas.backends.encoder import EncoderBackend

        return EncoderBackend(deployment)
    if deployment.backend == "llamacpp":
        from openmaas.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(deployment, data_dir=data_dir)
    raise ValueError(f"unknown backend {deployment.backend!r}")

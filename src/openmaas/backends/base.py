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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict

from openmaas.errors import UnsupportedCapability
from openmaas.settings import Deployment

Payload = dict[str, Any]
P = TypeVar("P", bound="Params")


class Params(BaseModel):
    """A backend's ``params``: each backend declares its own subclass; an unknown or misspelt key, or a
    wrong type, is an error at start-up naming the deployment (``backends.registry``)."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True, slots=True)
class Occupancy:
    """One engine process of a deployment: its slots and how many are busy; requests waiting beyond them."""

    label: str
    slots: int
    busy: int
    queued: int


@dataclass(frozen=True)
class Placement:
    """Where within a deployment a request runs: the backend to call (an engine process of a pool, or the
    deployment's own backend) and why, for the route decision (None: nothing to say)."""

    backend: Backend
    label: str | None = None


class Backend(ABC):
    # takes a GBNF ``grammar`` field with a chat request (llama.cpp); used by ``ttc.enforce``
    accepts_grammar = False
    # the inbound dialect whose original body this backend takes as is (``core.chat.NATIVE_KEY``)
    native_dialect: str | None = None
    Params: type[Params] = Params  # what ``deployment.params`` may hold

    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.here = Placement(self)  # the one place of a backend that is not a pool (immutable: made once)

    def typed_params(self, kind: type[P]) -> P:
        """``deployment.params`` as this backend's ``Params`` (the registry already refused bad ones at
        start-up, naming the deployment). ``kind``: the class the caller reads, this ``Params`` or a base."""
        params = self.Params.model_validate(self.deployment.params)
        if not isinstance(params, kind):
            raise TypeError(f"{type(self).__name__}.Params is not a {kind.__name__}")
        return params

    @classmethod
    def from_deployment(cls, deployment: Deployment, data_dir: Path | None = None) -> Backend:
        """The backend for a deployment (``data_dir``: where engines keep their files)."""
        return cls(deployment)

    def occupancy(self) -> list[Occupancy]:
        """Slot use of the engine processes behind this deployment (metrics); none for remote upstreams."""
        return []

    def place(self, payload: Payload) -> Placement:
        """Where ``payload`` runs within this deployment (``routing.router`` asks before each attempt).
        One backend, one place; a pool of engine processes chooses one (prompt-cache affinity)."""
        return self.here

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

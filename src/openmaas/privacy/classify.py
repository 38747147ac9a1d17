"""Classify a request by what it carries, and mask it before a cloud call.

Every text a request sends is scanned: message contents (strings and text
parts), tool-call arguments, tool results, ``prompt`` and ``input``. The class is
``public`` or ``sensitive`` with the entity *types* found — never the values.

Masking replaces each finding with a placeholder such as ``[EMAIL_ADDRESS_1]``
(the same value gets the same placeholder everywhere in the request) and
keeps the mapping for the response: ``Restorer`` puts the values back where a
placeholder reappears, in whole responses and across streamed chunks.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

from openmaas.core.view import PromptView, text_slots
from openmaas.privacy.scanner import Finding, Scanner
from openmaas.privacy.sensitivity import Sensitivity


@dataclass
class PrivacyClass:
    label: str = "public"  # "public" | "sensitive"
    entities: tuple[str, ...] = ()  # identifier types the scanner found (EMAIL_ADDRESS, SECRET_…)
    categories: tuple[str, ...] = ()  # what the request discloses (HEALTH, FINANCE, PRIVATE_LIFE)

    def found(self) -> str:
        """Entity types and categories, for messages and headers (never values)."""
        return ",".join((*self.entities, *self.categories))

    @property
    def sensitive(self) -> bool:
        return self.label == "sensitive"


@dataclass
class Scanned:
    privacy: PrivacyClass
    slots: list[tuple[int, str, list[Finding]]] = field(default_factory=list)  # (slot index, text, findings)


def scan_request(scanner: Scanner | None, view: PromptView, sensitivity: Sensitivity | None = None) -> Scanned:
    """Scan every text of the request (``PromptView.texts``, in ``text_slots`` order) for identifiers, and
    classify what it discloses (``sensitivity``)."""
    scanned = Scanned(PrivacyClass())
    entities: set[str] = set()
    if scanner is not None:
        for index, text in enumerate(view.texts):
            findings = scanner.scan(text)
            if findings:
                scanned.slots.append((index, text, findings))
                entities.update(f.entity for f in findings)
    categories = sensitivity.categories(view.texts) if sensitivity is not None else ()
    if entities or categories:
        scanned.privacy = PrivacyClass("sensitive", tuple(sorted(entities)), categories)
    return scanned


def masked_copy(payload: dict[str, Any], scanned: Scanned) -> tuple[dict[str, Any], dict[str, str]]:
    """A copy of the scanned payload with every finding replaced, and placeholder → original value."""
    copy = copy_payload(payload)
    slots = text_slots(copy)
    by_value: dict[str, str] = {}
    counters: dict[str, int] = {}
    for index, text, findings in scanned.slots:
        container, key = slots[index]
        out, at = [], 0
        for f in findings:
            value = text[f.start : f.end]
            placeholder = by_value.get(value)
            if placeholder is None:
                counters[f.entity] = counters.get(f.entity, 0) + 1
                placeholder = by_value[value] = f"[{f.entity}_{counters[f.entity]}]"
            out += [text[at : f.start], placeholder]
            at = f.end
        out.append(text[at:])
        container[key] = "".join(out)
    return copy, {placeholder: value for value, placeholder in by_value.items()}


def copy_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """Deep enough to edit texts: messages, their parts and tool calls, prompt/input lists."""
    import copy

    out = dict(payload)
    for key in ("messages", "prompt", "input"):
        if isinstance(out.get(key), list):
            out[key] = copy.deepcopy(out[key])
    return out


_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")


class Restorer:
    """Put masked values back into model output, whole or streamed in pieces.

    A stream carries several texts at once (each choice's content, each tool call's
    arguments): each is a *slot* with its own held-back tail."""

    def __init__(self, mapping: dict[str, str]) -> None:
        self.mapping = mapping
        self.longest = max((len(p) for p in mapping), default=0)
        self._held: dict[Hashable, str] = {}

    def restore(self, text: str) -> str:
        return _PLACEHOLDER.sub(lambda m: self.mapping.get(m.group(), m.group()), text)

    def feed(self, piece: str, slot: Hashable = None) -> str:
        """The restorable part of the slot's stream so far; a possible placeholder prefix is held back."""
        text = self._held.pop(slot, "") + piece
        cut = text.rfind("[")
        if cut >= 0 and "]" not in text[cut:] and len(text) - cut < self.longest:
            self._held[slot], text = text[cut:], text[:cut]
        return self.restore(text)

    def flush(self, slot: Hashable = None) -> str:
        return self.restore(self._held.pop(slot, ""))

    def held(self) -> list[Hashable]:
        """Slots with text still held back."""
        return list(self._held)

    def restore_response(self, result: dict[str, Any]) -> None:
        for choice in result.get("choices") or []:
            message = choice.get("message")
            if isinstance(message, dict):
                if isinstance(message.get("content"), str):
                    message["content"] = self.restore(message["content"])
                for call in message.get("tool_calls") or []:
                    function = call.get("function") or {}
                    if isinstance(function.get("arguments"), str):
                        function["arguments"] = self.restore(function["arguments"])
            if isinstance(choice.get("text"), str):
                choice["text"] = self.restore(choice["text"])

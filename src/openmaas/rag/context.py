"""Sources into the prompt, within the model's context window; citations back out of the answer."""

from __future__ import annotations

import re
from typing import Any

INSTRUCTIONS = (
    "Answer the user's question using only the numbered sources below. After each statement, cite the "
    "source it comes from as [1], [2], etc. If the sources do not contain the answer, say that you do not know."
)
CITATION = re.compile(r"\[(\d{1,3})\]")


def source_block(index: int, source: dict[str, Any]) -> str:
    label = " › ".join(part for part in (source.get("title") or source.get("filename"), source.get("heading")) if part)
    heading = source.get("heading") or ""
    title = source.get("title") or ""
    if heading.startswith(title):  # the heading path already starts with the document title
        label = heading or title
    return f"[{index}] {label} ({source.get('filename')})\n{source['text'].strip()}"


def system_message(blocks: list[str]) -> str:
    return INSTRUCTIONS + "\n\nSources:\n\n" + "\n\n".join(blocks)


def inject(messages: list[dict[str, Any]], content: str) -> list[dict[str, Any]]:
    """The sources as a system message after the caller's own system messages, before the conversation."""
    at = 0
    while at < len(messages) and messages[at].get("role") in ("system", "developer"):
        at += 1
    return [*messages[:at], {"role": "system", "content": content}, *messages[at:]]


def citations(text: str, count: int) -> list[int]:
    """Source numbers cited in ``text`` that exist (1..count), in order of first citation."""
    seen: list[int] = []
    for match in CITATION.finditer(text or ""):
        n = int(match.group(1))
        if 1 <= n <= count and n not in seen:
            seen.append(n)
    return seen


def last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                parts = [p for p in content if isinstance(p, dict) and p.get("type") == "text"]
                return " ".join(str(p.get("text", "")) for p in parts)
    return ""

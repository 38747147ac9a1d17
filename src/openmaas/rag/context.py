"""Sources into the prompt, within the model's context window; citations back out of the answer."""

from __future__ import annotations

import re
from typing import Any

STOP = frozenset(
    [
        "the",
        "a",
        "an",
        "and",
        "or",
        "of",
        "to",
        "in",
        "on",
        "for",
        "with",
        "by",
        "at",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "you",
        "your",
        "we",
        "our",
        "they",
        "their",
        "he",
        "she",
        "his",
        "her",
        "can",
        "could",
        "should",
        "would",
        "will",
        "shall",
        "may",
        "might",
        "do",
        "does",
        "did",
        "not",
        "no",
        "yes",
        "if",
        "then",
        "than",
        "so",
        "such",
        "into",
        "about",
        "over",
        "under",
        "what",
        "which",
        "who",
        "whom",
        "how",
        "when",
        "where",
        "why",
        "there",
        "here",
        "also",
        "use",
        "used",
        "using",
    ]
)
WORD = re.compile(r"[a-z0-9_]+")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
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


def _content_words(text: str) -> set[str]:
    return {w for w in WORD.findall(text.lower()) if len(w) > 2 and w not in STOP}


def attribute(text: str, sources: list[str], min_shared: int = 2, min_share: float = 1 / 3) -> tuple[str, list[int]]:
    """Cite, after the fact, the sentences a model left uncited: a sentence gets ``[n]`` for the source that
    holds the largest share of its content words, when that share is at least ``min_share`` and at least
    ``min_shared`` words. Returns the text and the source numbers added this way (reported as inferred, never
    mixed up with the model's own citations). Code blocks are left alone."""
    if not sources or "```" in text:
        return text, []
    vocab = [_content_words(s) for s in sources]
    inferred: list[int] = []
    pieces = SENTENCE_END.split(text)
    seps = SENTENCE_END.findall(text)
    out = []
    for i, sentence in enumerate(pieces):
        words = _content_words(sentence)
        if words and not CITATION.search(sentence):
            shared = [len(words & v) for v in vocab]
            best = max(range(len(sources)), key=lambda k: (shared[k], -k))
            if shared[best] >= min_shared and shared[best] / len(words) >= min_share:
                stripped = sentence.rstrip()
                end = len(stripped) - 1 if stripped and stripped[-1] in ".!?" else len(stripped)
                sentence = f"{stripped[:end]} [{best + 1}]{stripped[end:]}{sentence[len(stripped) :]}"
                if best + 1 not in inferred:
                    inferred.append(best + 1)
        out.append(sentence + (seps[i] if i < len(seps) else ""))
    return "".join(out), inferred

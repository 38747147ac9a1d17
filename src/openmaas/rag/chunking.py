"""Structure-aware chunking: sections at Markdown headings, paragraphs packed up to a token budget,
with overlap between neighbouring chunks of one section; sentences (then words) split what is too long.

Each chunk carries its heading path ("Page title › Section › Subsection"), which is also embedded and
indexed with the text: a paragraph's meaning often lives in its heading.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
Counter = Callable[[str], int]


@dataclass
class Chunk:
    position: int
    heading: str
    text: str
    tokens: int

    @property
    def indexed_text(self) -> str:
        return f"{self.heading}\n{self.text}" if self.heading else self.text

    @property
    def digest(self) -> str:
        return hashlib.sha256(" ".join(self.text.lower().split()).encode()).hexdigest()


def sections(text: str, title: str) -> list[tuple[str, list[str]]]:
    """(heading path, paragraphs) per section, in order."""
    path: list[tuple[int, str]] = []
    out: list[tuple[str, list[str]]] = []
    paragraphs: list[str] = []
    current: list[str] = []

    def close_paragraph() -> None:
        if current:
            para = "\n".join(current).strip()
            if para:
                paragraphs.append(para)
            current.clear()

    def close_section() -> None:
        close_paragraph()
        if paragraphs:
            names = [title] if title else []
            names += [name for _, name in path if name and name != title]
            out.append((" › ".join(names), list(paragraphs)))
            paragraphs.clear()

    in_code = False
    for line in text.split("\n"):
        if line.strip().startswith("```"):
            in_code = not in_code
        match = None if in_code else HEADING.match(line)
        if match:
            close_section()
            level = len(match.group(1))
            path = [(lv, name) for lv, name in path if lv < level] + [(level, match.group(2).strip())]
        elif not line.strip() and not in_code:
            close_paragraph()
        else:
            current.append(line.rstrip())
    close_section()
    return out


def _pieces(paragraph: str, budget: int, count: Counter) -> list[str]:
    """A paragraph as pieces that each fit the budget: whole, else by sentences, else by words."""
    if count(paragraph) <= budget:
        return [paragraph]
    units = SENTENCE.split(paragraph)
    if len(units) == 1:
        words = paragraph.split()
        step = max(1, len(words) * budget // max(count(paragraph), 1))
        return [" ".join(words[i : i + step]) for i in range(0, len(words), step)]
    out: list[str] = []
    for unit in units:
        out.extend(_pieces(unit, budget, count) if count(unit) > budget else [unit])
    return out


def _emit(
    chunks: list[Chunk], seen: set[str], heading: str, window: list[tuple[str, int]], size: int, count: Counter
) -> None:
    body = "\n\n".join(u for u, _ in window)
    item = Chunk(len(chunks), heading, body, size + (count(heading) + 1 if heading else 0))
    if item.digest not in seen:
        seen.add(item.digest)
        chunks.append(item)


def chunk(text: str, title: str, count: Counter, max_tokens: int = 200, overlap: int = 40) -> list[Chunk]:
    """Chunks of at most ``max_tokens`` (heading included), overlapping by up to ``overlap`` tokens of whole
    paragraphs/sentences within a section; identical chunks in one document are kept once."""
    chunks: list[Chunk] = []
    seen: set[str] = set()
    for heading, paragraphs in sections(text, title):
        budget = max(16, max_tokens - count(heading) - 1) if heading else max_tokens
        units = [(p, count(p)) for para in paragraphs for p in _pieces(para, budget, count)]
        window: list[tuple[str, int]] = []
        size = 0
        fresh = False  # the window holds units not yet emitted

        for unit, n in units:
            if window and size + 1 + n > budget:
                _emit(chunks, seen, heading, window, size, count)
                fresh = False
                keep: list[tuple[str, int]] = []
                kept = 0
                for prev in reversed(window):  # the tail of the window overlaps into the next chunk
                    added = prev[1] + (1 if keep else 0)
                    if kept + added > overlap or kept + added + 1 + n > budget:
                        break
                    keep.insert(0, prev)
                    kept += added
                window, size = keep, kept
            size += n + (1 if window else 0)  # a paragraph break counts as one token
            window.append((unit, n))
            fresh = True
        if window and fresh:
            _emit(chunks, seen, heading, window, size, count)
    for i, item in enumerate(chunks):
        item.position = i
    return chunks

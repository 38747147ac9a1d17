"""Documents to structured text: txt and Markdown as they are; HTML through trafilatura (the page's main
content, without navigation, sidebars and footers, as Markdown with ``#`` headings), falling back to
html2text for pages too small for content detection; PDF through pypdf (one section per page).
Everything ends as Markdown-ish text that the chunker splits at headings and paragraphs.
"""

from __future__ import annotations

import html
import io
import re
from dataclasses import dataclass
from pathlib import PurePath

from openmaas.errors import InvalidRequest, UnsupportedMediaType

KINDS = {".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md", ".html": "html", ".htm": "html", ".pdf": "pdf"}
MEDIA = {
    "text/plain": "txt",
    "text/markdown": "md",
    "text/x-markdown": "md",
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
}


class DocumentError(InvalidRequest):
    """A file we cannot read (corrupt, empty, binary where text was promised)."""

    code = "invalid_document"


@dataclass
class Parsed:
    kind: str
    title: str
    text: str  # Markdown-ish: ``#`` headings, blank-line paragraphs


def kind_of(filename: str, content_type: str | None = None) -> str:
    kind = KINDS.get(PurePath(filename).suffix.lower())
    if kind is None and content_type:
        kind = MEDIA.get(content_type.split(";")[0].strip().lower())
    if kind is None:
        raise UnsupportedMediaType(
            f"'{filename}' is not a supported document type (txt, md, html, pdf)", code="unsupported_document"
        )
    return kind


def _decode(data: bytes, filename: str) -> str:
    if b"\x00" in data[:8192]:
        raise DocumentError(f"'{filename}' looks binary (NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
        printable = sum(ch.isprintable() or ch.isspace() for ch in text[:8192])
        if printable < 0.95 * min(len(text), 8192):
            raise DocumentError(f"'{filename}' is neither UTF-8 nor readable text") from None
    return text


def _html(data: bytes, filename: str) -> tuple[str, str]:
    import html2text
    import trafilatura

    source = _decode(data, filename)
    match = re.search(r"<title[^>]*>(.*?)</title>", source, re.I | re.S)
    title = html.unescape(re.sub(r"\s+", " ", match.group(1)).strip()) if match else ""
    main = trafilatura.extract(
        source,
        output_format="markdown",
        include_formatting=True,
        include_links=False,
        include_images=False,
        include_tables=True,
        favor_recall=True,
    )
    if main and main.strip():
        return title, main.replace("¶", "")
    converter = html2text.HTML2Text()
    converter.body_width = 0  # no hard wrapping: paragraphs stay one line
    converter.ignore_images = True
    converter.ignore_links = True
    converter.ignore_emphasis = True
    return title, converter.handle(source).replace("¶", "")


def _pdf(data: bytes, filename: str) -> tuple[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        metadata = reader.metadata
        title = str(metadata.get("/Title") or "") if metadata is not None else ""
        pages = [page.extract_text() or "" for page in reader.pages]
    except (PdfReadError, ValueError, KeyError, TypeError, OSError) as exc:
        raise DocumentError(f"'{filename}' is not a readable PDF ({type(exc).__name__}: {exc})") from None
    text = "\n\n".join(f"# Page {i}\n\n{body.strip()}" for i, body in enumerate(pages, 1) if body.strip())
    return title, text


def parse(data: bytes, filename: str, content_type: str | None = None) -> Parsed:
    kind = kind_of(filename, content_type)
    if not data.strip():
        raise DocumentError(f"'{filename}' is empty")
    if kind == "html":
        title, text = _html(data, filename)
    elif kind == "pdf":
        title, text = _pdf(data, filename)
    else:
        text = _decode(data, filename)
        title = ""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise DocumentError(f"'{filename}' has no extractable text")
    if not title:
        heading = re.search(r"^#{1,6}\s+(.+)$", text, re.M)
        title = heading.group(1).strip() if heading else PurePath(filename).stem
    return Parsed(kind, title[:300], text)

from __future__ import annotations

import pytest

from openmaas.errors import InvalidRequest, UnsupportedMediaType
from openmaas.rag.parsing import DocumentError, parse
from tests.rag.docs import DOGS_HTML, EIFFEL_TXT, LISTS_MD, VOLCANO_PDF_LINES, pdf


def test_markdown_keeps_headings() -> None:
    parsed = parse(LISTS_MD, "lists.md")
    assert parsed.kind == "md"
    assert parsed.title == "Python lists"
    assert "## Sorting" in parsed.text


def test_html_becomes_markdown_without_scripts() -> None:
    parsed = parse(DOGS_HTML, "dogs.html")
    assert parsed.kind == "html"
    assert parsed.title == "Dog care"
    assert "## Feeding" in parsed.text
    assert "Puppies need three or four small meals." in parsed.text
    assert "tracking" not in parsed.text


def test_plain_text_title_is_the_file_name() -> None:
    parsed = parse(EIFFEL_TXT, "notes/eiffel.txt")
    assert (parsed.kind, parsed.title) == ("txt", "eiffel")
    assert "1889" in parsed.text


def test_pdf_text_by_page_and_title() -> None:
    parsed = parse(pdf(VOLCANO_PDF_LINES, title="Field notes"), "volcano.pdf")
    assert parsed.kind == "pdf"
    assert parsed.title == "Field notes"
    assert "# Page 1" in parsed.text
    assert "Uhuru" in parsed.text and "5895" in parsed.text


def test_content_type_decides_without_a_known_suffix() -> None:
    assert parse(b"<h1>Hi</h1><p>there</p>", "upload", "text/html; charset=utf-8").kind == "html"


@pytest.mark.parametrize(
    ("data", "name", "error"),
    [
        (b"", "empty.txt", DocumentError),
        (b"   \n\n ", "blank.md", DocumentError),
        (bytes(range(256)) * 8, "garbage.txt", DocumentError),
        (b"%PDF-1.4 this is not really a pdf", "broken.pdf", DocumentError),
        (b"PK\x03\x04 zip", "archive.zip", UnsupportedMediaType),
        (b"<html><body><script>x()</script></body></html>", "empty.html", DocumentError),
    ],
)
def test_bad_documents_get_clear_errors(data: bytes, name: str, error: type[Exception]) -> None:
    with pytest.raises(error) as caught:
        parse(data, name)
    assert name in str(caught.value) or "supported" in str(caught.value)
    assert isinstance(caught.value, InvalidRequest | UnsupportedMediaType)

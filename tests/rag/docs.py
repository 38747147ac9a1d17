"""Small real documents for the tests, made here: Markdown, HTML, plain text and a valid PDF."""

from __future__ import annotations


def pdf(lines: list[str], title: str = "") -> bytes:
    """A one-page PDF (Helvetica, one text line per entry) with a correct cross-reference table."""

    def escape(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    ops = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"] + [f"({escape(line)}) Tj T*" for line in lines] + ["ET"]
    stream = "\n".join(ops).encode()
    info = f"<< /Title ({escape(title)}) >>".encode() if title else b"<< >>"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        info,
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info 6 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


LISTS_MD = b"""# Python lists

## Appending

Use list.append(x) to add an item to the end of a list. The method returns None.

## Sorting

list.sort() sorts the list in place and is stable; sorted() returns a new sorted list.
"""

DOGS_HTML = b"""<html><head><title>Dog care</title></head><body>
<h1>Dog care</h1>
<h2>Feeding</h2><p>Adult dogs eat twice a day. Puppies need three or four small meals.</p>
<h2>Walking</h2><p>Walk your dog at least twice daily for thirty minutes.</p>
<script>var tracking = "not text";</script>
</body></html>"""

EIFFEL_TXT = b"The Eiffel Tower is in Paris. It was completed in 1889 for the World's Fair.\n"

VOLCANO_PDF_LINES = [
    "Volcanology field notes",
    "Mount Kilimanjaro is a dormant volcano in Tanzania.",
    "Its highest peak, Uhuru, rises 5895 metres above sea level.",
]

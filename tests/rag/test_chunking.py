from __future__ import annotations

import itertools

from openmaas.rag.chunking import chunk, sections


def words(text: str) -> int:
    return len(text.split())


DOC = """# Guide

Intro paragraph one.

## Install

Run the installer. Then restart.

### On Linux

Use the package manager.

## Use

Open the app.
"""


def test_sections_follow_the_heading_path() -> None:
    found = sections(DOC, "Guide")
    assert [h for h, _ in found] == ["Guide", "Guide › Install", "Guide › Install › On Linux", "Guide › Use"]
    assert found[1][1] == ["Run the installer. Then restart."]


def test_headings_inside_code_blocks_are_text() -> None:
    text = "# T\n\n```\n# not a heading\nprint(1)\n```\n"
    assert [h for h, _ in sections(text, "T")] == ["T"]


def test_every_chunk_fits_the_budget_and_neighbours_overlap() -> None:
    sentences = [f"Sentence number {i} talks about topic {i} in some words." for i in range(60)]
    text = "# Long\n\n" + "\n\n".join(sentences)
    chunks = chunk(text, "Long", words, max_tokens=50, overlap=12)
    assert len(chunks) > 5
    assert all(c.tokens <= 50 for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert before.text.split("\n\n")[-1] == after.text.split("\n\n")[0]  # the last paragraph carries over
    joined = " ".join(c.text for c in chunks)
    assert all(s in joined for s in sentences)  # nothing lost


def test_a_paragraph_longer_than_the_budget_is_split_by_sentences_then_words() -> None:
    para = " ".join(f"word{i}" for i in range(300))  # one "sentence" of 300 words
    chunks = chunk(f"# T\n\n{para}", "T", words, max_tokens=40, overlap=0)
    assert all(c.tokens <= 40 for c in chunks)
    assert " ".join(c.text for c in chunks).split() == para.split()


def test_identical_chunks_in_one_document_are_kept_once() -> None:
    text = "# A\n\nSame boilerplate footer.\n\n# A\n\nSame boilerplate footer.\n\n# B\n\nOther."
    chunks = chunk(text, "", words, max_tokens=50, overlap=0)
    assert [c.text for c in chunks] == ["Same boilerplate footer.", "Other."]
    assert [c.position for c in chunks] == [0, 1]


def test_heading_is_part_of_what_is_indexed() -> None:
    (first,) = chunk("# Title\n\nBody.", "Title", words)
    assert first.indexed_text == "Title\nBody."

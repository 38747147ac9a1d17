from __future__ import annotations

import numpy as np
import pytest

from openmaas.rag.context import citations, inject, source_block
from openmaas.rag.retrieval import KbIndex, rrf


def test_rrf_arithmetic() -> None:
    fused = dict(rrf([["a", "b", "c"], ["b", "d"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 63)
    assert fused["d"] == pytest.approx(1 / 62)
    assert [item for item, _ in rrf([["a", "b", "c"], ["b", "d"]])] == ["b", "a", "d", "c"]


def test_rrf_of_one_list_keeps_its_order() -> None:
    assert [i for i, _ in rrf([["x", "y", "z"]])] == ["x", "y", "z"]


def _index() -> KbIndex:
    texts = ["Cats purr when they are content.", "Dogs bark at strangers.", "Parrots can imitate speech."]
    vectors = np.eye(3, 4, dtype=np.float32)
    return KbIndex(["c1", "c2", "c3"], texts, vectors)


def test_bm25_ranks_by_terms_with_stemming_and_drops_non_matches() -> None:
    hits = _index().bm25("barking dog", 10)
    assert [h.chunk_id for h in hits] == ["c2"]
    assert hits[0].score > 0 and hits[0].rank == 1
    assert _index().bm25("the and of", 10) == []  # stop words only


def test_vector_search_is_exact_cosine_order() -> None:
    query = np.array([0.1, 0.9, 0.4, 0.0], dtype=np.float32)
    hits = _index().vector(query, 2)
    assert [h.chunk_id for h in hits] == ["c2", "c3"]
    assert hits[0].score == pytest.approx(0.9)


def test_empty_index() -> None:
    empty = KbIndex([], [], np.zeros((0, 4), dtype=np.float32))
    assert empty.bm25("anything", 5) == [] and empty.vector(np.ones(4, dtype=np.float32), 5) == []


def test_citations_are_existing_source_numbers_in_order() -> None:
    assert citations("Paris [2]. Built 1889 [1][2]. See [7] and [0].", 3) == [2, 1]
    assert citations("no citations", 3) == []


def test_source_block_and_injection() -> None:
    block = source_block(2, {"title": "Dog care", "heading": "Dog care › Feeding", "filename": "d.html", "text": "x"})
    assert block == "[2] Dog care › Feeding (d.html)\nx"
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]
    out = inject(messages, "SOURCES")
    assert [m["role"] for m in out] == ["system", "system", "user"] and out[1]["content"] == "SOURCES"


def test_attribution_cites_uncited_sentences_by_their_source() -> None:
    from openmaas.rag.context import attribute

    sources = ["The Eiffel Tower is in Paris. It was completed in 1889.", "Puppies need three or four small meals."]
    answer = "The Eiffel Tower was completed in 1889! Puppies eat small meals [2]. Hello there."
    text, inferred = attribute(answer, sources)
    assert text == "The Eiffel Tower was completed in 1889 [1]! Puppies eat small meals [2]. Hello there."
    assert inferred == [1]  # the model's own [2] is not counted as inferred
    unrelated, none = attribute("Bananas are yellow and curved fruit.", sources)
    assert unrelated == "Bananas are yellow and curved fruit." and none == []
    code = "Use this:\n```python\nprint('Eiffel Tower 1889')\n```"
    assert attribute(code, sources) == (code, [])

"""The two retrievers of one knowledge base and their fusion.

* BM25: ``bm25s`` (sparse-matrix BM25, Lucene scoring, k1=1.5, b=0.75) over heading + text, English
  stop words removed and Snowball-stemmed.
* Vectors: exact cosine similarity (one matrix-vector product over unit-length float32 embeddings).
  Exact search is the right index up to ~10⁵ chunks per knowledge base: 100k×384 scores in ~10 ms on
  one core, no recall loss, no index build; past that an HNSW index would pay off (docs/rag.md).
* Reciprocal rank fusion: score(d) = Σ_lists 1 / (k + rank_list(d)), rank from 1, k = 60
  (Cormack, Clarke & Büttcher, SIGIR 2009).

An index is an immutable snapshot built from the store's rows; the service rebuilds it when the
knowledge base's revision changes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

RRF_K = 60


def rrf(lists: Sequence[Sequence[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Fuse ranked id lists; ties keep the order of first appearance (list order, then rank)."""
    scores: dict[str, float] = {}
    for ranked in lists:
        for rank, item in enumerate(ranked, 1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: -kv[1])


@dataclass
class Hit:
    chunk_id: str
    score: float
    rank: int


class KbIndex:
    def __init__(self, ids: list[str], texts: list[str], vectors: NDArray[np.float32]) -> None:
        import bm25s
        import Stemmer

        self.ids = ids
        self.vectors = vectors
        self._stemmer = Stemmer.Stemmer("english")
        self._bm25 = bm25s.BM25()
        self._bm25_ok = False
        if ids:
            tokens = bm25s.tokenize(texts, stopwords="en", stemmer=self._stemmer, show_progress=False)
            if tokens.vocab:  # a corpus of stop words only has no BM25 index
                self._bm25.index(tokens, show_progress=False)
                self._bm25_ok = True

    def __len__(self) -> int:
        return len(self.ids)

    def bm25(self, query: str, k: int) -> list[Hit]:
        import bm25s

        if not self._bm25_ok:
            return []
        terms = bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, return_ids=False, show_progress=False)
        if not terms or not terms[0]:
            return []
        docs, scores = self._bm25.retrieve(terms, k=min(k, len(self.ids)), show_progress=False, n_threads=1)
        out: list[Hit] = []
        for doc, score in zip(docs[0], scores[0], strict=True):
            if score <= 0:
                break
            out.append(Hit(self.ids[int(doc)], float(score), len(out) + 1))
        return out

    def vector(self, query: NDArray[np.float32], k: int) -> list[Hit]:
        if not self.ids:
            return []
        sims = self.vectors @ query
        k = min(k, len(self.ids))
        top = np.argpartition(-sims, k - 1)[:k]
        top = top[np.argsort(-sims[top], kind="stable")]
        return [Hit(self.ids[int(i)], float(sims[i]), rank) for rank, i in enumerate(top, 1)]

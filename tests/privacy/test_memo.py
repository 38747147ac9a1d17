"""The digest memo: long texts computed once, short ones always, bounded, and no text kept."""

from __future__ import annotations

from openmaas.privacy.memo import DigestMemo


def test_long_texts_are_computed_once_short_ones_every_time_and_the_memo_is_bounded() -> None:
    calls: list[str] = []

    def compute(text: str) -> int:
        calls.append(text)
        return len(text)

    memo: DigestMemo[int] = DigestMemo(min_chars=10, entries=2)
    long_a, long_b, long_c = "a" * 20, "b" * 20, "c" * 20
    assert [memo.get(t, compute) for t in (long_a, long_a, "short", "short")] == [20, 20, 5, 5]
    assert calls == [long_a, "short", "short"]
    memo.get(long_b, compute)
    memo.get(long_a, compute)  # a hit makes it the most recent
    memo.get(long_c, compute)  # so b is the one evicted
    assert len(memo) == 2
    calls.clear()
    memo.get(long_a, compute)
    memo.get(long_b, compute)
    assert calls == [long_b]
    assert not any(isinstance(k, str) for k in memo._memo)  # digests only, never the text

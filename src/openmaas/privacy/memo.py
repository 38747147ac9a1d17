"""Remember what was found in long texts, by digest: a chat re-sends its whole history and an application
its system prompt with every request. Only a 128-bit BLAKE2 digest is kept, never the text."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class DigestMemo(Generic[V]):
    """A bounded LRU of ``compute(text)`` for texts of ``min_chars`` or more (shorter ones cost less to
    compute than to look up). Values must not be mutated by callers: they are shared."""

    def __init__(self, min_chars: int, entries: int) -> None:
        self.min_chars = min_chars
        self.entries = entries
        self._memo: OrderedDict[bytes, V] = OrderedDict()

    def get(self, text: str, compute: Callable[[str], V]) -> V:
        if len(text) < self.min_chars:
            return compute(text)
        key = hashlib.blake2b(text.encode(), digest_size=16).digest()
        cached = self._memo.get(key)
        if cached is not None:
            self._memo.move_to_end(key)
            return cached
        value = self._memo[key] = compute(text)
        if len(self._memo) > self.entries:
            self._memo.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._memo)

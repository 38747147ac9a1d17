"""Which engine process of a local deployment serves a request: prompt-cache affinity and copy-heavy traffic.

An engine keeps the KV cache of the prompts it computed (in its slots and its host-RAM prompt cache), so a
request whose prefix it already holds skips most of its prompt time: 9–11 s → 0.1 s for 1.4 k tokens on
this project's machines. Within one engine, ``llama-server`` already gives a request the slot whose cache
shares the longest prefix with it (``--slot-prompt-similarity``) and loads a matching prompt back from
its RAM cache; what no engine can know is which *process* holds a prefix. ``Placer`` remembers that.

Prefix keys are cumulative digests of the conversation: the first covers the leading system messages,
each next one adds a message (a chat) or a 1,024-character block (a text prompt). The engine that last
served a key holds it. A request goes to the engine that holds its longest known prefix unless that
engine is overloaded (in flight ≥ its slots + ``queue`` waiting), then to the least loaded one. The table
is bounded (LRU); keys are salted per process digests of the text, never the text.

``copy_heavy`` is the gateway's guess that the answer will copy its prompt — n-gram speculation pays there
(+40–63 % tokens/s measured) and costs ~5 % on free writing: an answer grounded in knowledge-base sources,
extraction into a JSON schema, or a document or code given to edit, fix, rewrite or quote. Whether it does
pay depends on the model copying verbatim, which only the engine's answers show: ``SpeculationGain`` keeps
an estimate from their ``timings`` (drafted and accepted tokens), and while it reads below 1 the pool sends
copy-heavy requests to the plain engines too, probing the speculative one every ``probe_every``-th time.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

TEXT_BLOCK = 1024
_EDIT = re.compile(
    r"\b(rewrite|re-write|edit|fix|refactor|rename|correct|proofread|revise|reformat|convert|extract|quote|"
    r"repeat|copy|translate the code|change|modify|replace|remove|delete|update|"
    r"add (?:an? )?(?:type hints?|comments?|docstrings?|logging|error handling)|"
    r"(?:complete|whole|full|entire|updated) (?:code|file|function|class|script|text|document))\b|"
    r"(改写|修改|修正|重写|提取|摘录|润色|重构)",
    re.IGNORECASE,
)
_GROUNDED = "\n\nSources:\n\n"  # rag.context.system_message: the knowledge-base sources block
_LONG_DOCUMENT = 300  # characters of pasted text that an edit request is likely to copy


class Member(Protocol):
    @property
    def inflight(self) -> int: ...

    @property
    def capacity(self) -> int: ...

    @property
    def speculative(self) -> bool: ...


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prefix_keys(payload: dict[str, Any]) -> list[int]:
    """Cumulative digests of the request's prefixes, shortest first (see the module doc)."""
    keys: list[int] = []
    digest = 0
    messages = payload.get("messages")
    if isinstance(messages, list):
        leading = 0
        while leading < len(messages) and isinstance(messages[leading], dict):
            if messages[leading].get("role") not in ("system", "developer"):
                break
            leading += 1
        for index, message in enumerate(messages):
            digest = hash((digest, orjson.dumps(message, option=orjson.OPT_SORT_KEYS)))
            if index + 1 >= leading:
                keys.append(digest)
        return keys
    prompt = payload.get("prompt")
    if isinstance(prompt, str):
        for start in range(0, len(prompt), TEXT_BLOCK):
            digest = hash((digest, prompt[start : start + TEXT_BLOCK]))
            keys.append(digest)
    return keys


def copy_heavy(payload: dict[str, Any]) -> bool:
    """Whether the answer is likely to copy the prompt (see the module doc)."""
    fmt = payload.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
        return True
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    texts = [(m.get("role"), _text(m.get("content"))) for m in messages if isinstance(m, dict)]
    if any(role == "system" and _GROUNDED in text for role, text in texts):
        return True
    last = next((text for role, text in reversed(texts) if role == "user"), "")
    pasted = "```" in last or len(last) >= _LONG_DOCUMENT
    return pasted and _EDIT.search(last) is not None


class SpeculationGain:
    """Estimated speed-up of n-gram speculation on the traffic sent to it, from each answer's ``timings``:
    ``predicted / (predicted - accepted + verify_cost × drafted)`` decode steps — an accepted token saves a
    step, every drafted token costs ``verify_cost`` of one in the verifying batch (~0.35 measured,
    bench/kernel_cost.py) — averaged with weight ``alpha``. No drafts: 1 (nothing gained, nothing lost)."""

    def __init__(self, verify_cost: float = 0.35, alpha: float = 0.2, warm_up: int = 4, probe_every: int = 8):
        self.verify_cost = verify_cost
        self.alpha = alpha
        self.warm_up = warm_up
        self.probe_every = probe_every
        self.value = 1.0
        self.samples = 0
        self._passed = 0

    def note(self, timings: Any) -> None:
        if not isinstance(timings, dict):
            return
        predicted = int(timings.get("predicted_n") or 0)
        if predicted <= 0:
            return
        drafted = int(timings.get("draft_n") or 0)
        accepted = int(timings.get("draft_n_accepted") or 0)
        steps = predicted - accepted + self.verify_cost * drafted
        gain = predicted / steps if steps > 0 else 1.0
        self.value = gain if self.samples == 0 else (1 - self.alpha) * self.value + self.alpha * gain
        self.samples += 1

    def pays(self) -> bool:
        return self.samples < self.warm_up or self.value >= 1.0

    def wants(self) -> bool:
        """Whether this copy-heavy request goes to the speculative engine: while it pays, and every
        ``probe_every``-th request while it does not (so the estimate follows the traffic)."""
        if self.pays():
            self._passed = 0
            return True
        self._passed += 1
        if self._passed >= self.probe_every:
            self._passed = 0
            return True
        return False


@dataclass(frozen=True, slots=True)
class Choice:
    index: int
    reason: str  # "prefix" (it holds the longest known prefix), "least_loaded", "prefix_busy", "only"
    matched: int  # how many prefix keys of the request the chosen engine was known to hold


class Placer:
    def __init__(self, queue: int = 4, max_keys: int = 100_000) -> None:
        self.queue = queue
        self.max_keys = max_keys
        self._holder: OrderedDict[int, int] = OrderedDict()  # prefix key → engine index (LRU)
        self._turn = 0  # rotates ties between equally loaded engines

    def least_loaded(self, members: Sequence[Member], eligible: Sequence[int]) -> int:
        self._turn += 1
        n = len(members)
        return min(eligible, key=lambda i: (members[i].inflight / members[i].capacity, (i - self._turn) % n))

    def choose(self, members: Sequence[Member], eligible: Sequence[int], keys: Sequence[int]) -> Choice:
        """The engine (an index into ``members``, one of ``eligible``) for a request with these prefix keys;
        the keys are then recorded as held by it."""
        choice = self._choose(members, eligible, keys)
        self.remember(keys, choice.index)
        return choice

    def _choose(self, members: Sequence[Member], eligible: Sequence[int], keys: Sequence[int]) -> Choice:
        if len(eligible) == 1:
            index = eligible[0]
            return Choice(index, "only", self._held(keys, index))
        for depth in range(len(keys) - 1, -1, -1):
            holder = self._holder.get(keys[depth])
            if holder is None or holder not in eligible:
                continue
            member = members[holder]
            if member.inflight < member.capacity + self.queue:
                return Choice(holder, "prefix", depth + 1)
            index = self.least_loaded(members, eligible)
            return Choice(index, "prefix_busy", self._held(keys, index))
        return Choice(self.least_loaded(members, eligible), "least_loaded", 0)

    def _held(self, keys: Sequence[int], index: int) -> int:
        held = 0
        for depth, key in enumerate(keys):
            if self._holder.get(key) == index:
                held = depth + 1
        return held

    def remember(self, keys: Sequence[int], index: int) -> None:
        holder = self._holder
        for key in keys:
            holder[key] = index
            holder.move_to_end(key)
        while len(holder) > self.max_keys:
            holder.popitem(last=False)

    def forget(self, index: int) -> None:
        """An engine restarted without its cache: it holds nothing any more."""
        for key in [k for k, v in self._holder.items() if v == index]:
            del self._holder[key]


class SlotMap:
    """Which slot of one engine holds which prefix, and which slots are busy: a request goes to the idle
    slot holding its longest known prefix beyond the first (the system block, shared by many
    conversations), else to the least recently used idle slot (``id_slot``).
    Left alone, the engine gives every request the slot most similar to it, so conversations sharing a
    long system prompt all land on one slot and overwrite each other's history while the other slots sit
    empty (measured: follow-up turns recomputed their whole history); pinned, each conversation keeps its
    slot and the shared prefix comes back from the engine's RAM cache when a slot is first used."""

    def __init__(self, slots: int, max_keys: int = 20_000) -> None:
        self.slots = slots
        self.max_keys = max_keys
        self.busy: set[int] = set()
        self._holder: OrderedDict[int, int] = OrderedDict()  # prefix key → slot
        self._keys: list[set[int]] = [set() for _ in range(slots)]
        self._used = [0] * slots
        self._tick = 0

    def acquire(self, keys: Sequence[int]) -> tuple[int | None, int | None]:
        """(slot, donor) for a request with these prefix keys. slot: None when every slot is busy (the
        engine queues it). donor: an idle slot holding the shared first prefix (the system block) when the
        chosen one does not — copying it over (save and restore: milliseconds) beats recomputing it."""
        free = [s for s in range(self.slots) if s not in self.busy]
        if not free:
            return None, None
        # the slot holding this conversation up to its newest message continues it; a new conversation
        # (only a shared prefix such as the system block is known) takes the least recently used slot
        chosen = next(
            (s for s in (self._holder.get(k) for k in reversed(keys[1:])) if s is not None and s not in self.busy),
            None,
        )
        if chosen is None:
            chosen = min(free, key=lambda s: self._used[s])
        donor = None
        if keys and keys[0] not in self._keys[chosen]:
            donor = next((s for s in free if s != chosen and keys[0] in self._keys[s]), None)
        if donor is None and self._used[chosen] == 0:
            # a slot's first use: start from the most recently used idle slot, whose prompt shares at least
            # the chat template's leading tokens (the rest is overwritten); at most once per slot
            used = [s for s in free if s != chosen and self._used[s]]
            donor = max(used, key=lambda s: self._used[s]) if used else None
        self.busy.add(chosen)
        self._tick += 1
        self._used[chosen] = self._tick
        for key in self._keys[chosen].difference(keys):  # what the slot held before is overwritten
            if self._holder.get(key) == chosen:
                del self._holder[key]
        self._keys[chosen] = set(keys)
        for key in keys:
            self._holder[key] = chosen
            self._holder.move_to_end(key)
        while len(self._holder) > self.max_keys:
            key, slot = self._holder.popitem(last=False)
            self._keys[slot].discard(key)
        return chosen, donor

    def release(self, slot: int | None) -> None:
        if slot is not None:
            self.busy.discard(slot)

    def clear(self) -> None:
        """The engine restarted: its slots hold nothing."""
        self._holder.clear()
        self._keys = [set() for _ in range(self.slots)]

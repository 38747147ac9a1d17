from __future__ import annotations

from dataclasses import dataclass

from openmaas.engine.placement import Placer, SlotMap, SpeculationGain, copy_heavy, prefix_keys


@dataclass
class Engine:
    inflight: int = 0
    capacity: int = 4
    speculative: bool = False


SYSTEM = {"role": "system", "content": "You are the harbour office assistant."}


def chat(*turns: str) -> dict[str, object]:
    roles = ["user", "assistant"]
    return {"messages": [SYSTEM, *({"role": roles[i % 2], "content": t} for i, t in enumerate(turns))]}


def test_prefix_keys_grow_with_the_conversation_and_start_at_the_system_block() -> None:
    one, two = prefix_keys(chat("Where is berth 7?")), prefix_keys(chat("Where is berth 7?", "North.", "And 9?"))
    assert len(one) == 2 and len(two) == 4
    assert two[:2] == one  # turn 2 shares turn 1's prefixes
    assert prefix_keys(chat("Another question"))[0] == one[0] and prefix_keys(chat("x"))[1] != one[1]
    text = prefix_keys({"prompt": "a" * 3000})
    assert len(text) == 3 and prefix_keys({"prompt": "a" * 2048 + "b"})[:2] == text[:2]


def test_a_follow_up_goes_where_its_prefix_is_unless_that_engine_is_overloaded() -> None:
    engines = [Engine(), Engine()]
    placer = Placer(queue=1)
    first = placer.choose(engines, [0, 1], prefix_keys(chat("Where is berth 7?")))
    assert first.reason == "least_loaded"
    follow = placer.choose(engines, [0, 1], prefix_keys(chat("Where is berth 7?", "North.", "And 9?")))
    assert (follow.index, follow.reason, follow.matched) == (first.index, "prefix", 2)
    engines[first.index].inflight = 5  # 4 slots + 1 queued: full
    busy = placer.choose(engines, [0, 1], prefix_keys(chat("Where is berth 7?", "North.", "And 10?")))
    assert busy.index != first.index and busy.reason == "prefix_busy"


def test_new_conversations_without_a_shared_prefix_spread_and_a_restart_forgets() -> None:
    engines = [Engine(), Engine()]
    placer = Placer()
    chosen = {
        placer.choose(engines, [0, 1], prefix_keys({"messages": [{"role": "user", "content": q}]})).index for q in "ab"
    }
    assert chosen == {0, 1}
    keys = prefix_keys(chat("Where is berth 7?"))
    index = placer.choose(engines, [0, 1], keys).index
    placer.forget(index)
    assert placer.choose(engines, [1 - index], keys).reason == "only"
    assert Placer(max_keys=3).choose(engines, [0, 1], prefix_keys(chat("a", "b", "c", "d"))).index in (0, 1)


def test_copy_heavy_requests_are_grounded_extraction_or_edits_of_pasted_text() -> None:
    code = "```python\ndef f(x):\n    return x + 1\n```"
    assert copy_heavy({"messages": [{"role": "user", "content": "Rename x to value:\n" + code}]})
    assert copy_heavy({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema"}})
    grounded = {"role": "system", "content": "Answer from the sources.\n\nSources:\n\n[1] Pier (a.md)\ntext"}
    assert copy_heavy({"messages": [grounded, {"role": "user", "content": "Where is the pier?"}]})
    assert copy_heavy({"messages": [{"role": "user", "content": "请修改这段文字：" + "港口办公室的规定。" * 40}]})
    assert not copy_heavy({"messages": [{"role": "user", "content": "Write a poem about the sea."}]})
    assert not copy_heavy({"messages": [{"role": "user", "content": "Explain this:\n" + code}]})  # no edit asked
    assert not copy_heavy({"messages": [{"role": "user", "content": "Fix my mood, please."}]})  # nothing pasted
    for ask in (
        "Change the default limit from 3 to 5. Return the complete code.",
        "Add a docstring to read_orders.",
        "Make top_customers return only the names and give me the whole file back.",
        "Remove the unused import.",
    ):
        assert copy_heavy({"messages": [{"role": "user", "content": f"{ask}\n{code}"}]}), ask
    assert not copy_heavy({"messages": [{"role": "user", "content": "What does this return?\n" + code}]})
    assert not copy_heavy({"messages": [{"role": "user", "content": "Write tests for this function.\n" + code}]})


def test_slots_keep_their_conversation_and_a_new_one_gets_the_shared_prefix_copied() -> None:
    slots = SlotMap(3)
    c0 = prefix_keys(chat("Where is berth 7?"))
    assert slots.acquire(c0) == (0, None)  # nothing held anywhere: the least recently used slot
    slots.release(0)
    c1 = prefix_keys(chat("Where is berth 9?"))
    assert slots.acquire(c1) == (1, 0)  # a new conversation: its own slot, the system block copied from 0
    slots.release(1)
    one_off = prefix_keys({"messages": [{"role": "user", "content": "hello"}]})
    assert slots.acquire(one_off) == (2, 1)  # a slot's first use starts from the latest used slot
    slots.release(2)
    slots.acquire(c1)
    slots.release(1)
    follow = prefix_keys(chat("Where is berth 7?", "North pier.", "And the tide?"))
    assert slots.acquire(follow) == (0, None)  # the conversation continues where it is
    assert slots.acquire(prefix_keys(chat("Where is berth 7?", "North pier.", "Again?"))) == (2, 1)  # 0 is busy
    assert slots.acquire(c1) == (1, None)
    assert slots.acquire(c0) == (None, None)  # all busy: the engine queues it
    slots.release(2)
    slots.clear()
    assert slots.acquire(c1)[1] is None  # after a restart nothing is held


def test_speculation_is_paused_while_it_does_not_pay_and_probed_every_eighth_time() -> None:
    gain = SpeculationGain()
    assert gain.wants() and gain.value == 1.0
    for _ in range(10):
        gain.note({"predicted_n": 100, "draft_n": 0, "draft_n_accepted": 0})  # never drafts: nothing lost
    assert gain.value == 1.0 and gain.wants()
    poor = {"predicted_n": 100, "draft_n": 192, "draft_n_accepted": 12}  # rejected drafts cost their batch
    for _ in range(12):
        gain.note(poor)
    assert gain.value < 0.8 and not gain.pays()
    choices = [gain.wants() for _ in range(16)]
    assert choices == [False] * 7 + [True] + [False] * 7 + [True]  # a probe keeps the estimate current
    for _ in range(12):
        gain.note({"predicted_n": 400, "draft_n": 339, "draft_n_accepted": 339})  # the traffic turned copy-heavy
    assert gain.value > 1.5 and gain.wants()


def test_the_gain_waits_for_a_few_answers_and_ignores_timings_it_cannot_read() -> None:
    gain = SpeculationGain(warm_up=4)
    for _ in range(3):
        gain.note({"predicted_n": 50, "draft_n": 64, "draft_n_accepted": 0})
    assert gain.value < 1 and gain.wants()  # too few answers to judge
    gain.note(None)
    gain.note({"predicted_n": 0})
    gain.note("timings")
    assert gain.samples == 3
    gain.note({"predicted_n": 50, "draft_n": 64, "draft_n_accepted": 0})
    assert not gain.pays()

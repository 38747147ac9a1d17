from __future__ import annotations

import pytest

from openmaas.core.view import PromptView
from openmaas.privacy.classify import Restorer, masked_copy, scan_request
from openmaas.privacy.scanner import Scanner


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    return Scanner()


def test_every_text_of_a_request_is_scanned_and_only_types_are_reported(scanner: Scanner) -> None:
    body = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "mail me at ann@example.com"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c", "function": {"name": "pay", "arguments": '{"card": "4111111111111111"}'}}],
            },
            {"role": "tool", "tool_call_id": "c", "content": "done for 13800138000"},
        ]
    }
    scanned = scan_request(scanner, PromptView(body))
    assert scanned.privacy.label == "sensitive"
    assert scanned.privacy.entities == ("CN_MOBILE", "CREDIT_CARD", "EMAIL_ADDRESS")
    assert "ann@example.com" not in repr(scanned.privacy)


def test_masking_replaces_values_consistently_and_leaves_the_original_untouched(scanner: Scanner) -> None:
    body = {
        "messages": [
            {"role": "user", "content": "Write to ann@example.com, then again to ann@example.com and bob@example.org"}
        ]
    }
    masked, mapping = masked_copy(body, scan_request(scanner, PromptView(body)))
    text = masked["messages"][0]["content"]
    assert text == "Write to [EMAIL_ADDRESS_1], then again to [EMAIL_ADDRESS_1] and [EMAIL_ADDRESS_2]"
    assert mapping == {"[EMAIL_ADDRESS_1]": "ann@example.com", "[EMAIL_ADDRESS_2]": "bob@example.org"}
    assert "ann@example.com" in body["messages"][0]["content"]  # the caller's body is not changed


def test_restoring_a_stream_holds_back_a_split_placeholder() -> None:
    restorer = Restorer({"[EMAIL_ADDRESS_1]": "ann@example.com"})
    pieces = ["Sure, I wrote to [EMA", "IL_ADDRESS", "_1] and [not a placeholder] ok", " [EMAIL"]
    out = "".join(restorer.feed(p) for p in pieces) + restorer.flush()
    assert out == "Sure, I wrote to ann@example.com and [not a placeholder] ok [EMAIL"


def test_restoring_a_whole_response() -> None:
    restorer = Restorer({"[CN_MOBILE_1]": "13800138000"})
    result = {"choices": [{"message": {"content": "Call [CN_MOBILE_1]", "tool_calls": []}}, {"text": "[CN_MOBILE_1]"}]}
    restorer.restore_response(result)
    assert result["choices"][0]["message"]["content"] == "Call 13800138000"
    assert result["choices"][1]["text"] == "13800138000"


def test_restoring_interleaved_streams_keeps_each_slot_apart() -> None:
    # Two choices (n=2) and a tool call stream at once; a placeholder split in one must not swallow the other.
    restorer = Restorer({"[EMAIL_ADDRESS_1]": "ann@example.com", "[CN_MOBILE_1]": "13800138000"})
    a, b, tool = (0, "content"), (1, "content"), (0, "tool", 0)
    out = {
        a: restorer.feed("mail [EMAIL_", a),
        b: restorer.feed("call [CN_MO", b),
        tool: restorer.feed('{"to": "[EMA', tool),
    }
    assert out == {a: "mail ", b: "call ", tool: '{"to": "'}
    assert sorted(map(str, restorer.held())) == sorted(map(str, [a, b, tool]))
    out[b] += restorer.feed("BILE_1] now", b)
    out[a] += restorer.feed("ADDRESS_1]", a)
    out[tool] += restorer.feed('IL_ADDRESS_1]"}', tool)
    assert out == {a: "mail ann@example.com", b: "call 13800138000 now", tool: '{"to": "ann@example.com"}'}
    assert restorer.held() == [] and restorer.flush(a) == ""

"""Admission estimates: the prompt bound never undercounts, whether it walks the body or takes its size."""

from __future__ import annotations

import json

import orjson

from openmaas.core.view import PromptView
from openmaas.metering.pricing import prompt_upper_bound

BODIES = [
    {"model": "m", "messages": [{"role": "user", "content": "Say something short."}], "max_tokens": 16},
    {  # non-ASCII text (several UTF-8 bytes a character) and characters JSON escapes
        "model": "m",
        "messages": [
            {"role": "system", "content": "Réponds en français, s'il te plaît. 你好 👋"},
            {"role": "user", "content": 'quote " backslash \\ newline\n tab\t control \u0001'},
        ],
    },
    {  # tools and a response format count too
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "weather?"}]}],
        "tools": [{"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}],
        "response_format": {"type": "json_object"},
    },
]


def test_the_body_size_bound_is_never_below_the_walked_bound() -> None:
    for body in BODIES:
        walked = prompt_upper_bound(PromptView(body))
        for raw in (orjson.dumps(body), json.dumps(body).encode(), json.dumps(body, ensure_ascii=False).encode()):
            assert prompt_upper_bound(PromptView(orjson.loads(raw)), len(raw)) >= walked


def test_the_walked_bound_counts_utf8_bytes_and_per_message_overhead() -> None:
    one = {"messages": [{"role": "user", "content": "é"}]}  # 2 bytes
    two = {"messages": [{"role": "user", "content": "é"}, {"role": "user", "content": "é"}]}
    assert prompt_upper_bound(PromptView(two)) - prompt_upper_bound(PromptView(one)) == 8 + 2

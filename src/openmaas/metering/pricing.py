"""Prices, admission estimates and budget periods (pure functions).

Prices are USD per million tokens in the config; costs are integer nano-dollars
(1 USD per Mtok = 1,000 nanos per token), so ledger sums are exact.
"""

from __future__ import annotations

import calendar
import datetime as dt
from typing import Any

from openmaas.core.chat import CEILING_KEY
from openmaas.settings import Deployment

MESSAGE_OVERHEAD = 8  # template tokens per message (role markers, separators), generous
REQUEST_OVERHEAD = 16


def cost_nanos(deployment: Deployment, prompt_tokens: int, completion_tokens: int) -> int:
    p = deployment.pricing
    return round(prompt_tokens * p.input_per_mtok * 1000 + completion_tokens * p.output_per_mtok * 1000)


def _text_bytes(value: Any) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, list):
        return sum(_text_bytes(v) for v in value)
    if isinstance(value, dict):
        return sum(_text_bytes(v) for k, v in value.items() if k not in ("role", "type"))
    return 0 if value is None else len(str(value))


def prompt_upper_bound(body: dict[str, Any], body_bytes: int | None = None) -> int:
    """An upper bound on prompt tokens without a tokenizer round-trip.

    Byte-level BPE tokenizers never produce more tokens than UTF-8 bytes, so
    bytes plus template overhead bounds the count from above: reserving with it
    means a settled request never costs more than it reserved. ``body_bytes``,
    the size of the JSON the body was parsed from, bounds the text without a
    walk over it: JSON holds each string's UTF-8 bytes or longer escapes of them.
    """
    if body_bytes is not None:
        messages = body.get("messages")
        count = len(messages) if isinstance(messages, list) else 0
        return REQUEST_OVERHEAD + MESSAGE_OVERHEAD * count + body_bytes
    if "messages" in body:
        messages = body.get("messages") or []
        total = REQUEST_OVERHEAD + MESSAGE_OVERHEAD * len(messages) + _text_bytes(messages)
        return total + _text_bytes(body.get("tools")) + _text_bytes(body.get("response_format"))
    if "prompt" in body:
        return REQUEST_OVERHEAD + _text_bytes(body.get("prompt"))
    return REQUEST_OVERHEAD + _text_bytes(body.get("input"))


def max_output_tokens(body: dict[str, Any], deployment: Deployment, prompt_bound: int) -> int:
    n = int(body.get("n") or 1)
    room = max(0, deployment.context_length - min(prompt_bound, deployment.context_length))
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if limit is None:
        limit = room
    elif body.get(CEILING_KEY):  # a ceiling is lowered to what the context leaves (core.chat)
        limit = min(int(limit), deployment.context_length)
    return int(limit) * n


def estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Only when no usage and no tokenizer exist (a cloud stream cut short): about 4 bytes per token."""
    return max(1, (prompt_upper_bound(body) - REQUEST_OVERHEAD) // 4)


def period_start(period: str, now: float) -> tuple[str, float, int | None]:
    """(label, start epoch, seconds to keep a counter) of the budget period containing ``now`` (UTC)."""
    t = dt.datetime.fromtimestamp(now, dt.UTC)
    if period == "day":
        start = t.replace(hour=0, minute=0, second=0, microsecond=0)
        end = start + dt.timedelta(days=1)
        label = "d" + start.strftime("%Y-%m-%d")
    elif period == "month":
        start = t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        days = calendar.monthrange(start.year, start.month)[1]
        end = start + dt.timedelta(days=days)
        label = "m" + start.strftime("%Y-%m")
    else:
        return "all", 0.0, None
    return label, start.timestamp(), int(end.timestamp() - now) + 86_400


def day_of(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).strftime("%Y-%m-%d")

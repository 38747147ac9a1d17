"""Prices, admission estimates and budget periods (pure functions).

Prices are USD per million tokens in the config; costs are integer nano-dollars
(1 USD per Mtok = 1,000 nanos per token), so ledger sums are exact.
"""

from __future__ import annotations

import calendar
import datetime as dt

from openmaas.core.view import PromptView
from openmaas.settings import Deployment

MESSAGE_OVERHEAD = 8  # template tokens per message (role markers, separators), generous
REQUEST_OVERHEAD = 16


def cost_nanos(deployment: Deployment, prompt_tokens: int, completion_tokens: int) -> int:
    p = deployment.pricing
    return round(prompt_tokens * p.input_per_mtok * 1000 + completion_tokens * p.output_per_mtok * 1000)


def prompt_upper_bound(view: PromptView, body_bytes: int | None = None) -> int:
    """An upper bound on prompt tokens without a tokenizer round-trip.

    Byte-level BPE tokenizers never produce more tokens than UTF-8 bytes, so
    bytes plus template overhead bounds the count from above: reserving with it
    means a settled request never costs more than it reserved. ``body_bytes``,
    the size of the JSON the body was parsed from, bounds the text without a
    walk over it: JSON holds each string's UTF-8 bytes or longer escapes of them.
    """
    text = body_bytes if body_bytes is not None else view.prompt_bytes
    return REQUEST_OVERHEAD + MESSAGE_OVERHEAD * view.messages + text


def max_output_tokens(view: PromptView, deployment: Deployment, prompt_bound: int) -> int:
    room = max(0, deployment.context_length - min(prompt_bound, deployment.context_length))
    limit = view.output_limit
    if limit is None:
        limit = room
    elif view.ceiling:  # a ceiling is lowered to what the context leaves (core.chat)
        limit = min(limit, deployment.context_length)
    return limit * view.choices


def estimate_prompt_tokens(view: PromptView, body_bytes: int | None = None) -> int:
    """Only when no usage and no tokenizer exist (a cloud stream cut short): about 4 bytes per token. With
    ``body_bytes`` (``PromptView.body_bytes``), a bound on that estimate that walks nothing: never below it."""
    return max(1, (prompt_upper_bound(view, body_bytes) - REQUEST_OVERHEAD) // 4)


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

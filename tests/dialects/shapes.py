"""Requests in the shapes Claude Code (2.1.x) and Codex CLI (0.17x) send, with our own text.

The shapes were recorded from the real clients on loopback (keys, block kinds, nesting, which fields
carry ``cache_control``, a mid-conversation ``system`` message, Codex's ``namespace`` and
``web_search`` tools, ``client_metadata``…); none of their prompt text is reproduced here.
"""

from __future__ import annotations

import json
from typing import Any

BILLING = "x-anthropic-billing-header: cc_version=9.9.9.abc; cc_entrypoint=sdk-cli; cch={nonce};"
RULES = "You are a coding agent. Use the tools to inspect and change files. Answer briefly."


def _schema(**props: str) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {name: {"type": kind, "description": f"The {name}."} for name, kind in props.items()},
        "required": list(props)[:1],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }


CLAUDE_TOOLS = [
    {
        "name": "Bash",
        "description": "Run a shell command.",
        "input_schema": _schema(command="string", description="string", timeout="number"),
    },
    {
        "name": "Read",
        "description": "Read a file.",
        "input_schema": _schema(file_path="string", offset="integer", limit="integer"),
    },
    {
        "name": "Edit",
        "description": "Replace text in a file.",
        "input_schema": _schema(file_path="string", old_string="string", new_string="string"),
    },
    {"name": "Write", "description": "Write a file.", "input_schema": _schema(file_path="string", content="string")},
    *[
        {"name": f"Tool{i}", "description": f"Helper tool number {i}.", "input_schema": _schema(argument="string")}
        for i in range(16)
    ],
]


def claude_code_request(task: str, nonce: str, tool_result: str | None = None, stream: bool = True) -> dict[str, Any]:
    """One Claude Code turn; with ``tool_result``, the turn after its Bash call ran."""
    messages: list[dict[str, Any]] = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>\nProject notes: none.\n</system-reminder>\n"},
                {"type": "text", "text": task},
            ],
        },
        {"role": "system", "content": [{"type": "text", "text": "# Environment\n - Platform: linux\n - Shell: bash"}]},
    ]
    if tool_result is not None:
        call = {
            "type": "tool_use",
            "id": "toolu_0001",
            "name": "Bash",
            "input": {"command": "echo hi", "description": "say hi"},
        }
        messages.append({"role": "assistant", "content": [call]})
        result = {"type": "tool_result", "tool_use_id": "toolu_0001", "content": tool_result, "is_error": False}
        messages.append({"role": "user", "content": [result]})
    session = {"device_id": "0" * 64, "account_uuid": "", "session_id": "00000000-0000-0000-0000-000000000001"}
    return {
        "model": "claude-opus-5-5",
        "max_tokens": 32000,
        "stream": stream,
        "system": [
            {"type": "text", "text": BILLING.format(nonce=nonce)},
            {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}},
            {"type": "text", "text": RULES, "cache_control": {"type": "ephemeral"}},
        ],
        "messages": messages,
        "tools": CLAUDE_TOOLS,
        "metadata": {"user_id": json.dumps(session)},
        "thinking": {"type": "adaptive", "display": "omitted"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "medium"},
    }


CODEX_TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "name": "exec_command",
        "description": "Run a command.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"cmd": {"type": "string"}, "workdir": {"type": "string"}},
            "required": ["cmd"],
        },
    },
    {
        "type": "function",
        "name": "view_image",
        "description": "Look at an image.",
        "strict": False,
        "parameters": _schema(path="string"),
    },
    {
        "type": "namespace",
        "name": "helpers_v1",
        "description": "Helper tools.",
        "tools": [
            {"type": "function", "name": "close_helper", "strict": False, "parameters": _schema(target="string")}
        ],
    },
    {"type": "web_search", "external_web_access": False},
]


def codex_request(task: str, output: str | None = None, stream: bool = True) -> dict[str, Any]:
    """One ``codex exec`` turn (``store: false``: every turn resends the whole conversation)."""
    items: list[dict[str, Any]] = [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": RULES}]},
        {
            "type": "message",
            "role": "developer",
            "content": [
                {"type": "input_text", "text": "Sandbox: read-only."},
                {"type": "input_text", "text": "Approvals: never."},
            ],
        },
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "<environment_context>linux</environment_context>"}],
        },
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": task}]},
    ]
    if output is not None:
        items += [
            {"type": "reasoning", "summary": [], "encrypted_content": "opaque-blob"},
            {
                "type": "function_call",
                "name": "exec_command",
                "arguments": json.dumps({"cmd": "echo hi"}),
                "call_id": "call_0001",
            },
            {"type": "function_call_output", "call_id": "call_0001", "output": output},
            # Codex 0.17x also reports some outputs by name, with no call to answer
            {"type": "function_call_output", "name": "goal_objective", "namespace": "agent", "output": "List files"},
        ]
    return {
        "model": "agent",
        "input": items,
        "tools": CODEX_TOOLS,
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning": {"summary": "auto"},
        "store": False,
        "stream": stream,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "00000000-0000-0000-0000-000000000002",
        "client_metadata": {"session_id": "00000000-0000-0000-0000-000000000002", "turn_id": "t1"},
    }

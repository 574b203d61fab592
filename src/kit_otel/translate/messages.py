"""Captured content in the GenAI conventions' shapes: `gen_ai.input.messages` /
`gen_ai.output.messages` as JSON message lists, tool arguments as JSON that stays valid when cut.

Only with content capture on (the ContentPolicy decides, redacts and truncates); every function
returns None when content is not captured.
"""

from __future__ import annotations

import json

from kit_otel.translate.content import ContentPolicy

ROLE_USER = "user"
ROLE_ASSISTANT = "assistant"


def _messages(role: str, text: str, finish_reason: str = "") -> str:
    message: dict[str, object] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish_reason:
        message["finish_reason"] = finish_reason
    return json.dumps([message], ensure_ascii=False)


def input_messages(policy: ContentPolicy, text: str) -> str | None:
    """The user's message as `gen_ai.input.messages`."""
    captured = policy.text(text)
    return None if captured is None else _messages(ROLE_USER, captured)


def output_messages(policy: ContentPolicy, text: str, finish_reason: str) -> str | None:
    """The agent's answer as `gen_ai.output.messages`."""
    captured = policy.text(text)
    return None if captured is None else _messages(ROLE_ASSISTANT, captured, finish_reason)


def tool_arguments(policy: ContentPolicy, arguments: str) -> str | None:
    """`gen_ai.tool.call.arguments`: KIT's JSON as it is when it survives redaction and the
    length limit whole; otherwise (cut, redacted into non-JSON, or never JSON) the text as a
    JSON string, so a consumer that parses the attribute never fails."""
    captured = policy.text(arguments)
    if captured is None:
        return None
    try:
        json.loads(captured)
    except ValueError:
        return json.dumps(captured, ensure_ascii=False)
    return captured

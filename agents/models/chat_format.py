"""Rendering OpenAI-format conversations (with tool calls) through any chat template.

Small models' chat templates often know only ``content`` strings and the user/assistant/system
roles (SmolLM2's does). Tool-using trajectories carry ``tool_calls`` on assistant turns and
``tool`` role observations. When a template cannot render those natively we fold them into plain
text the same way at training and at inference time, so what a student learns is exactly what it
later sees:

* an assistant tool call becomes ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``
  appended to the assistant's text;
* a tool result becomes a user turn ``<tool_response>...</tool_response>`` (the agent-distillation
  paper maps observations to user turns as well).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from agents.models.base import Message

TOOL_CALL_OPEN = "<tool_call>"
TOOL_CALL_CLOSE = "</tool_call>"
_TOOL_CALL_RE = re.compile(
    re.escape(TOOL_CALL_OPEN) + r"\s*(\{.*?\})\s*" + re.escape(TOOL_CALL_CLOSE), re.S
)


def template_supports_tools(chat_template: str | None) -> bool:
    """Whether a Jinja chat template renders ``tool_calls`` and ``tool`` messages itself."""
    return bool(chat_template) and "tool_calls" in chat_template


def _arguments(call: dict[str, Any]) -> Any:
    args = call.get("function", {}).get("arguments", {})
    if isinstance(args, str):
        try:
            return json.loads(args)
        except json.JSONDecodeError:
            return args
    return args


def render_tool_call(call: dict[str, Any]) -> str:
    """One OpenAI tool call as the inline text form."""
    body = {"name": call.get("function", {}).get("name", ""), "arguments": _arguments(call)}
    return f"{TOOL_CALL_OPEN}{json.dumps(body, ensure_ascii=False)}{TOOL_CALL_CLOSE}"


def flatten_messages(messages: Sequence[Message]) -> list[Message]:
    """Fold tool calls and tool results into plain-text user/assistant turns."""
    flat: list[Message] = []
    for message in messages:
        role = message["role"]
        content = message.get("content") or ""
        if not isinstance(content, str):  # multi-part content: keep the text parts
            content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
        if role == "assistant" and message.get("tool_calls"):
            calls = "\n".join(render_tool_call(c) for c in message["tool_calls"])
            content = f"{content}\n{calls}" if content else calls
            flat.append({"role": "assistant", "content": content})
        elif role == "tool":
            flat.append({"role": "user", "content": f"<tool_response>{content}</tool_response>"})
        else:
            flat.append({"role": role, "content": content})
    return flat


def _with_dict_arguments(message: Message) -> Message:
    if not message.get("tool_calls"):
        return dict(message)
    calls = [
        {**call, "function": {**call.get("function", {}), "arguments": _arguments(call)}}
        for call in message["tool_calls"]
    ]
    return {**message, "tool_calls": calls}


def tools_instruction(tools: Sequence[dict[str, Any]]) -> str:
    """System-prompt text offering tools to a model whose template has no tool support."""
    schemas = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "You can call these tools (JSON schemas):\n"
        f"{schemas}\n"
        "To call one, write "
        f'{TOOL_CALL_OPEN}{{"name": ..., "arguments": {{...}}}}{TOOL_CALL_CLOSE}.'
    )


def prepare_messages(
    messages: Sequence[Message],
    chat_template: str | None,
    tools: Sequence[dict[str, Any]] | None = None,
) -> list[Message]:
    """Messages in the form a tokenizer's chat template can render.

    With native tool support the messages pass through unchanged (pass ``tools`` to the
    template yourself). Otherwise tool calls/results are flattened to text and the tool schemas,
    if any, are described in the system message, so training and inference see the same prompt.
    """
    if template_supports_tools(chat_template):
        # Native templates apply ``tojson`` to the arguments themselves, so hand them dicts;
        # OpenAI-format JSON strings would otherwise be quoted twice.
        return [_with_dict_arguments(m) for m in messages]
    flat = flatten_messages(messages)
    if tools:
        instruction = tools_instruction(tools)
        if flat and flat[0]["role"] == "system":
            flat[0] = {"role": "system", "content": f"{flat[0]['content']}\n\n{instruction}"}
        else:
            flat.insert(0, {"role": "system", "content": instruction})
    return flat


def parse_tool_calls(text: str) -> list[dict[str, Any]]:
    """Inline ``<tool_call>`` blocks in generated text → OpenAI tool calls (bad ones skipped)."""
    calls = []
    for i, match in enumerate(_TOOL_CALL_RE.finditer(text)):
        try:
            body = json.loads(match.group(1))
        except json.JSONDecodeError:
            continue
        if not isinstance(body, dict) or "name" not in body:
            continue
        calls.append(
            {
                "id": f"call_{i}",
                "type": "function",
                "function": {
                    "name": body["name"],
                    "arguments": json.dumps(body.get("arguments", {}), ensure_ascii=False),
                },
            }
        )
    return calls

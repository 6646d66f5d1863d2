"""Turning conversations into training tensors with an assistant-only loss mask.

A trajectory is an OpenAI-format conversation: system, user, assistant turns (possibly with tool
calls) and tool observations. The student learns only what it will itself generate: the content
of assistant turns and their end-of-turn token. Everything else (system prompt, user turns, tool
observations, the ``<|im_start|>assistant`` header the template writes before each reply) is
context and carries mask 0.

Conversations are rendered through :func:`agents.models.chat_format.prepare_messages` first, the
same function inference uses, so tool calls and tool results look identical in both.

The mask does not rely on ``{% generation %}`` markers (most small models' templates, SmolLM2's
included, have none). For each assistant turn ``k`` the template renders the conversation up to
turn ``k`` with the generation prompt, and up to and including turn ``k``; the characters between
the two renderings are the assistant's turn. Character spans are mapped to tokens with the fast
tokenizer's offsets, so token merges at span edges cannot shift the mask.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from typing import Any

from datasets import Dataset
from transformers import PreTrainedTokenizerBase

from agents.models.base import Message
from agents.models.chat_format import prepare_messages, template_supports_tools

log = logging.getLogger(__name__)

Record = dict[str, Any]


def _render(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    tools: list[dict[str, Any]] | None,
    add_generation_prompt: bool,
) -> str:
    return tokenizer.apply_chat_template(
        list(messages), tools=tools, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def _common_prefix_len(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def assistant_char_spans(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    tools: list[dict[str, Any]] | None = None,
    context_messages: int = 0,
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of each assistant turn in it.

    ``messages`` must already be in the form the template renders (see ``prepare_messages``).
    A span covers the turn's content and its end-of-turn token; whitespace the template writes
    after the end-of-turn token is left out, since the model stops before generating it.
    Assistant turns among the first ``context_messages`` messages (worked examples in the
    prompt) get no span: they are context.

    Returns:
        ``(text, spans)`` with ``spans`` a list of ``(start, end)`` character offsets into ``text``.
    """
    full = _render(tokenizer, messages, tools, add_generation_prompt=False)
    spans: list[tuple[int, int]] = []
    cursor = 0
    for k, message in enumerate(messages):
        if message["role"] != "assistant" or k < context_messages:
            continue
        if k == 0:
            # Nothing precedes it, so there is no prompt to diff against; an opening assistant
            # message is treated as given context (it is never generated at inference either).
            log.debug("assistant message at position 0 is kept as context")
            continue
        prompt = _render(tokenizer, messages[:k], tools, add_generation_prompt=True)
        upto = _render(tokenizer, messages[: k + 1], tools, add_generation_prompt=False)
        split = _common_prefix_len(prompt, upto)
        if full.startswith(upto):
            start, end = split, len(upto)
        else:
            # The template renders earlier turns differently once later ones exist (some
            # reasoning templates drop old thoughts): find this turn's text in the full render.
            segment = upto[split:]
            found = full.find(segment, cursor)
            if not segment or found < 0:
                log.warning("could not locate assistant turn %d in the rendered conversation", k)
                continue
            start, end = found, found + len(segment)
        start = max(start, cursor)
        while end > start and full[end - 1].isspace():
            end -= 1
        if end > start:
            spans.append((start, end))
            cursor = end
    return full, spans


def tokenize_conversation(
    tokenizer: PreTrainedTokenizerBase,
    messages: Sequence[Message],
    tools: list[dict[str, Any]] | None = None,
    max_length: int = 1024,
    context_messages: int = 0,
) -> dict[str, list[int]]:
    """Tokenize a conversation with an assistant-only loss mask.

    Args:
        tokenizer: A fast tokenizer with a chat template.
        messages: OpenAI-format messages; tool calls and tool results are folded into text for
            templates that cannot render them.
        tools: Optional OpenAI tool schemas, passed to templates that render them.
        max_length: Sequences are cut to this many tokens (the start is kept).
        context_messages: The first this many messages are prompt only, assistant turns among
            them (worked examples) included: they carry no loss.

    Returns:
        ``input_ids``, ``attention_mask`` and ``assistant_masks`` (1 on tokens of assistant
        turns, including their end-of-turn token; 0 elsewhere), all of equal length.
    """
    if not tokenizer.is_fast:
        raise TypeError(
            "tokenize_conversation needs a fast tokenizer (it maps characters to tokens)"
        )
    template = tokenizer.chat_template
    # Same rendering as inference: without native tool support the schemas go into the system
    # message (prepare_messages), and the template itself is not given them.
    prepared = prepare_messages(messages, template, tools)
    native_tools = tools if template_supports_tools(template) else None
    # prepare_messages maps messages one to one, except that it may insert a system message.
    shift = len(prepared) - len(messages)
    context = context_messages + shift if context_messages else 0
    text, spans = assistant_char_spans(tokenizer, prepared, native_tools, context)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    input_ids: list[int] = list(encoded["input_ids"])
    mask = [0] * len(input_ids)
    span_index = 0
    for i, (tok_start, tok_end) in enumerate(encoded["offset_mapping"]):
        while span_index < len(spans) and spans[span_index][1] <= tok_start:
            span_index += 1
        if span_index == len(spans):
            break
        span_start, span_end = spans[span_index]
        if tok_start < span_end and tok_end > span_start:
            mask[i] = 1
    input_ids, mask = input_ids[:max_length], mask[:max_length]
    return {"input_ids": input_ids, "attention_mask": [1] * len(input_ids), "assistant_masks": mask}


def _tools_of(record: Record) -> list[dict[str, Any]] | None:
    tools = record.get("tools")
    if isinstance(tools, str):  # datasets store free-form schemas as JSON strings
        tools = json.loads(tools)
    return tools or None


def tokenize_records(
    tokenizer: PreTrainedTokenizerBase,
    records: Iterable[Record],
    max_length: int = 1024,
) -> Dataset:
    """Tokenize conversational records into a dataset SFT trainers accept.

    Args:
        tokenizer: A fast tokenizer with a chat template.
        records: Rows ``{"messages": [...], "tools": [...]?, "weight": float?,
            "context_messages": int?}``; the first ``context_messages`` messages (e.g. worked
            examples in the prompt) carry no loss.
        max_length: Token budget per example (longer ones are cut at the end).

    Returns:
        A dataset with ``input_ids`` and ``assistant_masks`` columns, plus ``weight`` when any
        record carries one (records without one get weight 1.0). Examples left with no assistant
        token after truncation are dropped, since they carry no training signal.
    """
    rows = list(records)
    has_weight = any(row.get("weight") is not None for row in rows)
    columns: dict[str, list[Any]] = {"input_ids": [], "assistant_masks": []}
    if has_weight:
        columns["weight"] = []
    dropped = 0
    for row in rows:
        if "messages" not in row:
            raise ValueError("every SFT record needs a 'messages' list (TRL conversational format)")
        context = int(row.get("context_messages") or 0)
        encoded = tokenize_conversation(
            tokenizer, row["messages"], _tools_of(row), max_length, context
        )
        if 1 not in encoded["assistant_masks"]:
            dropped += 1
            continue
        columns["input_ids"].append(encoded["input_ids"])
        columns["assistant_masks"].append(encoded["assistant_masks"])
        if has_weight:
            weight = row.get("weight")
            columns["weight"].append(1.0 if weight is None else float(weight))
    if dropped:
        log.warning(
            "dropped %d of %d examples with no assistant token within max_length=%d",
            dropped,
            len(rows),
            max_length,
        )
    if not columns["input_ids"]:
        raise ValueError("no example has an assistant turn to train on; check the records")
    return Dataset.from_dict(columns)

"""Functions agents call, each typed so its signature and docstring give the OpenAI tool schema.

Tool-using trajectories record calls and results in OpenAI tool-call message format; see
``agents.models.chat_format`` for how they are rendered for models without native tool support.

``DEFAULT_TOOLS`` is the explicit list agents get unless a scheme picks its own; tools reach the
episode's resources (the sandbox ``Session``, the ``Corpus``) by type through the ``ToolContext``
that ``call_tool`` is given.
"""

from __future__ import annotations

from typing import Any

from tools.answer import FINAL_ANSWER, final_answer, is_final
from tools.base import Tool, ToolContext, ToolError, call_tool, tool, tool_message
from tools.python_exec import python_exec
from tools.retrieval import (
    Corpus,
    CorpusUnavailable,
    Document,
    MiniLMEmbedding,
    build_default_corpus,
    load_jsonl,
    retrieve,
)

DEFAULT_TOOLS: list[Tool] = [python_exec, retrieve, final_answer]


def tool_schemas(tools: list[Tool] | None = None) -> list[dict[str, Any]]:
    """OpenAI-format schemas of ``tools`` (``DEFAULT_TOOLS`` when omitted), e.g. for ``tools=``."""
    return [t.schema for t in (DEFAULT_TOOLS if tools is None else tools)]


__all__ = [
    "DEFAULT_TOOLS",
    "FINAL_ANSWER",
    "Corpus",
    "CorpusUnavailable",
    "Document",
    "MiniLMEmbedding",
    "Tool",
    "ToolContext",
    "ToolError",
    "build_default_corpus",
    "call_tool",
    "final_answer",
    "is_final",
    "load_jsonl",
    "python_exec",
    "retrieve",
    "tool",
    "tool_message",
    "tool_schemas",
]

"""``final_answer``: the tool an agent calls to end its episode."""

from __future__ import annotations

from typing import Any

from tools.base import tool

FINAL_ANSWER = "final_answer"


@tool(name=FINAL_ANSWER)
def final_answer(answer: str) -> str:
    """Give the final answer to the task and end the episode.

    Args:
        answer: The answer, complete and self-contained.
    """
    return answer


def is_final(tool_call: dict[str, Any]) -> bool:
    """Whether an OpenAI-format tool call ends the episode."""
    return (tool_call.get("function") or {}).get("name") == FINAL_ANSWER

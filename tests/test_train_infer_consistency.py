"""What a student is trained on is exactly what it sees at inference, tool calls included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from agents.models.base import ChatRequest
from agents.models.transformers_engine import TransformersEngine
from agents.training.data import tokenize_conversation

TOOL = {
    "type": "function",
    "function": {
        "name": "python_exec",
        "description": "Run Python code.",
        "parameters": {"type": "object", "properties": {"code": {"type": "string"}}},
    },
}
CONVERSATION = [
    {"role": "system", "content": "Use tools when useful."},
    {"role": "user", "content": "What is 17 * 23?"},
    {
        "role": "assistant",
        "content": "Let me compute.",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "python_exec", "arguments": json.dumps({"code": "17*23"})},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "content": "391"},
    {"role": "assistant", "content": "The answer is 391."},
]


@pytest.mark.parametrize("turn", [2, 4])
def test_training_text_extends_the_inference_prompt_of_each_assistant_turn(
    tiny_model_dir: Path, turn: int
) -> None:
    engine = TransformersEngine(tiny_model_dir, spec="tiny", device="cpu")
    prompt = engine.render_prompt(ChatRequest(messages=CONVERSATION[:turn], tools=[TOOL]))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    encoded = tokenize_conversation(tokenizer, CONVERSATION, tools=[TOOL])
    trained_text = tokenizer.decode(encoded["input_ids"])
    assert "python_exec" in prompt  # the tool schema reached the prompt
    assert trained_text.startswith(prompt)
    # the reply right after the prompt is a target; the prompt's tail (the user question or the
    # tool observation, and the assistant header) is context
    prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    assert encoded["assistant_masks"][prompt_len] == 1
    assert not any(encoded["assistant_masks"][prompt_len - 8 : prompt_len])

"""The packaged SmolLM2 built-in end to end: conversion on first use, cached copy, generation.

On a fresh machine the first load converts the packaged GGUF into the model cache (tens of
seconds); afterwards every load reads the cached safetensors copy.
"""

from __future__ import annotations

import json

import pytest

from agents.models import BUILTIN_MODELS, load_engine
from agents.models.base import ChatRequest
from agents.models.transformers_engine import TransformersEngine

pytestmark = pytest.mark.builtin

SPEC = "builtin:smollm2-135m"


@pytest.fixture(scope="module")
def smollm2() -> TransformersEngine:
    engine = load_engine(SPEC, device="cpu")
    assert isinstance(engine, TransformersEngine)
    return engine


def test_builtin_generates_for_a_chat_prompt(smollm2: TransformersEngine) -> None:
    request = ChatRequest(
        messages=[
            {"role": "system", "content": "You are a concise assistant."},
            {"role": "user", "content": "What is the capital of France?"},
        ],
        n=2,
        temperature=0.7,
        max_tokens=24,
        seed=0,
    )
    result = smollm2.generate([request])[0]

    assert smollm2.spec == SPEC and smollm2.fingerprint.split("@")[0] == SPEC  # @bfloat16
    assert result.model == SPEC
    assert len(result.completions) == 2
    for completion in result.completions:
        assert completion.text.strip()
        assert "<|im_end|>" not in completion.text and "<|im_start|>" not in completion.text
        assert 0 < completion.completion_tokens <= 24
        assert completion.finish_reason in ("stop", "length")
    assert result.completion_tokens == sum(c.completion_tokens for c in result.completions)
    assert result.prompt_tokens > 10


def test_builtin_greedy_answer_is_sensible(smollm2: TransformersEngine) -> None:
    """A trained model, not noise: it names Paris and ends its turn by itself."""
    answer = smollm2.generate(
        [
            ChatRequest(
                messages=[{"role": "user", "content": "What is the capital of France?"}],
                max_tokens=48,
            )
        ]
    )[0].completions[0]
    assert "Paris" in answer.text
    assert answer.finish_reason == "stop"


def test_second_load_reads_the_converted_cache(smollm2: TransformersEngine) -> None:
    cached = BUILTIN_MODELS["smollm2-135m"].cached_dir()
    assert cached.is_dir()
    assert list(cached.glob("*.safetensors"))
    config = json.loads((cached / "config.json").read_text())
    assert config["model_type"] == "llama"
    assert "quantization_config" not in config  # plain weights: trainable and exportable

    again = load_engine(SPEC, device="cpu")
    assert isinstance(again, TransformersEngine)
    assert again.model_path == str(cached) == smollm2.model_path
    again.close()

"""VLLMEngine's request/response mapping, and the engine itself over a stand-in ``vllm`` module.

vLLM needs CUDA, so these tests never import it: the pure mapping functions get objects shaped
like ``RequestOutput``, and the engine runs against a small fake module placed in ``sys.modules``.
"""

from __future__ import annotations

import importlib
import json
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agents.models.base import ChatRequest, EngineError
from agents.models.vllm_engine import (
    VLLM_MISSING,
    VLLMEngine,
    merge_results,
    result_from_output,
    sampling_kwargs,
)

HI = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}


def sample(text: str, tokens: int, finish: str | None = "stop", index: int = 0) -> SimpleNamespace:
    return SimpleNamespace(
        index=index, text=text, token_ids=list(range(tokens)), finish_reason=finish
    )


# ---------------------------------------------------------------------- pure mapping


def test_sampling_kwargs_for_all_samples() -> None:
    request = ChatRequest(
        messages=HI, n=4, temperature=0.8, top_p=0.95, max_tokens=32, stop=("###",), seed=11
    )
    assert sampling_kwargs(request) == {
        "n": 4,
        "temperature": 0.8,
        "top_p": 0.95,
        "max_tokens": 32,
        "stop": ["###"],
        "seed": 11,
    }


def test_sampling_kwargs_for_one_sample_offsets_the_seed() -> None:
    seeded = ChatRequest(messages=HI, n=4, seed=11)
    assert sampling_kwargs(seeded, 2)["seed"] == 13
    assert sampling_kwargs(seeded, 2)["n"] == 1
    unseeded = ChatRequest(messages=HI, n=4)
    assert sampling_kwargs(unseeded, 2)["seed"] is None
    assert sampling_kwargs(unseeded)["stop"] == []


def test_result_from_output_maps_texts_tokens_and_finish_reasons() -> None:
    output = SimpleNamespace(
        prompt_token_ids=[1, 2, 3, 4, 5],
        outputs=[
            sample("second", 2, "length", index=1),
            sample("first", 3, "stop", index=0),
            sample("third", 1, "abort", index=2),
        ],
    )
    result = result_from_output(output, 0.5, "vllm:m")
    assert result.texts == ["first", "second", "third"]  # ordered by sample index
    assert [c.finish_reason for c in result.completions] == ["stop", "length", "error"]
    assert [c.completion_tokens for c in result.completions] == [3, 2, 1]
    assert (result.prompt_tokens, result.completion_tokens) == (5, 6)
    assert (result.latency_s, result.model) == (0.5, "vllm:m")
    assert all(c.tool_calls is None for c in result.completions)


def test_result_from_output_parses_inline_tool_calls_only_when_asked() -> None:
    text = 'Let me add.<tool_call>{"name": "add", "arguments": {"a": 1}}</tool_call>'
    output = SimpleNamespace(prompt_token_ids=None, outputs=[sample(text, 9)])
    plain = result_from_output(output, 0.0, "s")
    assert plain.completions[0].tool_calls is None
    assert plain.completions[0].finish_reason == "stop"
    parsed = result_from_output(output, 0.0, "s", parse_tools=True).completions[0]
    assert parsed.finish_reason == "tool_calls"
    assert parsed.tool_calls is not None
    assert parsed.tool_calls[0]["function"]["name"] == "add"
    assert json.loads(parsed.tool_calls[0]["function"]["arguments"]) == {"a": 1}
    assert result_from_output(output, 0.0, "s").prompt_tokens == 0  # missing ids count as 0


def test_result_from_output_parses_tool_calls_begun_in_the_prefix() -> None:
    output = SimpleNamespace(
        prompt_token_ids=[1], outputs=[sample('"arguments": {"a": 1}}</tool_call>', 5)]
    )
    prefix = 'Let me add.<tool_call>{"name": "add", '
    parsed = result_from_output(output, 0.0, "s", parse_tools=True, prefix=prefix).completions[0]
    assert parsed.text == '"arguments": {"a": 1}}</tool_call>'  # the continuation alone
    assert parsed.finish_reason == "tool_calls"
    assert parsed.tool_calls is not None
    assert parsed.tool_calls[0]["function"]["name"] == "add"


def test_merge_results_counts_the_prompt_once() -> None:
    parts = [
        result_from_output(
            SimpleNamespace(prompt_token_ids=[1, 2], outputs=[sample(t, 2)]), 0.1, "s"
        )
        for t in ("a", "b")
    ]
    merged = merge_results(parts)
    assert merged.texts == ["a", "b"]
    assert (merged.prompt_tokens, merged.completion_tokens) == (2, 4)
    assert merged.latency_s == pytest.approx(0.2)


# ---------------------------------------------------------------------- without vLLM


def test_module_imports_and_engine_fails_clearly_without_vllm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` raise ImportError
    importlib.reload(sys.modules["agents.models.vllm_engine"])
    from agents.models import vllm_engine

    with pytest.raises(EngineError) as caught:
        vllm_engine.VLLMEngine("some/model")
    assert str(caught.value) == VLLM_MISSING


# ---------------------------------------------------------------------- over a fake vLLM


class FakeLLM:
    """Records constructor options and chat calls; answers with the seed and adapter it saw."""

    chat_template = "{{ messages }}"  # no tool_calls support: tools get folded into the prompt

    def __init__(self, model: str, **options: Any) -> None:
        self.model = model
        self.options = options
        self.calls: list[dict[str, Any]] = []

    def get_tokenizer(self) -> Any:
        return SimpleNamespace(chat_template=self.chat_template)

    def chat(
        self, conversations: list[Any], sampling_params: list[Any], **kwargs: Any
    ) -> list[Any]:
        self.calls.append({"conversations": conversations, "params": sampling_params, **kwargs})
        lora = kwargs.get("lora_request")
        outputs = []
        for params in sampling_params:
            tag = f"seed={params.seed} lora={lora.lora_int_id if lora else None}"
            outputs.append(
                SimpleNamespace(
                    prompt_token_ids=[0] * 4,
                    outputs=[sample(f"{tag} #{k}", 2, index=k) for k in range(params.n)],
                )
            )
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kw: SimpleNamespace(**kw)  # type: ignore[attr-defined]
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda name, lora_id, path: SimpleNamespace(  # type: ignore[attr-defined]
        lora_name=name, lora_int_id=lora_id, lora_path=path
    )
    monkeypatch.setitem(sys.modules, "vllm", module)
    monkeypatch.setitem(sys.modules, "vllm.lora", lora)
    monkeypatch.setitem(sys.modules, "vllm.lora.request", request)
    return module


def make_adapter(path: Path, weights: bytes = b"w1") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_bytes(weights)
    return path


def test_engine_passes_lora_options_to_vllm(fake_vllm: types.ModuleType) -> None:
    engine = VLLMEngine("org/model", max_model_len=2048, tensor_parallel_size=2)
    assert engine.llm.model == "org/model"
    assert engine.llm.options["enable_lora"] is True
    assert engine.llm.options["max_model_len"] == 2048
    assert engine.llm.options["tensor_parallel_size"] == 2
    assert engine.spec == "vllm:org/model" and engine.fingerprint == engine.spec
    plain = VLLMEngine("org/model", enable_lora=False)
    assert "enable_lora" not in plain.llm.options
    with pytest.raises(EngineError, match="enable_lora=False"):
        plain.set_adapter("/anywhere")


def test_seeded_samples_are_expanded_and_unseeded_use_native_n(
    fake_vllm: types.ModuleType,
) -> None:
    engine = VLLMEngine("m")
    seeded, unseeded = engine.generate(
        [ChatRequest(messages=HI, n=3, seed=5), ChatRequest(messages=HI, n=2)]
    )
    (call,) = engine.llm.calls  # one batched chat call for everything
    assert [(p.n, p.seed) for p in call["params"]] == [(1, 5), (1, 6), (1, 7), (2, None)]
    assert seeded.texts == ["seed=5 lora=None #0", "seed=6 lora=None #0", "seed=7 lora=None #0"]
    assert seeded.prompt_tokens == 4 and seeded.completion_tokens == 6
    assert unseeded.texts == ["seed=None lora=None #0", "seed=None lora=None #1"]


def test_tools_are_folded_into_the_prompt_when_the_template_lacks_them(
    fake_vllm: types.ModuleType,
) -> None:
    engine = VLLMEngine("m")
    engine.generate([ChatRequest(messages=HI, tools=[TOOL]), ChatRequest(messages=HI)])
    (call,) = engine.llm.calls
    assert "tools" not in call
    with_tools, without = call["conversations"]
    assert with_tools[0]["role"] == "system" and "add" in with_tools[0]["content"]
    assert without == HI


def test_native_tool_templates_get_one_chat_call_per_tool_list(
    fake_vllm: types.ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(FakeLLM, "chat_template", "{% if message.tool_calls %}{% endif %}")
    engine = VLLMEngine("m")
    results = engine.generate(
        [
            ChatRequest(messages=HI, tools=[TOOL], seed=1),
            ChatRequest(messages=HI, seed=2),
            ChatRequest(messages=HI, tools=[TOOL], seed=3),
        ]
    )
    assert [r.text for r in results] == [f"seed={s} lora=None #0" for s in (1, 2, 3)]
    calls = engine.llm.calls
    assert len(calls) == 2
    assert {json.dumps(c.get("tools")) for c in calls} == {json.dumps([TOOL]), "null"}
    tooled = next(c for c in calls if "tools" in c)
    assert [p.seed for p in tooled["params"]] == [1, 3]


def test_prefixed_requests_continue_a_final_assistant_message(
    fake_vllm: types.ModuleType,
) -> None:
    engine = VLLMEngine("m")
    results = engine.generate(
        [
            ChatRequest(messages=HI, seed=1, prefix="Thought: "),
            ChatRequest(messages=HI, seed=2),
            ChatRequest(messages=HI, n=2, seed=3, prefix="Thought: "),
        ]
    )
    assert [r.texts for r in results] == [
        ["seed=1 lora=None #0"],
        ["seed=2 lora=None #0"],
        ["seed=3 lora=None #0", "seed=4 lora=None #0"],
    ]
    calls = engine.llm.calls
    assert len(calls) == 2, "prefixed and plain conversations need separate chat calls"
    prefixed = next(c for c in calls if c.get("continue_final_message"))
    plain = next(c for c in calls if not c.get("continue_final_message"))
    assert prefixed["add_generation_prompt"] is False
    assert [p.seed for p in prefixed["params"]] == [1, 3, 4]
    assert all(
        conv == [*HI, {"role": "assistant", "content": "Thought: "}]
        for conv in prefixed["conversations"]
    )
    assert "add_generation_prompt" not in plain and "continue_final_message" not in plain
    assert plain["conversations"] == [HI]


def test_adapters_get_stable_ids_and_change_the_fingerprint(
    fake_vllm: types.ModuleType, tmp_path: Path
) -> None:
    first = make_adapter(tmp_path / "a")
    second = make_adapter(tmp_path / "b", b"w2")
    engine = VLLMEngine("m", adapter=first)
    assert str(first.resolve()) in engine.fingerprint

    def lora_used() -> Any:
        engine.generate([ChatRequest(messages=HI)])
        return engine.llm.calls[-1]["lora_request"]

    assert (lora_used().lora_int_id, lora_used().lora_path) == (1, str(first.resolve()))
    fingerprint_a = engine.fingerprint
    engine.set_adapter(second)
    assert lora_used().lora_int_id == 2
    assert engine.fingerprint != fingerprint_a
    engine.set_adapter(first)
    assert lora_used().lora_int_id == 1  # the same adapter keeps its id
    assert engine.fingerprint == fingerprint_a
    make_adapter(first, b"retrained")
    engine.set_adapter(first)
    assert lora_used().lora_int_id == 3  # new weights at the same path: vLLM must reload them
    assert engine.fingerprint != fingerprint_a
    engine.set_adapter(None)
    assert lora_used() is None and engine.fingerprint == engine.spec


def test_set_adapter_rejects_a_non_adapter_directory(
    fake_vllm: types.ModuleType, tmp_path: Path
) -> None:
    engine = VLLMEngine("m")
    with pytest.raises(EngineError, match="not a PEFT adapter directory"):
        engine.set_adapter(tmp_path)

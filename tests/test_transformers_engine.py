"""TransformersEngine on a tiny random Llama: batching, samples, limits, stops, adapters, specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.models import load_engine
from agents.models.base import ChatRequest, EngineError
from agents.models.transformers_engine import TransformersEngine, cpu_has_native_bf16

PROMPTS = [
    "hi",
    "What is two plus two? Please answer in detail, showing every step of the sum.",
    "Tell me a short story about a cat and a dog.",
]


def ask(text: str, **params: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **params)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def engine(lively_model_dir: Path) -> TransformersEngine:
    return TransformersEngine(lively_model_dir, spec="tiny", device="cpu", batch_size=8)


def make_adapter(model_dir: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter for the model whose B matrices are non-zero, so it changes outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "up_proj"])
    peft_model = get_peft_model(base, config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:  # zero at init: a fresh adapter would be a no-op
                parameter.normal_(0.0, 0.5, generator=generator)
    peft_model.save_pretrained(out)
    return out


# ---------------------------------------------------------------------------- batching


def test_batched_greedy_equals_one_at_a_time(engine: TransformersEngine) -> None:
    requests = [ask(p, max_tokens=16) for p in PROMPTS]
    lengths = {len(engine.tokenizer(engine.render_prompt(r))["input_ids"]) for r in requests}
    assert len(lengths) == len(PROMPTS), "prompts must differ in length to exercise padding"

    batched = engine.generate(requests)
    single = [engine.generate([r])[0] for r in requests]

    assert [r.text for r in batched] == [r.text for r in single]
    assert [r.completion_tokens for r in batched] == [r.completion_tokens for r in single]
    assert [r.prompt_tokens for r in batched] == [r.prompt_tokens for r in single]
    assert len({r.text for r in batched}) == len(PROMPTS), "outputs should depend on the prompt"


def test_batched_greedy_survives_small_batch_size(lively_model_dir: Path) -> None:
    """Rows split across several generate() calls come back in request order."""
    small = TransformersEngine(lively_model_dir, spec="tiny", device="cpu", batch_size=2)
    big = TransformersEngine(lively_model_dir, spec="tiny", device="cpu", batch_size=16)
    requests = [ask(p, max_tokens=8) for p in PROMPTS + PROMPTS[::-1]]
    assert [r.text for r in small.generate(requests)] == [r.text for r in big.generate(requests)]


def test_n_samples_per_request_and_token_counts(engine: TransformersEngine) -> None:
    requests = [
        ask(PROMPTS[0], n=3, temperature=0.9, max_tokens=10, seed=1),
        ask(PROMPTS[1], n=1, temperature=0.9, max_tokens=6, seed=2),
        ask(PROMPTS[2], n=4, temperature=0.9, max_tokens=8, seed=3),
    ]
    results = engine.generate(requests)

    assert [len(r.completions) for r in results] == [3, 1, 4]
    for request, result in zip(requests, results, strict=True):
        assert result.completion_tokens == sum(c.completion_tokens for c in result.completions)
        assert all(0 < c.completion_tokens <= request.max_tokens for c in result.completions)
        assert result.prompt_tokens > 0
        assert result.model == "tiny"
    # Sampled rows of one prompt are independent draws, not copies of one row.
    assert len(set(results[2].texts)) > 1


def test_max_tokens_respected_per_request_in_one_batch(engine: TransformersEngine) -> None:
    limits = [3, 9, 5]
    requests = [ask(p, max_tokens=m) for p, m in zip(PROMPTS, limits, strict=True)]
    results = engine.generate(requests)  # one greedy group, generated together up to 9 tokens

    for limit, result in zip(limits, results, strict=True):
        completion = result.completions[0]
        assert completion.finish_reason == "length"
        assert completion.completion_tokens == limit
        assert result.completion_tokens == limit
    # Each row is cut at its own limit, exactly as if it had been generated alone.
    assert [r.text for r in results] == [engine.generate([r])[0].text for r in requests]
    longer = engine.generate([ask(PROMPTS[0], max_tokens=9)])[0].text
    assert longer.startswith(results[0].text) and len(longer) > len(results[0].text)


def test_stop_string_cuts_text(engine: TransformersEngine) -> None:
    free = engine.generate([ask(PROMPTS[1], max_tokens=24)])[0].text
    # A stop string taken from the middle of the greedy output, at its first occurrence.
    start = next(
        i
        for i in range(4, len(free) - 3)
        if free[i : i + 3].strip() and free.find(free[i : i + 3]) == i
    )
    stop = free[start : start + 3]

    stopped = engine.generate([ask(PROMPTS[1], max_tokens=24, stop=(stop,))])[0]
    completion = stopped.completions[0]
    assert completion.text == free[:start]
    assert stop not in completion.text
    assert completion.finish_reason == "stop"
    assert completion.completion_tokens < 24


def test_stop_strings_apply_only_to_their_request(engine: TransformersEngine) -> None:
    free = engine.generate([ask(PROMPTS[2], max_tokens=16)])[0].text
    stop = free[2:4]
    results = engine.generate(
        [ask(PROMPTS[2], max_tokens=16, stop=(stop,)), ask(PROMPTS[2], max_tokens=16)]
    )
    assert results[0].text == free[: free.find(stop)]
    assert results[1].text == free


# ---------------------------------------------------------------------------- prefix


def greedy_prefix(engine: TransformersEngine, request: ChatRequest, tokens: int) -> str:
    """The text of the first ``tokens`` tokens of the greedy reply to ``request``.

    Checked to tokenize back to those same tokens after the prompt, so a model continuing it is
    in the state greedy decoding was in after generating them.
    """
    free = engine.generate([request])[0].text
    prompt = engine.render_prompt(request)
    prompt_ids = engine.tokenizer(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = engine.tokenizer(prompt + free, add_special_tokens=False)["input_ids"]
    generated = reply_ids[len(prompt_ids) :]
    prefix = engine.tokenizer.decode(generated[:tokens])
    assert reply_ids[: len(prompt_ids)] == prompt_ids
    assert engine.tokenizer(prompt + prefix, add_special_tokens=False)["input_ids"] == (
        prompt_ids + generated[:tokens]
    )
    return prefix


def test_prefix_is_continued_and_left_out_of_the_completion(engine: TransformersEngine) -> None:
    request = ask(PROMPTS[1], max_tokens=16)
    free = engine.generate([request])[0]
    prefix = greedy_prefix(engine, request, 3)
    prefixed = ask(PROMPTS[1], max_tokens=13, prefix=prefix)

    assert engine.render_prompt(prefixed) == engine.render_prompt(request) + prefix
    result = engine.generate([prefixed])[0]
    # Greedy decoding continues where it would have been after the prefix's tokens.
    assert prefix + result.text == free.text
    assert not result.text.startswith(prefix)
    assert result.prompt_tokens == free.prompt_tokens + 3
    assert result.completions[0].completion_tokens == 13
    # A prefixed request batched with unprefixed ones answers as it does alone.
    mixed = engine.generate([request, prefixed, ask(PROMPTS[0], max_tokens=5, prefix="")])
    assert [mixed[0].text, mixed[1].text] == [free.text, result.text]


def test_stop_strings_match_the_continuation_only(engine: TransformersEngine) -> None:
    request = ask(PROMPTS[1], max_tokens=16)
    free = engine.generate([request])[0].text
    prefix = greedy_prefix(engine, request, 3)
    continuation = free[len(prefix) :]
    assert len(prefix) >= 3 and len(continuation) >= 10

    # A stop string that begins in the prefix and ends in the continuation does not stop it.
    straddling = prefix[-2:] + continuation[:2]
    assert straddling not in continuation
    kept = engine.generate([ask(PROMPTS[1], max_tokens=13, prefix=prefix, stop=(straddling,))])
    assert kept[0].text == continuation
    assert kept[0].completions[0].finish_reason == "length"

    # One inside the continuation cuts it there.
    start = next(
        i
        for i in range(3, len(continuation) - 3)
        if continuation[i : i + 3].strip() and continuation.find(continuation[i : i + 3]) == i
    )
    stop = continuation[start : start + 3]
    cut = engine.generate([ask(PROMPTS[1], max_tokens=13, prefix=prefix, stop=(stop,))])[0]
    assert cut.text == continuation[:start]
    assert cut.completions[0].finish_reason == "stop"
    assert cut.completions[0].completion_tokens < 13


def test_tool_calls_are_parsed_from_prefix_and_continuation(engine: TransformersEngine) -> None:
    schema = {"type": "function", "function": {"name": "calculator", "parameters": {}}}
    call = '<tool_call>{"name": "calculator", "arguments": {"expression": "3*7"}}</tool_call>'
    result = engine.generate([ask("What is 3*7?", max_tokens=4, tools=[schema], prefix=call)])
    completion = result[0].completions[0]
    assert "calculator" not in completion.text
    assert completion.finish_reason == "tool_calls"
    assert completion.tool_calls is not None
    assert completion.tool_calls[0]["function"]["name"] == "calculator"
    assert json.loads(completion.tool_calls[0]["function"]["arguments"]) == {"expression": "3*7"}


# ---------------------------------------------------------------------------- adapters


def test_set_adapter_changes_output_and_fingerprint(lively_model_dir: Path, tmp_path: Path) -> None:
    adapter_a = make_adapter(lively_model_dir, tmp_path / "a", seed=1)
    adapter_b = make_adapter(lively_model_dir, tmp_path / "b", seed=2)
    engine = TransformersEngine(lively_model_dir, spec="tiny", device="cpu", dtype="float32")
    request = ask(PROMPTS[1], max_tokens=12)
    base_text, base_fingerprint = engine.generate([request])[0].text, engine.fingerprint
    assert base_fingerprint == "tiny"

    engine.set_adapter(adapter_a)
    text_a, fingerprint_a = engine.generate([request])[0].text, engine.fingerprint
    assert text_a != base_text
    assert fingerprint_a != base_fingerprint and fingerprint_a.startswith("tiny+lora:")
    assert engine.adapter == adapter_a

    # Swapping adapters on the live engine replaces the first one rather than stacking on it.
    engine.set_adapter(adapter_b)
    text_b, fingerprint_b = engine.generate([request])[0].text, engine.fingerprint
    assert fingerprint_b not in (base_fingerprint, fingerprint_a)
    fresh_b = TransformersEngine(
        lively_model_dir, spec="tiny", device="cpu", adapter=adapter_b, dtype="float32"
    )
    assert fresh_b.generate([request])[0].text == text_b
    assert fresh_b.fingerprint == fingerprint_b

    engine.set_adapter(None)
    assert engine.generate([request])[0].text == base_text
    assert engine.fingerprint == base_fingerprint
    assert engine.adapter is None


def test_same_adapter_path_retrained_gets_new_fingerprint(
    lively_model_dir: Path, tmp_path: Path
) -> None:
    engine = TransformersEngine(lively_model_dir, spec="tiny", device="cpu", dtype="float32")
    engine.set_adapter(make_adapter(lively_model_dir, tmp_path / "adapter", seed=1))
    first = engine.fingerprint
    engine.set_adapter(make_adapter(lively_model_dir, tmp_path / "adapter", seed=7))
    assert engine.fingerprint != first


def test_invalid_adapter_dir_raises_engine_error(
    engine: TransformersEngine, tmp_path: Path
) -> None:
    (tmp_path / "weights.bin").write_bytes(b"not an adapter")
    with pytest.raises(EngineError, match="adapter"):
        engine.set_adapter(tmp_path)
    with pytest.raises(EngineError, match="adapter"):
        engine.set_adapter(tmp_path / "does-not-exist")
    assert engine.adapter is None and engine.fingerprint.split("@")[0] == "tiny"


@pytest.mark.parametrize("config_text", ["not json", '{"peft_type": "LORA", "r": 4}'])
def test_broken_adapter_dir_raises_engine_error(
    lively_model_dir: Path, tmp_path: Path, config_text: str
) -> None:
    """A config that does not parse, or a config with no weights beside it."""
    engine = TransformersEngine(lively_model_dir, spec="tiny", device="cpu", dtype="float32")
    (tmp_path / "adapter_config.json").write_text(config_text)
    with pytest.raises(EngineError, match="adapter"):
        engine.set_adapter(tmp_path)
    assert engine.adapter is None and engine.fingerprint == "tiny"


def test_adapter_option_of_load_engine(lively_model_dir: Path, tmp_path: Path) -> None:
    adapter = make_adapter(lively_model_dir, tmp_path / "adapter", seed=3)
    loaded = load_engine(str(lively_model_dir), adapter=adapter, device="cpu", dtype="float32")
    assert isinstance(loaded, TransformersEngine)
    assert loaded.fingerprint.startswith(f"{lively_model_dir}+lora:")


# ---------------------------------------------------------------------------- specs


def test_load_engine_from_directory(lively_model_dir: Path) -> None:
    loaded = load_engine(str(lively_model_dir), device="cpu", batch_size=4)
    assert isinstance(loaded, TransformersEngine)
    assert loaded.spec == str(lively_model_dir) and loaded.batch_size == 4
    assert loaded.generate([ask("hi", max_tokens=2)])[0].completions[0].completion_tokens > 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no-such-model-anywhere", "unknown model"),
        ("/definitely/missing/model/dir", "no such directory"),
        ("builtin:not-a-real-model", "unknown built-in model"),
    ],
)
def test_load_engine_bad_spec_is_a_clear_error(spec: str, message: str) -> None:
    with pytest.raises(EngineError, match=message) as info:
        load_engine(spec)
    text = str(info.value)
    assert "\n" not in text and spec.split(":")[-1] in text


def test_load_engine_hub_id_not_in_local_cache() -> None:
    with pytest.raises(EngineError, match="hf:nobody/no-such-model is not in the local Hugging"):
        load_engine("hf:nobody/no-such-model")  # offline: the local HF cache is all there is


def test_load_engine_directory_without_model(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="cannot load a model"):
        load_engine(str(tmp_path))


# ---------------------------------------------------------------------------- tools


def test_tool_schemas_go_into_prompt_without_template_support(engine: TransformersEngine) -> None:
    assert "tool_calls" not in (engine.tokenizer.chat_template or "")
    schema = {
        "type": "function",
        "function": {
            "name": "calculator",
            "description": "Evaluate an arithmetic expression.",
            "parameters": {
                "type": "object",
                "properties": {"expression": {"type": "string"}},
                "required": ["expression"],
            },
        },
    }
    with_tools = engine.render_prompt(ask("What is 3*7?", tools=[schema]))
    without = engine.render_prompt(ask("What is 3*7?"))

    assert "You can call these tools" in with_tools
    assert json.dumps(schema, ensure_ascii=False) in with_tools
    assert "<tool_call>" in with_tools
    assert "calculator" not in without
    # The instruction lives in the system turn, ahead of the user's question.
    assert with_tools.index("calculator") < with_tools.index("What is 3*7?")


def test_tool_calls_in_history_render_as_text(engine: TransformersEngine) -> None:
    messages = [
        {"role": "user", "content": "What is 3*7?"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": "call_0",
                    "type": "function",
                    "function": {"name": "calculator", "arguments": '{"expression": "3*7"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_0", "content": "21"},
    ]
    prompt = engine.render_prompt(ChatRequest(messages=messages))
    assert (
        '<tool_call>{"name": "calculator", "arguments": {"expression": "3*7"}}</tool_call>'
        in prompt
    )
    assert "<tool_response>21</tool_response>" in prompt


def test_each_dtype_keeps_its_own_fingerprint(lively_model_dir: Path) -> None:
    import torch

    plain = load_engine(str(lively_model_dir), dtype="float32")
    half = load_engine(str(lively_model_dir), dtype="bfloat16")
    assert half.model.dtype == torch.bfloat16 and plain.model.dtype == torch.float32
    assert half.fingerprint == plain.fingerprint + "@bfloat16"  # cached replies never mix
    (result,) = half.generate([ask("hi", max_tokens=4)])
    assert result.completion_tokens == 4
    default = load_engine(str(lively_model_dir))  # the faster one for this CPU
    expected = torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    assert default.model.dtype == expected
    assert default.fingerprint == (half if expected == torch.bfloat16 else plain).fingerprint
    with pytest.raises(EngineError, match="unknown dtype 'fp8'"):
        load_engine(str(lively_model_dir), dtype="fp8")


def test_closing_an_engine_twice_is_harmless(lively_model_dir: Path) -> None:
    engine = load_engine(str(lively_model_dir))
    engine.close()
    engine.close()  # two roles (the teacher and the simulated user) share one engine


def test_a_shared_prompt_prefix_is_computed_once_and_changes_no_reply(
    lively_model_dir: Path,
) -> None:
    plain = load_engine(str(lively_model_dir))
    shared = load_engine(str(lively_model_dir), share_prefix=True)
    system = "You are a careful assistant of a film recommender. " * 12
    requests = [
        ChatRequest(
            messages=[
                {"role": "system", "content": system},
                {"role": "user", "content": question},
            ],
            max_tokens=12,
            prefix=prefix,
            stop=stop,
        )
        # one batch per kind (plain; continuing a prefix; a prefix and a stop string), each of
        # rows of different lengths
        for prefix, stop in [(None, ()), ('{"positive": ', ()), ('{"positive": ', ("}",))]
        for question in ["hi", "a crime film from the nineties, please, not too long"]
    ]
    ids = [
        shared.tokenizer(shared.render_prompt(r), add_special_tokens=False)["input_ids"]
        for r in requests
    ]
    assert shared._shared_prefix(ids) >= shared.MIN_SHARED_PREFIX  # the shared path runs
    assert plain._shared_prefix(ids) == 0
    assert [r.text for r in shared.generate(requests)] == [r.text for r in plain.generate(requests)]


def test_stream_yields_the_reply_generate_gives_token_by_token(engine: TransformersEngine) -> None:
    greedy = ask("Stream me a reply, please.", max_tokens=24)
    whole = engine.generate([greedy])[0].text
    pieces = list(engine.stream(greedy))
    assert "".join(pieces) == whole and len(pieces) > 3  # it came in pieces, as generated
    sampled = ask("Another one.", max_tokens=16, temperature=0.9, seed=5)
    assert "".join(engine.stream(sampled)) == engine.generate([sampled])[0].text  # same seed


def test_stream_ends_where_a_stop_string_begins(engine: TransformersEngine) -> None:
    whole = engine.generate([ask("Stop somewhere.", max_tokens=24)])[0].text
    stop = whole[len(whole) // 2 : len(whole) // 2 + 3]
    request = ask("Stop somewhere.", max_tokens=24, stop=(stop,))
    streamed = "".join(engine.stream(request))
    assert streamed == engine.generate([request])[0].text == whole[: whole.find(stop)]
    with pytest.raises(ValueError, match="one sample"):
        next(engine.stream(ask("two", n=2)))

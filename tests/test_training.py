"""LoRA training: assistant-only masks, SFT, weighted SFT, DPO, merging, continuing an adapter.

Everything runs on the random 2-layer ``tiny_model_dir`` (seconds per test) except the one
``builtin`` test on the real SmolLM2.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from training_data import word_preference_pairs

from agents.datasets import preference_records_from, sft_records_from, weighted_records
from agents.models.chat_format import prepare_messages
from agents.store import PreferencePair, Trajectory
from agents.training import (
    DPOSettings,
    LoraSettings,
    SFTSettings,
    TrainSettings,
    WeightedSFTTrainer,
    build_dpo_trainer,
    build_sft_trainer,
    load_tokenizer,
    merge_adapter,
    prepare_pairs,
    tokenize_conversation,
    train_dpo,
    train_sft,
)
from agents.training.common import pass_shape

TOOL_CONVERSATION = [
    {"role": "system", "content": "You solve problems with tools."},
    {"role": "user", "content": "What is 17 * 23?"},
    {
        "role": "assistant",
        "content": "I will compute it.",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "python", "arguments": '{"code": "print(17 * 23)"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "content": "391"},
    {"role": "assistant", "content": "The answer is 391."},
]

WORDS = ["apple", "river", "candle", "violet"]


def _echo(word: str) -> dict:
    return {
        "messages": [
            {"role": "user", "content": f"Repeat the word {word} three times."},
            {"role": "assistant", "content": f"{word} {word} {word}"},
        ]
    }


def _lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" in n}


def _assistant_nll(model: torch.nn.Module, tokenizer, record: dict) -> float:
    """Token-mean NLL of a record's assistant tokens."""
    enc = tokenize_conversation(tokenizer, record["messages"], max_length=128)
    ids = torch.tensor([enc["input_ids"]])
    labels = ids.masked_fill(torch.tensor([enc["assistant_masks"]]) == 0, -100)
    with torch.no_grad():
        return float(model(input_ids=ids, labels=labels).loss)


@pytest.fixture(scope="module")
def sft_adapter(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A small trained adapter shared by the merge and continuation tests."""
    out = tmp_path_factory.mktemp("sft-adapter")
    settings = SFTSettings(max_steps=8, learning_rate=1e-2, max_length=128, batch_size=4)
    return train_sft(tiny_model_dir, [_echo(w) for w in WORDS], out, settings, progress=False)


# --- assistant-only mask ------------------------------------------------------------------------


def test_assistant_mask_covers_exactly_the_assistant_turns(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    enc = tokenize_conversation(tokenizer, TOOL_CONVERSATION, max_length=512)
    kept = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
    assert tokenizer.decode(kept) == (
        'I will compute it.\n<tool_call>{"name": "python", "arguments": {"code": "print(17 * 23)"}}'
        "</tool_call><|im_end|>The answer is 391.<|im_end|>"
    )
    masked = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if not m]
    masked_text = tokenizer.decode(masked)
    for context in (
        "What is 17 * 23?",
        "<tool_response>391</tool_response>",
        "<|im_start|>assistant",
    ):
        assert context in masked_text


def test_tokenized_ids_match_the_inference_rendering(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    enc = tokenize_conversation(tokenizer, TOOL_CONVERSATION, max_length=512)
    prepared = prepare_messages(TOOL_CONVERSATION, tokenizer.chat_template)
    rendered = tokenizer.apply_chat_template(prepared, tokenize=True, return_dict=True)
    assert enc["input_ids"] == list(rendered["input_ids"])
    assert len(enc["attention_mask"]) == len(enc["assistant_masks"]) == len(enc["input_ids"])


def test_tokenize_conversation_truncates_to_max_length(tokenizer_dir: Path) -> None:
    tokenizer = load_tokenizer(tokenizer_dir)
    full = tokenize_conversation(tokenizer, TOOL_CONVERSATION, max_length=512)
    cut = tokenize_conversation(tokenizer, TOOL_CONVERSATION, max_length=40)
    assert len(cut["input_ids"]) == 40
    assert cut["input_ids"] == full["input_ids"][:40]
    assert cut["assistant_masks"] == full["assistant_masks"][:40]


def test_sft_labels_are_the_assistant_tokens(tiny_model_dir: Path, tmp_path: Path) -> None:
    records = [{"messages": TOOL_CONVERSATION}, _echo("apple")]
    trainer = build_sft_trainer(tiny_model_dir, records, tmp_path, progress=False)
    tokenizer = trainer.processing_class
    for record, row in zip(records, trainer.train_dataset, strict=True):
        enc = tokenize_conversation(tokenizer, record["messages"])
        expected = [
            t if m else -100 for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True)
        ]
        assert row["input_ids"] == enc["input_ids"]
        assert row["labels"] == expected


def test_stored_trajectories_become_rows_the_sft_trainer_takes(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A training stage's input: a stored trajectory with a worked example in its prompt and tool
    call arguments as an object; the example carries no loss and the arguments render as JSON."""
    demo = [
        {"role": "system", "content": "You solve problems with tools."},
        {"role": "user", "content": "Example: what is 1 + 1?"},
        {"role": "assistant", "content": "It is 2."},
    ]
    call = TOOL_CONVERSATION[2]["tool_calls"][0]
    as_object = {**call, "function": {"name": "python", "arguments": {"code": "print(17 * 23)"}}}
    messages = [*demo, TOOL_CONVERSATION[1], {**TOOL_CONVERSATION[2], "tool_calls": [as_object]}]
    messages += TOOL_CONVERSATION[3:]
    stored = Trajectory(id=1, run_id="r", role="teacher", messages=messages)
    (record,) = sft_records_from([stored], context_messages=len(demo))
    assert record["messages"][4]["tool_calls"] == [call]
    assert record["context_messages"] == len(demo)

    trainer = build_sft_trainer(tiny_model_dir, [record], tmp_path, progress=False)
    tokenizer = trainer.processing_class
    enc = tokenize_conversation(
        tokenizer, record["messages"], max_length=1024, context_messages=len(demo)
    )
    (row,) = trainer.train_dataset
    assert row["labels"] == [
        t if m else -100 for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True)
    ]
    learned = tokenizer.decode([t for t in row["labels"] if t != -100])
    assert "It is 2." not in learned  # the worked example is context
    assert '"arguments": {"code": "print(17 * 23)"}' in learned
    assert learned.endswith("The answer is 391.<|im_end|>")


# --- settings -----------------------------------------------------------------------------------


def test_sft_and_dpo_settings_share_one_base_with_their_own_defaults() -> None:
    shared = {
        "epochs": 1,
        "max_steps": -1,
        "grad_accum": 1,
        "max_length": 1024,
        "seed": 0,
        "logging_steps": 1,
        "gradient_checkpointing": False,
        "bf16_autocast": False,
        "shuffle": True,
        "processes": 1,
        "accelerate_config": None,
        "max_pass_tokens": 1024,
    }
    assert issubclass(SFTSettings, TrainSettings) and issubclass(DPOSettings, TrainSettings)
    assert dataclasses.asdict(SFTSettings()) == {
        **shared,
        "learning_rate": 2e-4,
        "batch_size": 4,
        "warmup_ratio": 0.0,
    }
    assert dataclasses.asdict(DPOSettings()) == {
        **shared,
        "learning_rate": 5e-6,
        "batch_size": 2,
        "beta": 0.1,
        "sft_weight": 0.0,
    }


SHARED = {
    "learning_rate": 3e-3,
    "epochs": 2,
    "max_steps": 5,
    "batch_size": 3,
    "grad_accum": 2,
    "max_length": 96,
    "seed": 7,
    "logging_steps": 2,
}


def _assert_shared_args(args: Any) -> None:
    assert args.learning_rate == SHARED["learning_rate"]
    assert args.num_train_epochs == SHARED["epochs"]
    assert args.max_steps == SHARED["max_steps"]
    assert args.per_device_train_batch_size == SHARED["batch_size"]
    assert args.gradient_accumulation_steps == SHARED["grad_accum"]
    assert args.max_length == SHARED["max_length"]
    assert args.seed == SHARED["seed"]
    assert args.logging_steps == SHARED["logging_steps"]
    assert args.report_to in ([], "none", ["none"])


def test_a_large_batch_runs_as_accumulated_passes_within_the_token_cap(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    big = SFTSettings(batch_size=8, grad_accum=1, max_length=256)  # 2048 tokens a pass
    assert pass_shape(big) == (4, 2)
    assert pass_shape(dataclasses.replace(big, batch_size=6)) == (3, 2)  # a divisor that fits
    assert pass_shape(dataclasses.replace(big, max_length=2048)) == (1, 8)  # at least one row
    assert pass_shape(dataclasses.replace(big, max_pass_tokens=0)) == (8, 1)  # no cap
    assert pass_shape(DPOSettings(batch_size=4, grad_accum=2, max_length=256), 2) == (2, 4)
    with pytest.raises(ValueError, match="max_pass_tokens"):
        SFTSettings(max_pass_tokens=-1)
    trainer = build_sft_trainer(tiny_model_dir, [_echo("apple")], tmp_path, big, progress=False)
    assert trainer.args.per_device_train_batch_size == 4
    assert trainer.args.gradient_accumulation_steps == 2


def test_sft_trainer_args_come_from_the_settings(tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = SFTSettings(**SHARED, warmup_ratio=0.25)
    trainer = build_sft_trainer(
        tiny_model_dir, [_echo("apple")], tmp_path, settings, progress=False
    )
    _assert_shared_args(trainer.args)
    assert trainer.args.warmup_steps == 0.25


def test_stored_pairs_become_the_dpo_trainers_data(tiny_model_dir: Path, tmp_path: Path) -> None:
    pairs = [
        PreferencePair(
            id=k,
            run_id="r",
            prompt=[{"role": "user", "content": f"Is {w} a word?"}],
            chosen=[{"role": "assistant", "content": f"Yes, {w} is a word."}],
            rejected=[{"role": "assistant", "content": "No."}],
            meta={"kind": "sample"},
        )
        for k, w in enumerate(WORDS)
    ]
    settings = DPOSettings(**SHARED, beta=0.3)
    trainer = build_dpo_trainer(
        tiny_model_dir, preference_records_from(pairs), tmp_path, settings, progress=False
    )
    _assert_shared_args(trainer.args)
    assert trainer.args.beta == 0.3
    assert len(trainer.train_dataset) == len(WORDS)


# --- LoRA SFT -----------------------------------------------------------------------------------


def test_sft_keeps_base_weights_and_changes_the_adapter(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    settings = SFTSettings(max_steps=3, learning_rate=1e-2, max_length=128)
    trainer = build_sft_trainer(
        tiny_model_dir, [_echo(w) for w in WORDS], tmp_path, settings, progress=False
    )
    before = _lora_state(trainer.model)
    trainer.train()
    after = _lora_state(trainer.model)
    assert before and all(not torch.equal(before[n], after[n]) for n in before)

    original = load_file(str(tiny_model_dir / "model.safetensors"))
    base = dict(trainer.model.get_base_model().named_parameters())
    checked = 0
    for name, tensor in original.items():
        key = name.replace(".weight", ".base_layer.weight")
        param = base.get(key, base.get(name))
        if param is None:  # tied output head
            continue
        assert torch.equal(param.detach(), tensor), name
        checked += 1
    assert checked >= len(original) - 1


def test_sft_loss_falls_on_a_tiny_set(tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = SFTSettings(max_steps=20, learning_rate=1e-2, max_length=128, batch_size=4)
    result = train_sft(
        tiny_model_dir, [_echo(w) for w in WORDS], tmp_path, settings, progress=False
    )
    assert result.steps == 20 and len(result.losses) == 20
    # A random 2-layer model with frozen embeddings and final norm cannot get far below the
    # uniform loss (ln 49152 = 10.8), so the bar is a clear but modest drop.
    assert result.losses[-1] < result.losses[0] - 0.4
    assert result.losses[-1] < min(result.losses[:5])
    assert (tmp_path / "adapter_model.safetensors").exists()
    assert (tmp_path / "tokenizer_config.json").exists()


def test_bf16_autocast_trains_float32_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = SFTSettings(max_steps=4, learning_rate=1e-2, max_length=128, bf16_autocast=True)
    trainer = build_sft_trainer(
        tiny_model_dir, [_echo(w) for w in WORDS], tmp_path, settings, progress=False
    )
    assert trainer.args.bf16 and not trainer.args.fp16
    before = _lora_state(trainer.model)
    trainer.train()
    after = _lora_state(trainer.model)
    assert all(t.dtype == torch.float32 for t in after.values())  # autocast, not bf16 weights
    assert all(not torch.equal(before[n], after[n]) for n in before)


# --- weighted SFT -------------------------------------------------------------------------------


def _weighted_grads(trainer: WeightedSFTTrainer, rows: list[dict]) -> dict[str, torch.Tensor]:
    trainer.model.train()
    trainer.model.zero_grad()
    batch = trainer.data_collator(rows)
    trainer.compute_loss(trainer.model, batch).backward()
    return {
        n: p.grad.detach().clone()
        for n, p in trainer.model.named_parameters()
        if p.grad is not None
    }


def test_zero_weight_example_contributes_no_gradient(tiny_model_dir: Path, tmp_path: Path) -> None:
    records = weighted_records(
        [
            _echo("apple")["messages"],
            _echo("river")["messages"],
            _echo("the violet candle")["messages"],
        ],
        [1.0, 0.0, 0.0],
    )
    trainer = build_sft_trainer(
        tiny_model_dir, records, tmp_path, lora=LoraSettings(dropout=0.0), progress=False
    )
    assert isinstance(trainer, WeightedSFTTrainer)
    a, b, c = (dict(row) for row in trainer.train_dataset)
    with_b = _weighted_grads(trainer, [a, b])
    with_c = _weighted_grads(trainer, [a, c])
    alone = _weighted_grads(trainer, [a])
    assert with_b.keys() == alone.keys() and alone
    for name, grad in alone.items():
        # The loss divides by the batch size: a zero-weight companion only halves the step.
        torch.testing.assert_close(with_b[name], grad / 2, atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(with_c[name], grad / 2, atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("heavy", [0, 1])
def test_larger_weight_moves_its_loss_further(
    tiny_model_dir: Path, tmp_path: Path, heavy: int
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    pair = [_echo("apple"), _echo("violet river")]
    weights = [1.0, 0.1] if heavy == 0 else [0.1, 1.0]
    records = weighted_records([p["messages"] for p in pair], weights)
    settings = SFTSettings(max_steps=10, learning_rate=1e-2, max_length=128, batch_size=2)
    train_sft(tiny_model_dir, records, tmp_path, settings, progress=False)

    tokenizer = load_tokenizer(tiny_model_dir)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = [_assistant_nll(base, tokenizer, p) for p in pair]
    tuned = PeftModel.from_pretrained(base, str(tmp_path))
    after = [_assistant_nll(tuned, tokenizer, p) for p in pair]
    drops = [b - a for b, a in zip(before, after, strict=True)]
    assert drops[heavy] > drops[1 - heavy] > -1.0


def test_weighted_records_reject_negative_weights() -> None:
    with pytest.raises(ValueError, match="weights must be finite"):
        weighted_records([_echo("apple")["messages"]], [-0.5])


# --- DPO ----------------------------------------------------------------------------------------


def _pairs() -> list[dict]:
    return word_preference_pairs(WORDS)


def test_dpo_reward_margin_and_accuracy_rise(tiny_model_dir: Path, tmp_path: Path) -> None:
    settings = DPOSettings(max_steps=10, learning_rate=1e-2, max_length=128, batch_size=4)
    result = train_dpo(tiny_model_dir, _pairs(), tmp_path, settings, progress=False)
    margins = result.metrics["rewards/margins"]
    accuracies = result.metrics["rewards/accuracies"]
    assert len(margins) == len(accuracies) == 10
    assert margins[0] == pytest.approx(0.0, abs=1e-6)  # fresh adapter: policy == reference
    assert margins[-1] > margins[0] + 0.1
    assert accuracies[-1] > accuracies[0]
    assert result.losses[-1] < result.losses[0]


def test_dpo_with_an_sft_weight_keeps_the_chosen_answers_likely(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    """Plain DPO may lower the chosen answers' likelihood along with the rejected ones; with
    ``sft_weight`` the trainer adds TRL's NLL loss on the chosen answers (RPO), so the chosen
    log-probabilities end higher than under plain DPO with the same steps."""
    chosen_logps = {}
    for weight in (0.0, 1.0):
        settings = DPOSettings(
            max_steps=8, learning_rate=1e-2, max_length=128, batch_size=4, sft_weight=weight
        )
        result = train_dpo(
            tiny_model_dir, _pairs(), tmp_path / str(weight), settings, progress=False
        )
        chosen_logps[weight] = result.metrics["logps/chosen"][-1]
        assert result.metrics["rewards/accuracies"][-1] > 0
    assert chosen_logps[1.0] > chosen_logps[0.0]


def test_dpo_pairs_fold_tool_calls_into_text() -> None:
    pair = {
        "prompt": TOOL_CONVERSATION[:4],
        "chosen": [{"role": "assistant", "content": "The answer is 391."}],
        "rejected": "The answer is 400.",
    }
    row = prepare_pairs([pair], chat_template="{{ messages }}")[0]
    assert [m["role"] for m in row["prompt"]] == ["system", "user", "assistant", "user"]
    assert "<tool_call>" in row["prompt"][2]["content"]
    assert row["prompt"][3]["content"] == "<tool_response>391</tool_response>"
    assert row["rejected"] == [{"role": "assistant", "content": "The answer is 400."}]


def test_dpo_pairs_put_tool_schemas_in_the_system_message() -> None:
    tool = {
        "type": "function",
        "function": {"name": "python_exec", "description": "Run Python code.", "parameters": {}},
    }
    pair = {**_pairs()[0], "tools": [tool]}
    dataset = prepare_pairs([pair], chat_template="{{ messages }}")
    assert "tools" not in dataset.column_names  # the template cannot render them itself
    prompt = dataset[0]["prompt"]
    assert prompt[0]["role"] == "system" and "python_exec" in prompt[0]["content"]
    assert dataset[0]["chosen"] == [{"role": "assistant", "content": pair["chosen"]}]


def test_dpo_from_an_adapter_uses_it_as_reference(
    tiny_model_dir: Path, tmp_path: Path, sft_adapter
) -> None:
    settings = DPOSettings(max_steps=2, learning_rate=1e-3, max_length=128, batch_size=4)
    result = train_dpo(
        tiny_model_dir,
        _pairs(),
        tmp_path,
        settings,
        init_adapter=sft_adapter.adapter_dir,
        progress=False,
    )
    assert result.losses[0] == pytest.approx(0.6931, abs=1e-3)  # log 2: policy == reference
    assert not (tmp_path / "ref").exists()  # only the trained adapter is saved


# --- merge and continuation ---------------------------------------------------------------------


def test_merged_model_matches_the_adapter_model(
    tiny_model_dir: Path, tmp_path: Path, sft_adapter
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    out = merge_adapter(tiny_model_dir, sft_adapter.adapter_dir, tmp_path / "merged")
    assert (out / "model.safetensors").exists() and (out / "tokenizer_config.json").exists()
    ids = torch.tensor([[1, 4093, 198, 6004, 2, 198, 1, 520, 9531, 198]])
    merged = AutoModelForCausalLM.from_pretrained(out).eval()
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        peft_logits = (
            PeftModel.from_pretrained(base, str(sft_adapter.adapter_dir)).eval()(ids).logits
        )
        merged_logits = merged(ids).logits
    assert not torch.allclose(peft_logits, base_logits, atol=1e-3)
    torch.testing.assert_close(merged_logits, peft_logits, atol=1e-4, rtol=1e-4)


def test_init_adapter_continues_from_its_weights(
    tiny_model_dir: Path, tmp_path: Path, sft_adapter
) -> None:
    settings = SFTSettings(max_steps=1, learning_rate=1e-5, max_length=128, batch_size=4)
    result = train_sft(
        tiny_model_dir,
        [_echo(w) for w in WORDS],
        tmp_path,
        settings,
        init_adapter=sft_adapter.adapter_dir,
        progress=False,
    )
    start = load_file(str(sft_adapter.adapter_dir / "adapter_model.safetensors"))
    end = load_file(str(tmp_path / "adapter_model.safetensors"))
    assert start.keys() == end.keys()
    b_keys = [k for k in start if "lora_B" in k]
    assert b_keys and all(start[k].abs().sum() > 0 for k in b_keys)  # trained, not fresh
    for key in start:
        torch.testing.assert_close(end[key], start[key], atol=1e-4, rtol=0)
    assert any(not torch.equal(end[k], start[k]) for k in start)
    # The first loss picks up where the first run ended, far below a fresh adapter's.
    assert result.losses[0] < sft_adapter.losses[0] - 0.3


# --- the real built-in model --------------------------------------------------------------------


@pytest.mark.builtin
def test_one_sft_step_on_builtin_smollm2(tmp_path: Path) -> None:
    from agents.models.builtin import BUILTIN_MODELS

    base = BUILTIN_MODELS["smollm2-135m"].ensure_converted()
    settings = SFTSettings(max_steps=1, learning_rate=1e-3, max_length=64, batch_size=1)
    result = train_sft(base, [_echo("apple")], tmp_path, settings, progress=False)
    assert result.steps == 1
    adapter = load_file(str(tmp_path / "adapter_model.safetensors"))
    b_weights = [t for k, t in adapter.items() if "lora_B" in k]
    assert b_weights and any(t.abs().sum() > 0 for t in b_weights)  # lora_B starts at zero

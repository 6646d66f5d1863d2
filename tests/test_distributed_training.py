"""Training on two processes with accelerate (DDP over gloo, one thread each) trains like one.

With ``shuffle: false``, LoRA dropout off and examples of equal length, each optimizer step of
the two-process run sees the same four examples as the single-process run (split two and two
instead of accumulated two and two). The stated tolerance is 1% of the loss per logged step: in
DDP the logged loss is rank 0's, over its half of the step's examples (measured: 0.04% off at
step 1, before any update), and the runs then drift apart a little, since Adam's first steps
scale every gradient element to about the learning rate, so float rounding between an all-reduce
and an accumulation flips the sign of the near-zero ones (measured: 0.18% off at step 3 of 3,
where training had moved the loss by 2.6%).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training_data import word_preference_pairs

from agents.training import DPOSettings, LoraSettings, SFTSettings, train_dpo, train_sft
from agents.training.distributed import launch_command, split_step
from agents.training.sft import build_sft_trainer

LOSS_TOLERANCE = 1e-2  # relative, per logged step
# DPO's per-pair losses spread out as soon as training moves the policy, so rank 0's half of a
# step can differ from the whole step's mean by more (measured: 0.8% at step 2, 2.3% at step 3)
DPO_LOSS_TOLERANCE = 5e-2


def records() -> list[dict]:
    pairs = [(1, 2), (3, 4), (2, 5), (4, 4), (1, 7), (6, 2), (3, 3), (5, 1)]
    return [
        {
            "messages": [
                {"role": "user", "content": f"Add {a} and {b}."},
                {"role": "assistant", "content": f"The sum is {a + b}."},
            ]
        }
        for a, b in pairs
    ]


SETTINGS = SFTSettings(
    max_steps=3, batch_size=2, grad_accum=2, learning_rate=1e-2, max_length=64, shuffle=False
)
LORA = LoraSettings(r=4, alpha=8, dropout=0.0)


def test_a_step_is_shared_out_over_the_processes() -> None:
    two = dataclasses.replace(SETTINGS, processes=2)
    assert (split_step(two).grad_accum, split_step(two).batch_size) == (1, 2)
    odd = dataclasses.replace(SETTINGS, processes=2, grad_accum=1, batch_size=4)
    assert (split_step(odd).grad_accum, split_step(odd).batch_size) == (1, 2)
    with pytest.raises(ValueError, match="must divide grad_accum"):
        split_step(dataclasses.replace(SETTINGS, processes=3))
    with pytest.raises(ValueError, match="at least 1"):
        SFTSettings(processes=0)
    cmd = launch_command(2, Path("job.pkl"))
    assert cmd[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in cmd
    assert cmd[-3:] == ["-m", "agents.training.worker", "job.pkl"]
    deepspeed = launch_command(4, Path("job.pkl"), "ds.yaml")
    assert deepspeed[3:5] == ["--config_file", "ds.yaml"] and "--multi_gpu" not in deepspeed


def test_two_processes_train_like_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    one = train_sft(tiny_model_dir, records(), tmp_path / "one", SETTINGS, LORA, progress=False)
    two_settings = dataclasses.replace(SETTINGS, processes=2)
    two = train_sft(tiny_model_dir, records(), tmp_path / "two", two_settings, LORA, progress=False)
    assert one.steps == two.steps == 3 and len(two.losses) == len(one.losses) == 3
    assert two.num_examples == 8
    for single, double in zip(one.losses, two.losses, strict=True):
        assert abs(single - double) <= LOSS_TOLERANCE * abs(single), (one.losses, two.losses)
    assert one.losses[-1] < one.losses[0] and two.losses[-1] < two.losses[0]  # both trained
    a = load_file(str(tmp_path / "one" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(a[k].shape == b[k].shape for k in a)
    lora_b = [k for k in b if "lora_B" in k]
    assert lora_b and all(b[k].abs().max() > 0 for k in lora_b)  # B starts at zero: it moved
    # the two adapters' updates point the same way
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([a[k].flatten() for k in lora_b]), torch.cat([b[k].flatten() for k in lora_b]), 0
    )
    assert cosine > 0.9


def test_dpo_on_two_processes_trains_like_one(tiny_model_dir: Path, tmp_path: Path) -> None:
    """DPO's reference model is the adapter-free base in each process; the first step's loss is
    log 2 in both runs (policy == reference), the later ones within DPO's stated tolerance, and
    the two adapters move the same way."""
    settings = DPOSettings(
        max_steps=3, batch_size=2, grad_accum=2, learning_rate=1e-2, max_length=64, shuffle=False
    )
    pairs = word_preference_pairs(
        ["apple", "river", "stone", "cloud", "maple", "tiger", "piano", "lemon"]
    )
    one = train_dpo(tiny_model_dir, pairs, tmp_path / "one", settings, LORA, progress=False)
    two_settings = dataclasses.replace(settings, processes=2)
    two = train_dpo(tiny_model_dir, pairs, tmp_path / "two", two_settings, LORA, progress=False)
    assert one.steps == two.steps == 3 and two.num_examples == 8
    assert one.losses[0] == pytest.approx(0.6931, abs=1e-3) == two.losses[0]
    for single, double in zip(one.losses, two.losses, strict=True):
        assert abs(single - double) <= DPO_LOSS_TOLERANCE * abs(single), (one.losses, two.losses)
    assert two.losses[-1] < two.losses[0]  # it trained
    a = load_file(str(tmp_path / "one" / "adapter_model.safetensors"))
    b = load_file(str(tmp_path / "two" / "adapter_model.safetensors"))
    lora_b = [k for k in b if "lora_B" in k]
    cosine = torch.nn.functional.cosine_similarity(
        torch.cat([a[k].flatten() for k in lora_b]), torch.cat([b[k].flatten() for k in lora_b]), 0
    )
    assert cosine > 0.9


def test_only_rank_zero_saves_the_adapter(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agents.training.common import run_and_save

    settings = dataclasses.replace(SETTINGS, max_steps=1)
    work = tmp_path / "work"
    trainer = build_sft_trainer(tiny_model_dir, records(), work, settings, LORA, None, False)
    monkeypatch.setattr(trainer, "is_world_process_zero", lambda: False)
    result = run_and_save(trainer, trainer.processing_class, tmp_path / "rank1", 8)
    assert result.steps == 1
    assert not (tmp_path / "rank1" / "adapter_model.safetensors").exists()

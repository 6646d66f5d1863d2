"""LoRA settings, device choice and loading a base model (optionally with an adapter) for training.

Every trainer in this package fine-tunes a LoRA adapter on a frozen base model. The base model is
a local HF directory (a built-in model's converted copy, or any ``save_pretrained`` output).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import LoraConfig, PeftModel, TaskType
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from agents import threads
from agents.models.base import is_adapter_dir

log = logging.getLogger(__name__)


@dataclass
class LoraSettings:
    """Shape of the LoRA adapter.

    Attributes:
        r: Rank of the low-rank update.
        alpha: Scaling numerator; the update is scaled by ``alpha / r``.
        dropout: Dropout on the adapter's input.
        target_modules: ``"all-linear"`` (every linear layer but the output head) or a list of
            module names such as ``["q_proj", "v_proj"]``.
    """

    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: str | list[str] = "all-linear"


def lora_config(settings: LoraSettings) -> LoraConfig:
    """The PEFT config for a causal-LM LoRA adapter with these settings."""
    target = settings.target_modules
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=target if isinstance(target, str) else list(target),
        bias="none",
        task_type=TaskType.CAUSAL_LM,
    )


def device_and_dtype() -> tuple[torch.device, torch.dtype]:
    """CUDA with bfloat16 weights when a GPU is available, else CPU with float32.

    bfloat16 on CPU is slower than float32 on most machines and loses precision, so CPU training
    stays in full precision.
    """
    if torch.cuda.is_available():
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        return torch.device("cuda"), dtype
    return torch.device("cpu"), torch.float32


def load_tokenizer(model_path: str | Path) -> PreTrainedTokenizerBase:
    """The tokenizer of a model directory, with a pad token and right padding for training.

    Training collators pad on the right and mask the padding out of the loss, so a pad token equal
    to the end-of-turn token (as in SmolLM2) is harmless.
    """
    tokenizer = AutoTokenizer.from_pretrained(str(model_path))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def load_base(model_path: str | Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer, ready to be wrapped with LoRA and trained.

    Args:
        model_path: A local HF model directory.

    Returns:
        ``(model, tokenizer)``: the model on :func:`device_and_dtype`'s device and dtype, and the
        tokenizer with a pad token set and right padding.
    """
    device, dtype = device_and_dtype()
    if device.type == "cpu":
        threads.configure()
    tokenizer = load_tokenizer(model_path)
    model = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=dtype)
    model.to(device)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def load_for_training(
    base_model: str | Path, init_adapter: Path | None
) -> tuple[PreTrainedModel | PeftModel, PreTrainedTokenizerBase]:
    """The base model, wrapped with a trainable copy of ``init_adapter`` when one is given.

    Without ``init_adapter`` the plain base model is returned and the trainer adds a fresh
    adapter from the LoRA settings. With it, the adapter's own config (rank, targets) is used and
    the LoRA settings are ignored.
    """
    model, tokenizer = load_base(base_model)
    if init_adapter is None:
        return model, tokenizer
    adapter = Path(init_adapter)
    if not is_adapter_dir(adapter):
        raise FileNotFoundError(
            f"{adapter} is not a PEFT adapter directory; pass one train_sft/train_dpo wrote"
        )
    log.info("continuing training from adapter %s", adapter)
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=True), tokenizer


def trainer_precision(dtype: torch.dtype, *, autocast: bool = False) -> dict[str, Any]:
    """TrainingArguments precision flags matching the weights' dtype.

    TRL turns bf16 autocast on by default; with float32 weights it is off here unless
    ``autocast`` asks for it (on a CPU without bfloat16 instructions it only slows training
    down), so the default is set explicitly from :func:`device_and_dtype`.
    """
    flags: dict[str, Any] = {"bf16": autocast or dtype == torch.bfloat16, "fp16": False}
    if flags["bf16"] and not torch.cuda.is_available():
        flags["use_cpu"] = True  # bfloat16 autocast on CPU is opted into, not inferred
    return flags

"""LoRA supervised fine-tuning on conversations, with an assistant-only loss and optional weights.

Records are TRL conversational rows ``{"messages": [...], "tools": [...]?, "weight": float?,
"context_messages": int?}``, built and checked by :mod:`agents.datasets`. They are tokenized here
(see :mod:`agents.training.data`) into ``input_ids`` plus ``assistant_masks`` and handed to TRL's
``SFTTrainer`` pre-tokenized: TRL turns the mask into ``labels`` (``-100`` off the assistant turns)
during its own dataset preparation. TRL's ``assistant_only_loss=True`` is not used because it
needs ``{% generation %}`` markers in the chat template, which small models' templates lack.

Weighted SFT (the Socratic Generator's ``-E[U * log p]``): when records carry ``weight``, each
example's loss is its token-mean negative log-likelihood over assistant tokens, and the batch loss
is ``sum_i w_i * loss_i / batch_size``. Dividing by the number of examples, not by ``sum_i w_i``,
makes the loss an unbiased estimate of the paper's expectation: a batch of low-utility examples
moves the model less than a batch of high-utility ones, and a batch whose weights are all zero is
a zero step rather than ``0 / 0``. Without weights the plain TRL loss (token mean over the batch)
is used.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from agents.training.common import TrainResult, TrainSettings, quiet, run_and_save, trainer_kwargs
from agents.training.data import tokenize_records
from agents.training.distributed import in_worker, launch
from agents.training.lora import LoraSettings, device_and_dtype, load_for_training, lora_config

log = logging.getLogger(__name__)


@dataclass
class SFTSettings(TrainSettings):
    """Hyper-parameters of a LoRA SFT run: the shared :class:`TrainSettings` plus a warm-up.

    Attributes:
        warmup_ratio: Fraction of the steps spent warming the learning rate up (below 1).
    """

    warmup_ratio: float = 0.0


@dataclass
class _WeightCollator:
    """TRL's language-modeling collator, plus a ``weight`` tensor."""

    inner: DataCollatorForLanguageModeling

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.inner([{k: v for k, v in ex.items() if k != "weight"} for ex in examples])
        batch["weight"] = torch.tensor([float(ex["weight"]) for ex in examples])
        return batch


class WeightedSFTTrainer(SFTTrainer):
    """SFTTrainer whose loss is ``sum_i w_i * mean_token_nll_i / batch_size``.

    The per-micro-batch loss is not normalised for gradient accumulation here, so the Trainer
    divides it by the accumulation steps: the step's loss is the mean over all examples of it.
    """

    loss_is_scaled_for_ga = False

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if "weight" not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, "weight"]

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        weights = inputs.pop("weight")
        inputs["use_cache"] = False
        # TRL's fused head returns per-token log-probs (0 off the labels) without full logits.
        outputs = model(**inputs, fused_lm_head=True)
        mask = outputs.label_mask
        per_example = -outputs.log_probs.sum(dim=-1) / mask.sum(dim=-1).clamp(min=1)
        loss = (weights.to(per_example.dtype) * per_example).sum() / per_example.size(0)

        mode = "train" if self.model.training else "eval"
        correct = outputs.is_top1.sum() if outputs.is_top1 is not None else None
        if correct is not None and mask.sum() > 0:
            self._metrics[mode]["mean_token_accuracy"].append((correct / mask.sum()).item())
        return (loss, outputs) if return_outputs else loss


def _rows(records: Iterable[dict[str, Any]] | Dataset) -> list[dict[str, Any]]:
    return [dict(row) for row in records]


def build_sft_trainer(
    base_model: str | Path,
    records: list[dict[str, Any]] | Dataset,
    work_dir: Path,
    settings: SFTSettings | None = None,
    lora: LoraSettings | None = None,
    init_adapter: Path | None = None,
    progress: bool = True,
) -> SFTTrainer:
    """The configured trainer :func:`train_sft` runs (exposed to inspect its data and labels).

    Args:
        base_model: Local HF directory of the base model.
        records: Conversational rows; see the module docstring.
        work_dir: Where TRL may write its run files (no checkpoints are saved).
        settings: Hyper-parameters.
        lora: Adapter shape; ignored when ``init_adapter`` is given.
        init_adapter: An adapter directory to keep training instead of a fresh adapter.
        progress: Show progress bars.

    Returns:
        A :class:`WeightedSFTTrainer` when records carry weights, else a plain ``SFTTrainer``.
    """
    settings = settings or SFTSettings()
    lora = lora or LoraSettings()
    if not 0 <= settings.warmup_ratio < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), got {settings.warmup_ratio}")
    _, dtype = device_and_dtype()
    model, tokenizer = load_for_training(base_model, init_adapter)
    dataset = tokenize_records(tokenizer, _rows(records), settings.max_length)
    weighted = "weight" in dataset.column_names

    config = SFTConfig(
        **trainer_kwargs(settings, work_dir=work_dir, dtype=dtype, progress=progress),
        warmup_steps=settings.warmup_ratio,  # transformers 5: a float below 1 is a ratio
        dataset_num_proc=None,
    )
    common: dict[str, Any] = {
        "model": model,
        "args": config,
        "train_dataset": dataset,
        "processing_class": tokenizer,
        "peft_config": None if init_adapter is not None else lora_config(lora),
    }
    if not weighted:
        return SFTTrainer(**common)
    collator = _WeightCollator(DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id))
    return WeightedSFTTrainer(**common, data_collator=collator)


def train_sft(
    base_model: str | Path,
    records: list[dict[str, Any]] | Dataset,
    output_dir: Path,
    settings: SFTSettings | None = None,
    lora: LoraSettings | None = None,
    init_adapter: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune a LoRA adapter on conversations, with loss on assistant turns only.

    Args:
        base_model: Local HF directory of the base model (e.g. a built-in model's
            ``ensure_converted()`` path).
        records: Rows ``{"messages": [...], "tools": [...]?, "weight": float?}``. When any row has
            a weight, the weighted loss of the module docstring is used (missing weights are 1).
        output_dir: Where the adapter and tokenizer are saved.
        settings: Hyper-parameters (defaults: :class:`SFTSettings`).
        lora: Adapter shape (defaults: :class:`LoraSettings`); ignored with ``init_adapter``.
        init_adapter: Continue training this adapter (loaded trainable) instead of a fresh one.
        progress: Show progress bars.

    Returns:
        The :class:`TrainResult`; ``metrics`` holds per-step ``mean_token_accuracy`` and more.
    """
    settings = settings or SFTSettings()
    if settings.processes > 1 and not in_worker():
        return launch(
            "sft",
            settings,
            base_model=base_model,
            records=records,
            output_dir=output_dir,
            lora=lora,
            init_adapter=init_adapter,
            progress=progress,
        )
    with quiet(progress), tempfile.TemporaryDirectory(prefix="agents-sft-") as work:
        trainer = build_sft_trainer(
            base_model, records, Path(work), settings, lora, init_adapter, progress
        )
        return run_and_save(
            trainer, trainer.processing_class, Path(output_dir), len(trainer.train_dataset)
        )

"""What the SFT and DPO runners share: the result record, trainer arguments, saving, quiet mode."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch
import transformers
from peft import PeftModel
from transformers import PreTrainedTokenizerBase, Trainer
from transformers.trainer_callback import PrinterCallback

from agents.training.lora import trainer_precision

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        adapter_dir: Directory holding the trained LoRA adapter and the tokenizer.
        losses: Training loss at every logging step, in order.
        metrics: The trainer's final metrics (runtime, samples/s, mean loss) plus, for each
            per-step quantity it logged (``rewards/margins``, ``mean_token_accuracy``, ...), the
            list of its values over training.
        num_examples: Training examples after preprocessing.
        steps: Optimizer steps taken.
        seconds: Wall time of the training loop.
    """

    adapter_dir: Path
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    num_examples: int = 0
    steps: int = 0
    seconds: float = 0.0


def trainer_kwargs(
    *,
    work_dir: Path,
    learning_rate: float,
    epochs: float,
    max_steps: int,
    batch_size: int,
    grad_accum: int,
    seed: int,
    logging_steps: int,
    gradient_checkpointing: bool,
    dtype: torch.dtype,
    progress: bool,
) -> dict[str, Any]:
    """Keyword arguments common to every TRL config built here.

    Nothing is reported to an experiment tracker and no intermediate checkpoint is written: the
    runner saves the final adapter itself.
    """
    return {
        "output_dir": str(work_dir),
        "learning_rate": learning_rate,
        "num_train_epochs": epochs,
        "max_steps": max_steps,
        "per_device_train_batch_size": batch_size,
        "gradient_accumulation_steps": grad_accum,
        "seed": seed,
        "logging_steps": logging_steps,
        # transformers 5 renamed gradient checkpointing; setting the new name silences the
        # deprecation TRL's own default (gradient_checkpointing=True) would otherwise trigger.
        "activation_checkpointing": gradient_checkpointing,
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": not progress,
        "dataloader_pin_memory": torch.cuda.is_available(),
        **trainer_precision(dtype),
    }


@contextlib.contextmanager
def quiet(progress: bool) -> Iterator[None]:
    """Silence loading and dataset-preparation progress bars and info logs unless ``progress``."""
    if progress:
        yield
        return
    dataset_bars = datasets.utils.logging.is_progress_bar_enabled()
    loading_bars = transformers.utils.logging.is_progress_bar_enabled()
    verbosity = transformers.logging.get_verbosity()
    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    transformers.logging.set_verbosity_warning()
    try:
        yield
    finally:
        transformers.logging.set_verbosity(verbosity)
        if loading_bars:
            transformers.utils.logging.enable_progress_bar()
        if dataset_bars:
            datasets.enable_progress_bars()


def run_and_save(
    trainer: Trainer,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: Path,
    num_examples: int,
) -> TrainResult:
    """Train, save the ``default`` adapter and the tokenizer, and collect the logged history.

    Without progress bars the Trainer would print every log line instead; that printer is removed
    so a quiet run is quiet (the history still lands in the result).
    """
    if trainer.args.disable_tqdm:
        trainer.remove_callback(PrinterCallback)
    train_output = trainer.train()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, PeftModel):
        raise TypeError("training produced no PEFT model; nothing to save as an adapter")
    # DPO from an existing adapter adds a frozen "ref" copy; only the trained one is the result.
    model.save_pretrained(str(output_dir), selected_adapters=["default"])
    tokenizer.save_pretrained(str(output_dir))

    losses: list[float] = []
    history: dict[str, list[float]] = {}
    for entry in trainer.state.log_history:
        if "train_runtime" in entry:  # the closing summary, already in train_output.metrics
            continue
        if "loss" in entry:
            losses.append(float(entry["loss"]))
        for key, value in entry.items():
            if key in ("loss", "step", "epoch") or not isinstance(value, int | float):
                continue
            history.setdefault(key, []).append(float(value))
    metrics: dict[str, Any] = dict(train_output.metrics)
    metrics.update(history)
    result = TrainResult(
        adapter_dir=output_dir,
        losses=losses,
        metrics=metrics,
        num_examples=num_examples,
        steps=int(trainer.state.global_step),
        seconds=float(train_output.metrics.get("train_runtime", 0.0)),
    )
    log.info(
        "trained %d steps on %d examples in %.1fs; adapter saved to %s",
        result.steps,
        num_examples,
        result.seconds,
        output_dir,
    )
    return result

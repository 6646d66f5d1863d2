"""What the SFT and DPO runners share: settings, results, trainer arguments, saving, quiet mode."""

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
from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

from agents import threads
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


@dataclass
class TrainSettings:
    """Hyper-parameters every LoRA run shares; :class:`SFTSettings` and :class:`DPOSettings` add
    their own and may change the defaults.

    Attributes:
        learning_rate: Peak AdamW learning rate (linear decay to zero).
        epochs: Passes over the data; ignored when ``max_steps`` is positive.
        max_steps: Optimizer steps to take; ``-1`` trains for ``epochs``.
        batch_size: Examples per forward pass.
        grad_accum: Forward passes accumulated per optimizer step.
        max_length: Token budget per example; longer ones are cut at the end.
        seed: Seed for adapter initialisation and data order.
        logging_steps: Log (and record in :class:`TrainResult`) every this many steps.
        gradient_checkpointing: Recompute activations in the backward pass to save memory (TRL
            turns it on by default; on small models it only costs time).
        bf16_autocast: Run the forward and backward passes of float32 weights under bfloat16
            autocast. On a CPU with AVX512-BF16 a standalone LoRA step of SmolLM2-135M (4
            examples of about 1,000 tokens) took 20.5 s instead of 25.9 s, but a whole RecBot
            preset run showed no gain (433 s for 18 steps either way); off by default, since it
            also rounds the activations and so changes the trained adapter.
        shuffle: Shuffle the examples each epoch (``False``: in the given order).
        processes: Train on this many processes with accelerate (DDP; gloo on CPUs, NCCL on
            GPUs); each optimizer step's examples are shared out, so a step sees the same
            examples as in one process (:mod:`agents.training.distributed`).
        accelerate_config: An accelerate config file (``accelerate config``: DeepSpeed, FSDP,
            ...) for ``processes > 1``; plain DDP without one.
        max_pass_tokens: Cap on the tokens of one forward pass (rows x ``max_length``, both
            sequences of a DPO pair counted): a larger batch runs as more accumulation steps,
            so each optimizer step sees the same examples with a lower memory peak (SmolLM2-135M
            LoRA SFT, batch 8 x 256 tokens: 6.2 GB peak in one pass, 3.8 GB and 10% faster in
            two). ``0``: no cap.
    """

    learning_rate: float = 2e-4
    epochs: float = 1
    max_steps: int = -1
    batch_size: int = 4
    grad_accum: int = 1
    max_length: int = 1024
    seed: int = 0
    logging_steps: int = 1
    gradient_checkpointing: bool = False
    bf16_autocast: bool = False
    shuffle: bool = True
    processes: int = 1
    accelerate_config: str | None = None
    max_pass_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.processes < 1:
            raise ValueError(f"processes must be at least 1, got {self.processes}")
        if self.max_pass_tokens < 0:
            raise ValueError(f"max_pass_tokens must be 0 or more, got {self.max_pass_tokens}")


def pass_shape(settings: TrainSettings, sequences_per_row: int = 1) -> tuple[int, int]:
    """``(rows per forward pass, accumulation steps)`` for ``settings``: ``batch_size`` and
    ``grad_accum``, unless a pass would exceed ``max_pass_tokens``; then the largest divisor of
    ``batch_size`` that fits (at least 1 row), with the accumulation multiplied to match."""
    per_row = settings.max_length * sequences_per_row
    if settings.max_pass_tokens == 0 or settings.batch_size * per_row <= settings.max_pass_tokens:
        return settings.batch_size, settings.grad_accum
    fits = max(1, settings.max_pass_tokens // per_row)
    rows = max(
        d for d in range(1, min(fits, settings.batch_size) + 1) if settings.batch_size % d == 0
    )
    return rows, settings.grad_accum * (settings.batch_size // rows)


def trainer_kwargs(
    settings: TrainSettings,
    *,
    work_dir: Path,
    dtype: torch.dtype,
    progress: bool,
    sequences_per_row: int = 1,
) -> dict[str, Any]:
    """Keyword arguments of a TRL config (``SFTConfig``, ``DPOConfig``) from the shared settings.

    Nothing is reported to an experiment tracker and no intermediate checkpoint is written: the
    runner saves the final adapter itself. Method-specific settings (DPO's ``beta``, SFT's
    warm-up) are the caller's to add.

    Args:
        settings: The run's hyper-parameters; only the :class:`TrainSettings` part is read.
        work_dir: Where TRL may write its run files.
        dtype: The training dtype, which decides the mixed-precision flags.
        progress: Show progress bars.
        sequences_per_row: Sequences one example puts through the model (2 for a DPO pair).
    """
    rows, accumulation = pass_shape(settings, sequences_per_row)
    return {
        "output_dir": str(work_dir),
        "learning_rate": settings.learning_rate,
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "per_device_train_batch_size": rows,
        "gradient_accumulation_steps": accumulation,
        "max_length": settings.max_length,
        "seed": settings.seed,
        "logging_steps": settings.logging_steps,
        # transformers 5 renamed gradient checkpointing; setting the new name silences the
        # deprecation TRL's own default (gradient_checkpointing=True) would otherwise trigger.
        "activation_checkpointing": settings.gradient_checkpointing,
        "train_sampling_strategy": "random" if settings.shuffle else "sequential",
        "report_to": "none",
        "save_strategy": "no",
        "disable_tqdm": not progress,
        "dataloader_pin_memory": torch.cuda.is_available(),
        **trainer_precision(dtype, autocast=settings.bf16_autocast),
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


class StepBar(ProgressCallback):
    """The Trainer's step bar without the log dictionaries it prints between bars (``{'loss':
    ...}`` every step); those go to the log (:class:`LogSteps`) and the run's metrics."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        return None


#: Training steps, for the run's log file only (never the console: it does not propagate).
STEPS = logging.getLogger("agents.steps")
STEPS.propagate = False
STEPS.setLevel(logging.INFO)


class LogSteps(TrainerCallback):
    """Each logged training step on :data:`STEPS` (the run's log file keeps it)."""

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
        if logs:
            shown = {k: round(v, 6) if isinstance(v, float) else v for k, v in logs.items()}
            STEPS.info("step %s: %s", state.global_step, shown)


class AdaptThreads(TrainerCallback):
    """On CPU, re-measure the thread count before each step (:func:`agents.threads.adapt`)."""

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        threads.adapt()


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
    else:
        trainer.remove_callback(ProgressCallback)
        trainer.add_callback(StepBar())
    trainer.add_callback(LogSteps())
    if not torch.cuda.is_available():
        trainer.add_callback(AdaptThreads())
    train_output = trainer.train()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model = trainer.accelerator.unwrap_model(trainer.model)
    if not isinstance(model, PeftModel):
        raise TypeError("training produced no PEFT model; nothing to save as an adapter")
    if trainer.is_world_process_zero():  # one writer when several processes train
        # DPO from an existing adapter adds a frozen "ref" copy; only the trained one is the
        # result.
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

"""LoRA DPO on preference pairs (the Socratic Solver's update).

Pairs are TRL conversational rows ``{"prompt": [...messages], "chosen": [...], "rejected": [...],
"tools": [...]?}``, built and checked by :mod:`agents.datasets`. Every part is rendered through
:func:`agents.models.chat_format.prepare_messages` first, so tool calls and tool observations in
prompts or completions become the same text the student sees at inference, and tool schemas of
templates without native tool support are described in the prompt's system message. ``chosen``
and ``rejected`` may also be plain strings (a single assistant reply).

The reference policy is the one training starts from, without a second copy of the weights:

* fresh adapter: TRL computes reference log-probs with the adapter disabled, i.e. the base model;
* ``init_adapter`` (e.g. the Solver's SFT warm-up, or the previous round's adapter): TRL copies
  the loaded adapter into a frozen ``ref`` adapter and scores the reference with it, so the
  reference is the warm-started policy, not the bare base model. Only the trained ``default``
  adapter is saved.

TRL logs the implicit rewards at each step (``rewards/accuracies``: share of pairs where the chosen
reply gains more log-probability over the reference than the rejected one; ``rewards/margins``:
their mean difference, times beta); they are returned per step in ``TrainResult.metrics``.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasets import Dataset
from trl import DPOConfig, DPOTrainer

from agents.models.base import Message
from agents.models.chat_format import prepare_messages, template_supports_tools
from agents.training.common import TrainResult, TrainSettings, quiet, run_and_save, trainer_kwargs
from agents.training.distributed import in_worker, launch
from agents.training.lora import LoraSettings, device_and_dtype, load_for_training, lora_config

log = logging.getLogger(__name__)


@dataclass
class DPOSettings(TrainSettings):
    """Hyper-parameters of a LoRA DPO run: the shared :class:`TrainSettings`, DPO's defaults for
    them, and ``beta``.

    Attributes:
        beta: Strength of the KL anchor to the reference policy (Socratic-Zero: 0.05-0.2).
        sft_weight: Weight of an added negative log-likelihood loss on the chosen answers
            (TRL's ``"sft"`` loss beside ``"sigmoid"``, as in RPO); 0 for plain DPO. Plain DPO
            can lower the likelihood of both answers until a small model loses its format.
        learning_rate: Peak AdamW learning rate (Socratic-Zero: 1e-6 to 5e-6).
        epochs: Passes over the pairs; ignored when ``max_steps`` is positive.
        max_steps: Optimizer steps to take; ``-1`` trains for ``epochs``.
        batch_size: Pairs per forward pass.
        grad_accum: Forward passes accumulated per optimizer step.
        max_length: Token budget of prompt plus completion; the end is cut.
        seed: Seed for adapter initialisation and data order.
        logging_steps: Log (and record) every this many steps.
        gradient_checkpointing: Recompute activations in the backward pass to save memory.
    """

    beta: float = 0.1
    learning_rate: float = 5e-6
    batch_size: int = 2
    sft_weight: float = 0.0


def _completion(value: str | list[Message], template: str | None) -> list[Message]:
    if isinstance(value, str):
        value = [{"role": "assistant", "content": value}]
    return prepare_messages(value, template)


def prepare_pairs(pairs: Iterable[dict[str, Any]], chat_template: str | None) -> Dataset:
    """Preference pairs rendered for ``chat_template``, as a conversational TRL dataset.

    Args:
        pairs: Rows with ``prompt``, ``chosen`` and ``rejected`` (and optional ``tools``).
        chat_template: The student's chat template (decides whether tool calls are folded).

    Returns:
        A dataset with ``prompt``/``chosen``/``rejected`` message lists, plus ``tools`` as JSON
        strings (free-form schemas do not fit one Arrow type) when the template renders tools
        itself; otherwise the schemas are already in each prompt's system message.
    """
    native = template_supports_tools(chat_template)
    rows = []
    for i, pair in enumerate(pairs):
        missing = {"prompt", "chosen", "rejected"} - set(pair)
        if missing:
            raise ValueError(
                f"pair {i} lacks {sorted(missing)}; DPO pairs need prompt/chosen/rejected"
            )
        tools = pair.get("tools")
        if isinstance(tools, str):
            tools = json.loads(tools)
        rows.append(
            {
                # As at inference: without native tool support the schemas are described in the
                # system message and the template is not given them.
                "prompt": prepare_messages(pair["prompt"], chat_template, tools),
                "chosen": _completion(pair["chosen"], chat_template),
                "rejected": _completion(pair["rejected"], chat_template),
                "tools": json.dumps(tools) if native and tools else None,
            }
        )
    if not rows:
        raise ValueError("no preference pairs to train on")
    if not any(row["tools"] for row in rows):
        for row in rows:
            del row["tools"]
    return Dataset.from_list(rows)


def build_dpo_trainer(
    base_model: str | Path,
    pairs: list[dict[str, Any]] | Dataset,
    work_dir: Path,
    settings: DPOSettings | None = None,
    lora: LoraSettings | None = None,
    init_adapter: Path | None = None,
    progress: bool = True,
) -> DPOTrainer:
    """The configured trainer :func:`train_dpo` runs (exposed to inspect it).

    Args:
        base_model: Local HF directory of the base model.
        pairs: Preference rows; see the module docstring.
        work_dir: Where TRL may write its run files (no checkpoints are saved).
        settings: Hyper-parameters.
        lora: Adapter shape; ignored when ``init_adapter`` is given.
        init_adapter: An adapter directory to keep training; it is also the reference policy.
        progress: Show progress bars.
    """
    settings = settings or DPOSettings()
    lora = lora or LoraSettings()
    _, dtype = device_and_dtype()
    model, tokenizer = load_for_training(base_model, init_adapter)
    dataset = prepare_pairs(pairs, tokenizer.chat_template)
    config = DPOConfig(
        **trainer_kwargs(
            settings, work_dir=work_dir, dtype=dtype, progress=progress, sequences_per_row=2
        ),
        beta=settings.beta,
        **(
            {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, settings.sft_weight]}
            if settings.sft_weight > 0
            else {}
        ),
    )
    return DPOTrainer(
        model=model,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=None if init_adapter is not None else lora_config(lora),
    )


def train_dpo(
    base_model: str | Path,
    pairs: list[dict[str, Any]] | Dataset,
    output_dir: Path,
    settings: DPOSettings | None = None,
    lora: LoraSettings | None = None,
    init_adapter: Path | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train a LoRA adapter with DPO on preference pairs.

    Args:
        base_model: Local HF directory of the base model.
        pairs: Rows ``{"prompt": [...], "chosen": [...] | str, "rejected": [...] | str,
            "tools": [...]?}``.
        output_dir: Where the adapter and tokenizer are saved.
        settings: Hyper-parameters (defaults: :class:`DPOSettings`).
        lora: Adapter shape (defaults: :class:`LoraSettings`); ignored with ``init_adapter``.
        init_adapter: Continue training this adapter; it is then also the reference policy.
        progress: Show progress bars.

    Returns:
        The :class:`TrainResult`; ``metrics["rewards/accuracies"]`` and
        ``metrics["rewards/margins"]`` hold their value at every logging step.
    """
    rows = pairs if isinstance(pairs, Dataset) else list(pairs)
    settings = settings or DPOSettings()
    if settings.processes > 1 and not in_worker():
        return launch(
            "dpo",
            settings,
            base_model=base_model,
            pairs=[dict(row) for row in rows],
            output_dir=output_dir,
            lora=lora,
            init_adapter=init_adapter,
            progress=progress,
        )
    with quiet(progress), tempfile.TemporaryDirectory(prefix="agents-dpo-") as work:
        trainer = build_dpo_trainer(
            base_model, rows, Path(work), settings, lora, init_adapter, progress
        )
        return run_and_save(
            trainer, trainer.processing_class, Path(output_dir), len(trainer.train_dataset)
        )

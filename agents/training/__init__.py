"""LoRA training of students: SFT on trajectories, weighted SFT, DPO on pairs, and merging.

Every run fine-tunes a LoRA adapter on a frozen base model with TRL and saves only the adapter
(plus the tokenizer); :func:`merge_adapter` folds it back into plain weights when needed.
"""

from agents.training.common import TrainResult, TrainSettings
from agents.training.data import assistant_char_spans, tokenize_conversation, tokenize_records
from agents.training.dpo import DPOSettings, build_dpo_trainer, prepare_pairs, train_dpo
from agents.training.lora import (
    LoraSettings,
    device_and_dtype,
    load_base,
    load_for_training,
    load_tokenizer,
    lora_config,
)
from agents.training.merge import merge_adapter
from agents.training.sft import SFTSettings, WeightedSFTTrainer, build_sft_trainer, train_sft

__all__ = [
    "DPOSettings",
    "LoraSettings",
    "SFTSettings",
    "TrainResult",
    "TrainSettings",
    "WeightedSFTTrainer",
    "assistant_char_spans",
    "build_dpo_trainer",
    "build_sft_trainer",
    "device_and_dtype",
    "load_base",
    "load_for_training",
    "load_tokenizer",
    "lora_config",
    "merge_adapter",
    "prepare_pairs",
    "tokenize_conversation",
    "tokenize_records",
    "train_dpo",
    "train_sft",
]

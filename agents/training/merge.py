"""Folding a LoRA adapter into its base model, for engines that serve plain weights."""

from __future__ import annotations

import logging
from pathlib import Path

from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.models.base import is_adapter_dir

log = logging.getLogger(__name__)


def merge_adapter(base_model: str | Path, adapter_dir: str | Path, out_dir: str | Path) -> Path:
    """Merge ``adapter_dir`` into ``base_model`` and save a standalone model.

    The base is loaded on CPU in its stored dtype, the adapter's low-rank update is added to
    the weights (``merge_and_unload``), and the result is saved as safetensors with the tokenizer
    (the adapter's copy when it saved one, else the base model's).

    Args:
        base_model: Local HF directory of the base model the adapter was trained on.
        adapter_dir: A directory written by ``train_sft`` / ``train_dpo``.
        out_dir: Where the merged model goes; created if missing.

    Returns:
        ``out_dir``, loadable with ``AutoModelForCausalLM.from_pretrained``.
    """
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    if not is_adapter_dir(adapter_dir):
        raise FileNotFoundError(
            f"{adapter_dir} is not a PEFT adapter directory (config or weights)"
        )
    base = AutoModelForCausalLM.from_pretrained(str(base_model))
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    out_dir.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out_dir), safe_serialization=True)
    has_tokenizer = (adapter_dir / "tokenizer_config.json").exists()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir if has_tokenizer else base_model))
    tokenizer.save_pretrained(str(out_dir))
    log.info("merged %s into %s -> %s", adapter_dir, base_model, out_dir)
    return out_dir

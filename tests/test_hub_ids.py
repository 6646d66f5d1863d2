"""``hf:ORG/NAME`` specs load from the local HF cache when offline, like any hub model."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from agents.models import EngineError, load_engine, resolve_local_model
from agents.models.base import ChatRequest


def _place_in_hub_cache(model_dir: Path, repo_id: str) -> None:
    """Lay a model directory out the way huggingface_hub caches a downloaded snapshot."""
    cache = Path(os.environ["HF_HUB_CACHE"])
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / "0123456789abcdef"
    shutil.copytree(model_dir, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text("0123456789abcdef")


def test_a_cached_hub_id_loads_and_generates_offline(tiny_model_dir: Path) -> None:
    _place_in_hub_cache(tiny_model_dir, "acme/tiny-llama")
    assert resolve_local_model("hf:acme/tiny-llama") == "acme/tiny-llama"
    engine = load_engine("hf:acme/tiny-llama", device="cpu")
    result = engine.generate([ChatRequest(messages=[{"role": "user", "content": "hi"}], n=2)])[0]
    assert len(result.completions) == 2 and result.model == "hf:acme/tiny-llama"


def test_an_uncached_hub_id_is_a_clear_error_offline() -> None:
    with pytest.raises(EngineError, match="hf:acme/not-downloaded is not in the local Hugging"):
        load_engine("hf:acme/not-downloaded")

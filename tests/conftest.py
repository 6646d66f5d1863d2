"""Shared fixtures. Every test is offline; nothing here reaches a hub."""

from __future__ import annotations

import functools
import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# A private, empty HF cache: tests that load hub ids lay out their own snapshot there, and
# nothing a test does can touch the user's cache. Set before transformers is imported.
os.environ["HF_HUB_CACHE"] = tempfile.mkdtemp(prefix="agents-test-hf-cache-")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2's tokenizer, read from the packaged GGUF and saved as a plain HF tokenizer dir."""
    from transformers import AutoTokenizer

    from agents.models.builtin import BUILTIN_MODELS

    spec = BUILTIN_MODELS["smollm2-135m"]
    gguf_dir, gguf_name = spec.locate_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer Llama with SmolLM2's tokenizer: fast engine/training tests."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def lively_model_dir(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model with larger random weights.

    At the default initialisation scale the tiny model greedily repeats one token whatever the
    prompt, which would let a broken batch (wrong padding, wrong positions) pass unnoticed.
    Larger weights make greedy output depend on every prompt token.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 2:
                parameter.normal_(0.0, 0.2, generator=generator)
    out = tmp_path_factory.mktemp("lively-llama")
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def sandbox_tmp_listing() -> str:
    """Code listing what sandboxed code itself left in its /tmp, sorted.

    The sandbox's /tmp may also hold the read-only mount point of an interpreter that lives
    under the host's /tmp (a checkout there); that entry is not the code's doing.
    """
    import sys

    ours = {
        Path(p).resolve().parts[2]
        for p in (sys.prefix, sys.base_prefix)
        if Path(p).resolve().parts[1:2] == ("tmp",)
    }
    return f"import os\nsorted(set(os.listdir('/tmp')) - {ours!r})"


@functools.cache
def _backend_works(backend: str) -> bool:
    from sandbox import executor

    return executor._probe(backend)


@pytest.fixture(params=["bwrap", "unshare"])
def sandbox_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force each sandbox backend in turn: tests using it run on bubblewrap and on the fallback."""

    from sandbox import executor

    if not _backend_works(request.param):
        if os.environ.get("CI"):  # CI must show the sandbox holds on both, not skip it
            pytest.fail(f"the {request.param} sandbox backend does not work on this CI machine")
        pytest.skip(f"{request.param} cannot run code here")
    monkeypatch.setattr(executor, "isolation_backend", lambda: request.param)
    return request.param


#: A real PostgreSQL for the tests that run on both databases, e.g.
#: postgresql+psycopg://user:pass@127.0.0.1/db (``.ci/run`` starts one; its tables are reset).
POSTGRES_URL = os.environ.get("AGENTS_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL: a SQLite file, then (when one is given) the PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'agents.db'}"
    if not POSTGRES_URL:
        pytest.skip("AGENTS_TEST_POSTGRES_URL is not set")
    from sqlmodel import SQLModel

    from agents.store import Store

    store = Store(POSTGRES_URL)
    SQLModel.metadata.drop_all(store.engine)
    store.close()
    return POSTGRES_URL

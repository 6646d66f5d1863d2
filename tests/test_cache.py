"""CachedEngine: the response cache and the ledger, over a scripted engine and a real Store."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.models.base import ChatRequest, ChatResult, Completion, Engine
from agents.models.cached import CachedEngine
from agents.store import Store


class ScriptedEngine(Engine):
    """Answers deterministically from the request and the sample's seed; records every batch.

    Sample ``j`` of a request seeded ``s`` answers as if seeded ``s + j`` (what HTTP engines do),
    so a sub-request whose seed was shifted reproduces exactly the samples it stands in for.
    """

    def __init__(self, spec: str = "scripted:echo", weights: str = "v1") -> None:
        self.spec = spec
        self.weights = weights
        self.batches: list[list[ChatRequest]] = []

    @property
    def fingerprint(self) -> str:
        return f"{self.spec}@{self.weights}"

    @property
    def samples_generated(self) -> int:
        return sum(r.n for batch in self.batches for r in batch)

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        self.batches.append(list(requests))
        results = []
        for request in requests:
            question = request.messages[-1]["content"]
            completions = []
            for j in range(request.n):
                seed = None if request.seed is None else request.seed + j
                text = (
                    f"{question}|w={self.weights}|t={request.temperature}|p={request.top_p}"
                    f"|seed={seed}|j={j}"
                )
                completions.append(Completion(text=text, completion_tokens=len(text.split("|"))))
            results.append(
                ChatResult(
                    completions=completions,
                    prompt_tokens=len(question.split()),
                    completion_tokens=sum(c.completion_tokens for c in completions),
                )
            )
        return results


def ask(text: str, **params: object) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], **params)  # type: ignore[arg-type]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'agents.db'}")
    yield store
    store.close()


@pytest.fixture()
def run_id(store: Store) -> str:
    return store.create_run("test-cache", {}).id


BATCH = [
    ask("what is 2+2?", n=2, temperature=0.7, seed=10),
    ask("name a prime", n=1, temperature=0.7, seed=20),
    ask("spell cat", n=3, temperature=0.0),
]


def test_second_identical_batch_is_served_from_cache(store: Store) -> None:
    inner = ScriptedEngine()
    engine = CachedEngine(inner, store)

    first = engine.generate(BATCH)
    assert len(inner.batches) == 1 and engine.model_calls == 1
    assert engine.generated_samples == 6 and engine.cached_samples == 0
    assert not any(c.cached for r in first for c in r.completions)

    second = engine.generate(BATCH)
    assert len(inner.batches) == 1, "a fully cached batch must not reach the model"
    assert engine.model_calls == 1
    assert engine.generated_samples == 6 and engine.cached_samples == 6
    assert all(c.cached for r in second for c in r.completions)
    assert [r.texts for r in second] == [r.texts for r in first]
    assert [r.extra["cached_samples"] for r in second] == [2, 1, 3]
    assert all(r.model == inner.spec for r in second)


def test_cache_outlives_the_engine_and_the_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'agents.db'}"
    store = Store(url)
    first = CachedEngine(ScriptedEngine(), store).generate(BATCH)
    store.close()
    inner = ScriptedEngine()
    reopened = Store(url)
    again = CachedEngine(inner, reopened)
    second = again.generate(BATCH)
    reopened.close()
    assert inner.batches == [] and again.model_calls == 0
    assert [r.texts for r in second] == [r.texts for r in first]


def test_larger_n_generates_only_new_samples_with_shifted_seed(store: Store) -> None:
    inner = ScriptedEngine()
    engine = CachedEngine(inner, store)
    request = ask("what is 2+2?", n=2, temperature=0.8, seed=100)

    two = engine.generate([request])[0]
    five = engine.generate([request.with_n(5)])[0]

    assert len(inner.batches) == 2
    sub = inner.batches[1][0]
    assert sub.n == 3, "only the three missing samples are asked for"
    assert sub.seed == 102, "sample 2 keeps the seed it would have had in one n=5 call"
    assert [c.cached for c in five.completions] == [True, True, False, False, False]
    assert five.texts[:2] == two.texts
    assert five.extra["cached_samples"] == 2
    assert engine.generated_samples == 5 and engine.cached_samples == 2

    # Same samples as one uncached n=5 call would give.
    direct = ScriptedEngine().generate([request.with_n(5)])[0]
    assert [t.split("|seed=")[1].split("|")[0] for t in five.texts] == [
        t.split("|seed=")[1].split("|")[0] for t in direct.texts
    ]

    # Asking for fewer samples afterwards needs no model call at all.
    three = engine.generate([request.with_n(3)])[0]
    assert len(inner.batches) == 2 and all(c.cached for c in three.completions)
    assert three.texts == five.texts[:3]


def test_partially_cached_batch_sends_only_missing_requests(store: Store) -> None:
    inner = ScriptedEngine()
    engine = CachedEngine(inner, store)
    engine.generate(BATCH[:2])
    results = engine.generate(BATCH)

    assert len(inner.batches) == 2
    assert inner.batches[1] == [BATCH[2]], "cached requests are not sent again"
    assert [r.extra["cached_samples"] for r in results] == [2, 1, 0]
    assert results[2].completion_tokens > 0


@pytest.mark.parametrize(
    "changed",
    [
        ask("what is 2+2?", n=2, temperature=0.9, seed=10),  # temperature
        ask("what is 2+2?", n=2, temperature=0.7, seed=11),  # seed
        ask("what is 2+2?", n=2, temperature=0.7, seed=10, top_p=0.5),  # top_p
        ask("what is 2+2?", n=2, temperature=0.7, seed=10, max_tokens=17),  # max_tokens
        ask("what is 2+2?", n=2, temperature=0.7, seed=10, stop=("\n",)),  # stop strings
        ask("what is 2+2? ", n=2, temperature=0.7, seed=10),  # messages
        ask(  # tools offered
            "what is 2+2?",
            n=2,
            temperature=0.7,
            seed=10,
            tools=[{"type": "function", "function": {"name": "calc"}}],
        ),
        ask("what is 2+2?", n=2, temperature=0.7, seed=10, prefix="Thought:"),  # prefix
    ],
    ids=["temperature", "seed", "top_p", "max_tokens", "stop", "messages", "tools", "prefix"],
)
def test_different_parameters_miss(store: Store, changed: ChatRequest) -> None:
    inner = ScriptedEngine()
    engine = CachedEngine(inner, store)
    engine.generate([BATCH[0]])
    result = engine.generate([changed])[0]
    assert len(inner.batches) == 2
    assert not any(c.cached for c in result.completions)


def test_sample_key_without_prefix_is_unchanged_and_prefixes_differ() -> None:
    request = ask("what is 2+2?", n=2, temperature=0.7, seed=10, stop=("\n",))
    # The payload as it was before requests had a prefix: existing cache entries stay valid.
    payload = {
        "model": "m",
        "messages": list(request.messages),
        "temperature": 0.7,
        "top_p": 1.0,
        "max_tokens": 256,
        "stop": ["\n"],
        "seed": 10,
        "tools": None,
        "index": 1,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    assert request.sample_key("m", 1) == hashlib.sha256(blob.encode()).hexdigest()

    keys = {
        ask("what is 2+2?", prefix=prefix).sample_key("m", 0)
        for prefix in (None, "", "Thought:", "Thought: 2+2")
    }
    assert len(keys) == 4, "an empty prefix, two prefixes and none all differ"
    assert ask("q", n=3, prefix="P").with_n(5).prefix == "P"


def test_missing_samples_are_asked_with_the_prefix(store: Store) -> None:
    inner = ScriptedEngine()
    engine = CachedEngine(inner, store)
    request = ask("what is 2+2?", n=2, temperature=0.7, seed=1, prefix="Thought:")
    engine.generate([request])
    engine.generate([request.with_n(3)])
    assert [r.prefix for batch in inner.batches for r in batch] == ["Thought:", "Thought:"]
    assert inner.samples_generated == 3


def test_different_model_fingerprint_misses(store: Store) -> None:
    inner = ScriptedEngine(weights="v1")
    engine = CachedEngine(inner, store)
    engine.generate(BATCH)

    inner.weights = "v2"  # e.g. a new adapter hot-loaded into the same engine
    retrained = engine.generate(BATCH)
    assert len(inner.batches) == 2
    assert not any(c.cached for r in retrained for c in r.completions)
    assert all("|w=v2|" in t for r in retrained for t in r.texts)

    other = ScriptedEngine(spec="scripted:other", weights="v1")
    CachedEngine(other, store).generate(BATCH)
    assert len(other.batches) == 1

    inner.weights = "v1"  # back to the old weights: their answers are still cached
    engine.generate(BATCH)
    assert len(inner.batches) == 2


def test_ledger_rows_with_cached_samples_and_tokens(store: Store, run_id: str) -> None:
    inner = ScriptedEngine()
    engine = CachedEngine(inner, store, run_id=run_id, role="teacher")
    first = engine.generate(BATCH)
    engine.generate(BATCH)

    usage = store.usage(run_id)
    assert set(usage) == {("teacher", inner.fingerprint)}
    row = usage[("teacher", inner.fingerprint)]
    assert row.calls == 2  # one ledger line per batch, cached or not
    assert row.requests == 2 * len(BATCH)
    assert row.samples == 12 and row.cached_samples == 6
    # Tokens are charged only for what the model actually generated.
    assert row.prompt_tokens == sum(r.prompt_tokens for r in first) > 0
    assert row.completion_tokens == sum(r.completion_tokens for r in first) > 0
    assert row.tokens == row.prompt_tokens + row.completion_tokens
    assert row.latency_s >= 0


def test_with_role_charges_another_role(store: Store, run_id: str) -> None:
    inner = ScriptedEngine()
    teacher = CachedEngine(inner, store, run_id=run_id, role="teacher")
    judge = teacher.with_role("judge")
    assert judge.inner is inner and judge.store is store and judge.run_id == run_id
    assert judge.fingerprint == teacher.fingerprint

    teacher.generate(BATCH[:1])
    judged = judge.generate(BATCH[:1])  # same question: shares the cache, charged to the judge
    assert all(c.cached for c in judged[0].completions)

    usage = store.usage(run_id)
    assert set(usage) == {("teacher", inner.fingerprint), ("judge", inner.fingerprint)}
    assert usage[("teacher", inner.fingerprint)].cached_samples == 0
    assert usage[("judge", inner.fingerprint)].cached_samples == 2
    assert usage[("judge", inner.fingerprint)].samples == 2


def test_with_role_can_charge_another_run(store: Store, run_id: str) -> None:
    other_run = store.create_run("test-cache", {}).id
    engine = CachedEngine(ScriptedEngine(), store, run_id=run_id, role="teacher")
    engine.with_role("student", run_id=other_run).generate(BATCH[:1])
    assert store.usage(run_id) == {}
    assert [role for role, _ in store.usage(other_run)] == ["student"]


def test_set_adapter_needs_an_engine_that_supports_it(store: Store) -> None:
    with pytest.raises(TypeError, match="cannot load adapters"):
        CachedEngine(ScriptedEngine(), store).set_adapter("somewhere")


def test_repeated_batch_on_tiny_model_makes_no_model_call(
    tiny_model_dir: Path, store: Store
) -> None:
    from agents.models.transformers_engine import TransformersEngine

    inner = TransformersEngine(tiny_model_dir, spec="tiny", device="cpu")
    batch = [
        ask("hi", n=2, temperature=0.8, max_tokens=6, seed=1),
        ask("what is 2+2?", max_tokens=4),
    ]
    first = CachedEngine(inner, store)
    texts = [r.texts for r in first.generate(batch)]
    assert first.model_calls == 1 and first.generated_samples == 3

    again = CachedEngine(inner, store)  # a re-run of the same stage
    results = again.generate(batch)
    assert again.model_calls == 0 and again.generated_samples == 0 and again.cached_samples == 3
    assert [r.texts for r in results] == texts
    assert [c.completion_tokens for r in results for c in r.completions] == [
        c.completion_tokens for r in first.generate(batch) for c in r.completions
    ]


class FlakyEngine(ScriptedEngine):
    """Fails (finish_reason "error") on its first batch, answers normally afterwards."""

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        results = super()._generate(requests, progress=progress)
        if len(self.batches) == 1:
            for result in results:
                for completion in result.completions:
                    completion.finish_reason = "error"
        return results


def test_error_completions_are_not_cached_and_retry_on_the_next_call(store: Store) -> None:
    inner = FlakyEngine()
    engine = CachedEngine(inner, store)
    first = engine.generate([ask("hello", n=2, seed=1)])
    assert [c.finish_reason for c in first[0].completions] == ["error", "error"]
    second = engine.generate([ask("hello", n=2, seed=1)])
    assert len(inner.batches) == 2
    assert [c.finish_reason for c in second[0].completions] == ["stop", "stop"]
    assert not any(c.cached for c in second[0].completions)


def test_a_sample_asked_twice_in_one_batch_is_generated_once(store: Store) -> None:
    inner = ScriptedEngine()
    engine = CachedEngine(inner, store)
    twin = ask("same", n=2, temperature=0.7, seed=5)
    results = engine.generate([twin, ask("same", n=3, temperature=0.7, seed=5)])
    assert inner.samples_generated == 3
    assert results[0].texts == results[1].texts[:2]
    assert results[1].texts[2].endswith("seed=7|j=0")


def test_chunks_are_cached_as_they_finish(store: Store) -> None:
    """A batch that dies in its third chunk keeps the first two in the cache."""

    class DiesOnThirdChunk(ScriptedEngine):
        chunks = 0

        def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
            DiesOnThirdChunk.chunks += 1
            if DiesOnThirdChunk.chunks == 3:
                raise RuntimeError("killed")
            return super()._generate(requests, progress=progress)

    requests = [ask(f"question {i}") for i in range(5)]
    dying = CachedEngine(DiesOnThirdChunk(), store, flush_every=2)
    with pytest.raises(RuntimeError):
        dying.generate(requests)
    again = ScriptedEngine()
    cached = CachedEngine(again, store, flush_every=2)
    cached.generate(requests)
    assert again.samples_generated == 1  # only the fifth request was never stored
    assert cached.cached_samples == 4

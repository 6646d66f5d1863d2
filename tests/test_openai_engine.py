"""OpenAIEngine against a loopback stub of ``/v1/chat/completions`` with scripted behaviours."""

from __future__ import annotations

import asyncio
import email.utils
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from agents.models.base import ChatRequest, EngineError
from agents.models.openai_http import (
    PLACEHOLDER_API_KEY,
    OpenAIEngine,
    finish_reason,
    retry_after_s,
)

HI = [{"role": "user", "content": "hi"}]


@dataclass
class Reply:
    """One scripted answer of the stub: status, body (dict → JSON), headers, delay before it."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


def completion_body(
    content: str | None = "ok",
    *,
    finish: str = "stop",
    prompt_tokens: int = 5,
    completion_tokens: int = 2,
    tool_calls: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if tool_calls is not None:
        message["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


class Stub:
    """What the server saw and what it will answer next (default: echo of the seed)."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrivals: list[float] = []
        self.hold_s = 0.0
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def next_reply(self, body: dict[str, Any]) -> Reply:
        with self.lock:
            if self.script:
                return self.script.pop(0)
        return Reply(body=completion_body(f"seed={body.get('seed')}"))


class _Handler(BaseHTTPRequestHandler):
    stub: Stub

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = json.loads(raw)
        stub = self.server.stub  # type: ignore[attr-defined]
        with stub.lock:
            stub.bodies.append(body)
            stub.headers.append(dict(self.headers))
            stub.arrivals.append(time.monotonic())
            stub.in_flight += 1
            stub.max_in_flight = max(stub.max_in_flight, stub.in_flight)
        try:
            reply = stub.next_reply(body)
            time.sleep(reply.delay_s or stub.hold_s)
            payload = reply.body
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(reply.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        finally:
            with stub.lock:
                stub.in_flight -= 1

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closes its socket before a delayed reply is written


@pytest.fixture
def stub() -> Iterator[tuple[Stub, str]]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.stub = Stub()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield server.stub, f"http://127.0.0.1:{server.server_port}/v1"  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STUB_API_KEY", raising=False)


def make_engine(base_url: str, **kwargs: Any) -> OpenAIEngine:
    options: dict[str, Any] = {
        "api_key_env": "STUB_API_KEY",
        "timeout_s": 5.0,
        "max_retries": 3,
        "backoff_base_s": 0.001,
        "backoff_max_s": 0.01,
    }
    options.update(kwargs)
    return OpenAIEngine("stub-model", base_url=base_url, **options)


def test_success_maps_text_finish_reason_tokens_and_tool_calls(stub: tuple[Stub, str]) -> None:
    server, url = stub
    call = {"id": "call_9", "type": "function", "function": {"name": "add", "arguments": '{"a":1}'}}
    server.script = [
        Reply(
            body=completion_body("partial", finish="length", prompt_tokens=7, completion_tokens=3)
        ),
        Reply(body=completion_body(None, finish="tool_calls", tool_calls=[call])),
    ]
    tool = {"type": "function", "function": {"name": "add", "parameters": {"type": "object"}}}
    engine = make_engine(url, max_concurrency=1)  # keeps the script order = request order
    try:
        first, second = engine.generate(
            [
                ChatRequest(messages=HI, temperature=0.7, top_p=0.9, max_tokens=3, stop=("\n",)),
                ChatRequest(messages=HI, tools=[tool]),
            ]
        )
    finally:
        engine.close()

    assert first.text == "partial"
    assert first.completions[0].finish_reason == "length"
    assert (first.prompt_tokens, first.completion_tokens) == (7, 3)
    assert first.completions[0].completion_tokens == 3
    assert first.completions[0].tool_calls is None
    assert first.model == engine.spec and first.latency_s > 0
    assert second.text == ""  # null content becomes an empty string
    assert second.completions[0].finish_reason == "tool_calls"
    assert second.completions[0].tool_calls == [call]

    sent_plain, sent_tools = server.bodies
    assert sent_plain["model"] == "stub-model"
    assert sent_plain["messages"] == HI
    assert (sent_plain["temperature"], sent_plain["top_p"], sent_plain["max_tokens"]) == (
        0.7,
        0.9,
        3,
    )
    assert sent_plain["stop"] == ["\n"]
    assert "tools" not in sent_plain and "seed" not in sent_plain
    assert "stop" not in sent_tools  # an empty stop list is omitted
    assert sent_tools["tools"] == [tool]


def test_n_samples_are_separate_calls_seeded_seed_plus_i(stub: tuple[Stub, str]) -> None:
    server, url = stub
    engine = make_engine(url)
    try:
        (result,) = engine.generate([ChatRequest(messages=HI, n=3, seed=7, temperature=1.0)])
    finally:
        engine.close()
    assert len(server.bodies) == 3
    assert sorted(b["seed"] for b in server.bodies) == [7, 8, 9]
    assert all(b.get("n", 1) == 1 for b in server.bodies)
    assert result.texts == ["seed=7", "seed=8", "seed=9"]  # sample i is the call with seed+i
    assert result.prompt_tokens == 5  # counted once, not once per call
    assert result.completion_tokens == 3 * 2


def test_native_n_sends_one_call(stub: tuple[Stub, str]) -> None:
    server, url = stub
    body = completion_body("a", completion_tokens=5)
    body["choices"] = [
        {"index": 1, "message": {"role": "assistant", "content": "b"}, "finish_reason": "stop"},
        body["choices"][0],
    ]
    server.script = [Reply(body=body)]
    engine = make_engine(url, native_n=True)
    try:
        (result,) = engine.generate([ChatRequest(messages=HI, n=2, seed=3)])
    finally:
        engine.close()
    assert len(server.bodies) == 1
    assert (server.bodies[0]["n"], server.bodies[0]["seed"]) == (2, 3)
    assert result.texts == ["a", "b"]  # ordered by choice index
    assert result.completion_tokens == 5


def test_prefix_is_a_final_assistant_message_to_continue(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [Reply(body=completion_body(" 4.")), Reply(body=completion_body("plain"))]
    engine = make_engine(url, max_concurrency=1)  # keeps the script order = request order
    try:
        prefixed, plain = engine.generate(
            [ChatRequest(messages=HI, prefix="Thought: 2+2 is"), ChatRequest(messages=HI)]
        )
    finally:
        engine.close()

    assert prefixed.text == " 4."  # the server's content is the continuation alone
    assert plain.text == "plain"
    sent_prefixed, sent_plain = server.bodies
    assert sent_prefixed["messages"] == [*HI, {"role": "assistant", "content": "Thought: 2+2 is"}]
    assert sent_prefixed["continue_final_message"] is True
    assert sent_prefixed["add_generation_prompt"] is False
    assert sent_plain["messages"] == HI
    assert "continue_final_message" not in sent_plain
    assert "add_generation_prompt" not in sent_plain


def test_prefix_goes_into_every_per_sample_call(stub: tuple[Stub, str]) -> None:
    server, url = stub
    engine = make_engine(url)
    try:
        engine.generate([ChatRequest(messages=HI, n=2, seed=1, prefix="")])
    finally:
        engine.close()
    assert len(server.bodies) == 2
    for body in server.bodies:
        assert body["messages"][-1] == {"role": "assistant", "content": ""}
        assert body["continue_final_message"] is True


def test_retries_after_429_honouring_retry_after(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [
        Reply(status=429, body={"error": {"message": "slow down"}}, headers={"Retry-After": "0.3"})
    ]
    engine = make_engine(url, backoff_max_s=5.0)
    try:
        (result,) = engine.generate([ChatRequest(messages=HI, seed=1)])
    finally:
        engine.close()
    assert result.text == "seed=1"
    assert len(server.arrivals) == 2
    assert server.arrivals[1] - server.arrivals[0] >= 0.25  # the 1 ms backoff alone is far less


def test_retry_after_is_capped(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [Reply(status=429, body={}, headers={"Retry-After": "3600"})]
    engine = make_engine(url, backoff_max_s=0.05)
    began = time.monotonic()
    try:
        (result,) = engine.generate([ChatRequest(messages=HI, seed=1)])
    finally:
        engine.close()
    assert result.text == "seed=1"
    assert time.monotonic() - began < 2.0


@pytest.mark.parametrize("status", [500, 503])
def test_retries_after_server_errors(stub: tuple[Stub, str], status: int) -> None:
    server, url = stub
    server.script = [Reply(status=status, body={"error": {"message": "boom"}})] * 2
    engine = make_engine(url)
    try:
        (result,) = engine.generate([ChatRequest(messages=HI, seed=4)])
    finally:
        engine.close()
    assert result.text == "seed=4"
    assert len(server.bodies) == 3


def test_timeout_then_success(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [Reply(body=completion_body("late"), delay_s=1.0)]
    engine = make_engine(url, timeout_s=0.2)
    try:
        (result,) = engine.generate([ChatRequest(messages=HI, seed=2)])
    finally:
        engine.close()
    assert result.text == "seed=2"  # the late answer was abandoned, the retry answered
    assert len(server.bodies) == 2


def test_malformed_bodies_are_retried(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [
        Reply(body=b"<html>gateway hiccup</html>"),
        Reply(body={"id": "x", "object": "chat.completion"}),
        Reply(body={"error": {"message": "overloaded"}}),
    ]
    engine = make_engine(url)
    try:
        (result,) = engine.generate([ChatRequest(messages=HI, seed=5)])
    finally:
        engine.close()
    assert result.text == "seed=5"
    assert len(server.bodies) == 4


def test_gives_up_after_all_attempts_with_a_clear_error(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [Reply(status=503, body={"error": {"message": "down for maintenance"}})] * 10
    engine = make_engine(url, max_retries=2)
    try:
        with pytest.raises(EngineError) as caught:
            engine.generate([ChatRequest(messages=HI)])
    finally:
        engine.close()
    assert len(server.bodies) == 3  # first attempt + 2 retries, no more
    message = str(caught.value)
    assert url in message and "3 attempts" in message
    assert "503" in message and "down for maintenance" in message


def test_bad_request_is_not_retried(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [Reply(status=400, body={"error": {"message": "unknown field 'foo'"}})]
    engine = make_engine(url)
    try:
        with pytest.raises(EngineError, match=r"HTTP 400: unknown field 'foo'"):
            engine.generate([ChatRequest(messages=HI)])
    finally:
        engine.close()
    assert len(server.bodies) == 1


def test_auth_failure_names_the_key_variable(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.script = [Reply(status=401, body={"error": {"message": "invalid api key"}})]
    engine = make_engine(url)
    try:
        with pytest.raises(EngineError, match=r"invalid api key \(check STUB_API_KEY\)"):
            engine.generate([ChatRequest(messages=HI)])
    finally:
        engine.close()
    assert len(server.bodies) == 1


def test_unreachable_port_raises_engine_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    engine = make_engine(url, max_retries=1)
    try:
        with pytest.raises(EngineError, match=r"could not reach .* after 2 attempts: connection"):
            engine.generate([ChatRequest(messages=HI)])
    finally:
        engine.close()


def test_concurrency_is_bounded(stub: tuple[Stub, str]) -> None:
    server, url = stub
    server.hold_s = 0.1
    engine = make_engine(url, max_concurrency=3)
    try:
        results = engine.generate([ChatRequest(messages=HI, seed=i) for i in range(12)])
    finally:
        engine.close()
    assert [r.text for r in results] == [f"seed={i}" for i in range(12)]  # order kept
    assert server.max_in_flight == 3  # parallel, but never past the bound


def test_generate_works_inside_a_running_event_loop(stub: tuple[Stub, str]) -> None:
    _, url = stub
    engine = make_engine(url)

    async def caller() -> tuple[str, str]:
        (sync_result,) = engine.generate([ChatRequest(messages=HI, seed=1)])
        (async_result,) = await engine.agenerate([ChatRequest(messages=HI, seed=2)])
        return sync_result.text, async_result.text

    try:
        assert asyncio.run(caller()) == ("seed=1", "seed=2")
        # A second, fresh loop in the same process reuses the engine's own loop and client.
        assert asyncio.run(caller()) == ("seed=1", "seed=2")
    finally:
        engine.close()


def test_missing_openai_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError, match=r"^STUB_API_KEY is not set"):
        OpenAIEngine("gpt-4o-mini", api_key_env="STUB_API_KEY")
    with pytest.raises(EngineError, match="STUB_API_KEY"):
        OpenAIEngine(
            "gpt-4o-mini", base_url="https://api.openai.com/v1", api_key_env="STUB_API_KEY"
        )


def test_api_key_comes_from_the_named_variable_or_a_placeholder(
    stub: tuple[Stub, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, url = stub
    engine = make_engine(url)
    monkeypatch.setenv("STUB_API_KEY", "sk-local")
    keyed = make_engine(url)
    try:
        engine.generate([ChatRequest(messages=HI)])
        keyed.generate([ChatRequest(messages=HI)])
    finally:
        engine.close()
        keyed.close()
    auth = [{k.lower(): v for k, v in h.items()}["authorization"] for h in server.headers]
    assert auth == [f"Bearer {PLACEHOLDER_API_KEY}", "Bearer sk-local"]


def test_fingerprint_names_model_and_endpoint(stub: tuple[Stub, str]) -> None:
    _, url = stub
    engine = make_engine(url)
    other = make_engine(url.replace("127.0.0.1", "localhost"))
    assert "stub-model" in engine.fingerprint and url in engine.fingerprint
    assert engine.fingerprint != other.fingerprint


def test_retry_after_forms() -> None:
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    future = email.utils.formatdate(time.time() + 60, usegmt=True)
    assert 50 < (retry_after_s({"retry-after": future}) or 0) <= 60
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None


def test_finish_reasons_are_normalised() -> None:
    assert finish_reason("length", has_tool_calls=True) == "length"
    assert finish_reason("stop", has_tool_calls=True) == "tool_calls"
    assert finish_reason("tool_calls", has_tool_calls=False) == "stop"  # nothing to execute
    assert finish_reason("content_filter", has_tool_calls=False) == "error"
    assert finish_reason(None, has_tool_calls=False) == "stop"
    assert finish_reason("eos", has_tool_calls=False) == "stop"
    assert finish_reason("something-new", has_tool_calls=False) == "stop"

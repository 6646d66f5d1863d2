"""``agents serve``: an exported agent behind the OpenAI API, tested with the official ``openai``
client on loopback (uvicorn in a thread; scripted engines, the real sandbox for the tool agent).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn

from agents.export import AgentCard, ExportedAgent
from agents.models.base import ChatRequest, ChatResult, Completion, Engine
from agents.net import free_port
from agents.serve import ServeSettings, create_app
from tools import DEFAULT_TOOLS, tool_schemas

NAME = "tiny-agent"


class Echo(Engine):
    """Answers "echo: <last user message>" (upper-cased when the system prompt says SHOUT);
    ``delay`` seconds per batch."""

    spec = "scripted:echo"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[ChatRequest] = []

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        time.sleep(self.delay)
        results = []
        for request in requests:
            self.requests.append(request)
            last = str(request.messages[-1]["content"])
            shout = "SHOUT" in str(request.messages[0]["content"])
            text = f"echo: {last.upper() if shout else last}"
            results.append(
                ChatResult(
                    completions=[Completion(text=text, finish_reason="stop")] * request.n,
                    prompt_tokens=7,
                    completion_tokens=3 * request.n,
                    model=self.spec,
                )
            )
        return results


class PythonAgent(Engine):
    """A tool agent: computes the question's expression in python_exec, then answers."""

    spec = "scripted:python"

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        results = []
        for request in requests:
            last = request.messages[-1]
            if last["role"] == "tool":
                value = str(last["content"]).strip().splitlines()[-1]
                text = (
                    f'Thought: done.\n<tool_call>{{"name": "final_answer", "arguments": '
                    f'{{"answer": "{value}"}}}}</tool_call>'
                )
            else:
                expression = str(last["content"]).removeprefix("Compute ").rstrip(".")
                text = (
                    f'Thought: I compute it.\n<tool_call>{{"name": "python_exec", "arguments": '
                    f'{{"code": "print({expression})"}}}}</tool_call>'
                )
            results.append(ChatResult(completions=[Completion(text=text, finish_reason="stop")]))
        return results


@contextmanager
def serving(agent: ExportedAgent, **limits: Any) -> Iterator[str]:
    """The agent served on loopback; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(agent, ServeSettings(**limits)), host="127.0.0.1", port=port, log_level="error"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 10
    while not server.started:
        assert time.time() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


def _agent(engine: Engine, tmp_path: Path, **card: Any) -> ExportedAgent:
    return ExportedAgent(
        engine=engine, card=AgentCard(name=NAME, base_model="scripted", **card), path=tmp_path
    )


def _client(url: str, key: str = "none") -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=20)


def test_chat_completions_models_card_and_health(tmp_path: Path) -> None:
    agent = _agent(Echo(), tmp_path, system_prompt="SHOUT please")
    with serving(agent) as url:
        client = _client(url)
        assert [m.id for m in client.models.list().data] == [NAME]
        reply = client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "hello"}], max_tokens=16
        )
        # the card's system prompt opens a conversation that has none
        assert reply.choices[0].message.content == "echo: HELLO"
        assert reply.choices[0].finish_reason == "stop" and reply.usage.total_tokens == 10
        own = client.chat.completions.create(
            model=NAME,
            messages=[{"role": "system", "content": "calm"}, {"role": "user", "content": "hi"}],
            n=2,
        )
        assert [c.message.content for c in own.choices] == ["echo: hi", "echo: hi"]
        assert httpx.get(f"{url}/health").json()["status"] == "ok"
        card = httpx.get(f"{url}/v1/agent_card").json()
        assert card["name"] == NAME and card["system_prompt"] == "SHOUT please"


def test_streaming_carries_the_whole_reply(tmp_path: Path) -> None:
    """An engine that cannot stream sends its reply as one piece; several choices come in
    pieces once done."""
    with serving(_agent(Echo(), tmp_path)) as url:
        stream = _client(url).chat.completions.create(
            model=NAME,
            messages=[{"role": "user", "content": "a longer message to stream in pieces"}],
            stream=True,
        )
        chunks = list(stream)
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text == "echo: a longer message to stream in pieces"
        assert chunks[-1].choices[0].finish_reason == "stop"
        two = list(
            _client(url).chat.completions.create(
                model=NAME, messages=[{"role": "user", "content": "a longer one"}], n=2, stream=True
            )
        )
    for index in (0, 1):
        said = [c.choices[0].delta.content or "" for c in two if c.choices[0].index == index]
        assert "".join(said) == "echo: a longer one" and len(said) > 2


def test_a_real_model_streams_token_by_token(tmp_path: Path, lively_model_dir: Path) -> None:
    """The in-process engine's tokens reach the client as they are generated: many chunks, and
    together the reply a non-streamed request gets."""
    from agents.models.transformers_engine import TransformersEngine

    engine = TransformersEngine(lively_model_dir, spec="tiny", device="cpu", dtype="float32")
    question = [{"role": "user", "content": "Tell me something."}]
    with serving(_agent(engine, tmp_path)) as url:
        client = _client(url)
        whole = client.chat.completions.create(model=NAME, messages=question, max_tokens=20)
        chunks = list(
            client.chat.completions.create(
                model=NAME, messages=question, max_tokens=20, stream=True
            )
        )
        again = client.chat.completions.create(model=NAME, messages=question, max_tokens=20)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert "".join(pieces) == whole.choices[0].message.content
    assert len(pieces) > 3 and chunks[-1].choices[0].finish_reason == "stop"
    assert again.choices[0].message.content == whole.choices[0].message.content  # slot released


def test_a_tool_agent_runs_its_loop_in_the_sandbox(tmp_path: Path) -> None:
    from sandbox import executor

    if executor.isolation_backend() == "none":
        pytest.skip("no sandbox isolation backend on this machine")
    schemas = tool_schemas([t for t in DEFAULT_TOOLS if t.name != "retrieve"])
    agent = _agent(PythonAgent(), tmp_path, tools=schemas)
    with serving(agent) as url:
        reply = _client(url).chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": "Compute 6 * 7 + 2**10."}]
        )
    assert reply.choices[0].message.content == "1066"
    episode = reply.model_extra["agent"]
    assert episode["status"] == "answered" and episode["tool_uses"] == {"python_exec": 1}


def test_bad_and_over_limit_requests_get_openai_errors(tmp_path: Path) -> None:
    with serving(_agent(Echo(), tmp_path), max_body_bytes=2_000, max_tokens_limit=64) as url:
        client = _client(url)
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(
                model="gpt-4", messages=[{"role": "user", "content": "x"}]
            )
        assert missing.value.body["code"] == "model_not_found"
        with pytest.raises(openai.BadRequestError, match="max_tokens 100 is over"):
            client.chat.completions.create(
                model=NAME, messages=[{"role": "user", "content": "x"}], max_tokens=100
            )
        with pytest.raises(openai.BadRequestError, match="messages"):
            client.chat.completions.create(model=NAME, messages=[])
        too_big = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": NAME, "messages": [{"role": "user", "content": "x" * 5_000}]},
        )
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "request_too_large"
        not_json = httpx.post(f"{url}/v1/chat/completions", content=b"{nope")
        assert not_json.status_code == 400
        assert set(not_json.json()["error"]) == {"message", "type", "param", "code"}


def test_the_token_is_enforced_when_set(tmp_path: Path) -> None:
    with serving(_agent(Echo(), tmp_path), token="s3cret") as url:
        with pytest.raises(openai.AuthenticationError):
            _client(url, "wrong").models.list()
        assert [m.id for m in _client(url, "s3cret").models.list().data] == [NAME]
        assert httpx.get(f"{url}/health").status_code == 200  # liveness needs no token


def test_a_busy_server_refuses_and_a_slow_request_times_out(tmp_path: Path) -> None:
    slow = _agent(Echo(delay=1.0), tmp_path)
    with serving(slow, max_queue=0) as url:
        results: list[int] = []

        def ask() -> None:
            response = httpx.post(
                f"{url}/v1/chat/completions",
                json={"model": NAME, "messages": [{"role": "user", "content": "x"}]},
                timeout=20,
            )
            results.append(response.status_code)

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(results)[0] == 200 and 429 in results
    with serving(slow, timeout_s=0.2) as url:
        with pytest.raises(openai.APIStatusError) as late:
            _client(url).chat.completions.create(
                model=NAME, messages=[{"role": "user", "content": "x"}]
            )
        assert late.value.status_code == 504 and late.value.body["code"] == "timeout"


def test_serving_a_directory_that_is_no_export_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.cli import main

    assert main(["serve", str(tmp_path)]) == 2
    assert "is not an exported agent" in capsys.readouterr().err

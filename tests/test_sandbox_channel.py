"""The sandbox's one way out: functions the host lends a session (``retrieve``), called from
inside the code over the worker's own pipes, with bounded counts and sizes, on both backends.
The code chooses every argument and can forge every message; the host answers only the names
it lent."""

from __future__ import annotations

from typing import Any

import pytest
from test_sandbox_attacks import lent_retrieve

from sandbox import Session

pytestmark = pytest.mark.usefixtures("sandbox_backend")


def _session(calls: list[Any] | None = None, **options: Any) -> Session:
    def retrieve(query: str, k: int = 3) -> list[dict[str, str]]:
        if calls is not None:
            calls.append((query, k))
        return lent_retrieve(query, k)

    lent = {"retrieve": retrieve, **options.pop("extra", {})}
    return Session(timeout=5.0, host_functions=lent, **options)


def test_lent_function_runs_on_the_host_with_the_codes_arguments() -> None:
    calls: list[Any] = []
    with _session(calls) as session:
        result = session.run("hits = retrieve('Bergen rain', k=1)\n[h['title'] for h in hits]")
        assert result.ok and result.value == "['Bergen']", result
        # Variables and the function survive between calls, like any other name.
        again = session.run("len(retrieve('x')) + len(hits)")
        assert again.value == "2"
    assert calls == [("Bergen rain", 1), ("x", 3)]


def test_a_host_side_error_is_the_codes_exception_and_catchable() -> None:
    with _session() as session:
        result = session.run("retrieve('q', k=99)")
        assert result.error == "RuntimeError" and "k: int from 1 to 10" in result.error_message
        caught = session.run(
            "try:\n    retrieve(5)\nexcept RuntimeError as e:\n    out = 'caught'\nout"
        )
        assert caught.value == "'caught'" and not caught.killed


def test_only_lent_names_are_answered_even_by_a_forged_call() -> None:
    # The code digs the raw call out of the closure and asks for a name nobody lent.
    code = (
        "raw = next(c.cell_contents for c in retrieve.__closure__ "
        "if getattr(c.cell_contents, '__name__', '') == 'host_call')\n"
        "raw('__import__', ('os',), {})"
    )
    with _session() as session:
        result = session.run(code)
        assert result.error == "RuntimeError" and "no host function '__import__'" in (
            result.error_message or ""
        )
        assert not result.killed


def test_calls_per_run_are_bounded() -> None:
    calls: list[Any] = []
    with _session(calls, max_host_calls=3) as session:
        result = session.run("for i in range(5):\n    retrieve(str(i))")
        assert result.error == "RuntimeError" and "more than 3 host calls" in result.error_message
        assert len(calls) == 3
        assert session.run("retrieve('fresh budget')[0]['title']").value == "'Bergen'"


def test_sizes_are_bounded_both_ways() -> None:
    with _session(max_host_bytes=2_000, extra={"big": lambda: "x" * 10_000}) as session:
        large = session.run("retrieve('q' * 5000)")
        assert large.error == "RuntimeError" and "arguments larger than" in large.error_message
        answer = session.run("big()")
        assert answer.error == "RuntimeError" and "answer is larger than" in answer.error_message


def test_arguments_must_be_json() -> None:
    with _session() as session:
        result = session.run("retrieve({1, 2})")
        assert result.error == "TypeError" and "JSON values" in result.error_message


def test_garbage_on_the_result_pipe_stops_the_worker_not_the_host() -> None:
    code = (
        "import os\n"
        "for fd in range(3, 256):\n"
        "    try:\n"
        "        os.write(fd, b'this is not a message\\n')\n"
        "    except OSError:\n"
        "        pass\n"
        "'still here'"
    )
    with _session() as session:
        result = session.run(code)
        assert result.killed and result.kill_reason == "protocol", result
        assert session.run("retrieve('after')[0]['title']").value == "'Bergen'"


def test_lent_names_must_be_public_identifiers() -> None:
    with pytest.raises(ValueError, match="not a public identifier"):
        Session(host_functions={"__import__": print})

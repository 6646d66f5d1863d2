"""Functional tests of the sandbox: results, sessions, limits and backend selection."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import sandbox
from sandbox import executor

pytestmark = [
    pytest.mark.usefixtures("sandbox_backend"),  # every test runs on both backends
]

#: The machine's real backend detection, kept before the sandbox_backend fixture patches it.
DETECTED_BACKEND = executor.isolation_backend


@pytest.fixture
def session():
    with sandbox.Session(timeout=3.0) as s:
        yield s


def test_backend_is_bwrap() -> None:
    assert DETECTED_BACKEND() == "bwrap"


def test_each_backend_passes_its_probe(sandbox_backend: str) -> None:
    assert executor._probe(sandbox_backend)


def test_stdout_is_captured() -> None:
    result = sandbox.run("print('hello'); print(2 + 3)", timeout=3)
    assert result.ok
    assert result.stdout == "hello\n5\n"
    assert result.value is None


def test_stderr_is_captured() -> None:
    result = sandbox.run("import sys; sys.stderr.write('warn\\n')", timeout=3)
    assert result.stderr == "warn\n"


def test_last_expression_value_is_repr() -> None:
    result = sandbox.run("x = [1, 2]\nx + ['a']", timeout=3)
    assert result.value == "[1, 2, 'a']"


def test_none_value_is_not_reported() -> None:
    assert sandbox.run("print('x')", timeout=3).value is None


def test_exception_type_and_message() -> None:
    result = sandbox.run("def f():\n    return 1 / 0\nf()", timeout=3)
    assert not result.ok and not result.killed
    assert result.error == "ZeroDivisionError"
    assert "division by zero" in result.error_message
    assert "return 1 / 0" in result.error_message  # the model sees its own line
    assert "_driver" not in result.error_message


def test_syntax_error() -> None:
    result = sandbox.run("def (:", timeout=3)
    assert result.error == "SyntaxError"


def test_output_before_exception_is_kept() -> None:
    result = sandbox.run("print('before')\nraise ValueError('bad value')", timeout=3)
    assert result.stdout == "before\n"
    assert result.error == "ValueError"
    assert "bad value" in result.observation()


def test_subprocess_output_is_captured() -> None:
    result = sandbox.run("import os; os.system('echo from-shell')", timeout=3)
    assert "from-shell" in result.stdout


def test_session_keeps_variables_and_imports(session: sandbox.Session) -> None:
    session.run("import math\nradius = 2")
    result = session.run("round(math.pi * radius ** 2, 3)")
    assert result.value == "12.566"


def test_session_keeps_functions(session: sandbox.Session) -> None:
    session.run("def square(v):\n    return v * v")
    assert session.run("square(7)").value == "49"


def test_one_shot_runs_do_not_share_state() -> None:
    sandbox.run("shared = 1", timeout=3)
    assert sandbox.run("shared", timeout=3).error == "NameError"


def test_run_with_session_argument_uses_it(session: sandbox.Session) -> None:
    sandbox.run("y = 41", session=session, timeout=3)
    assert sandbox.run("y + 1", session=session, timeout=3).value == "42"


def test_timeout_kills_and_session_recovers(session: sandbox.Session) -> None:
    session.run("kept = 1")
    result = session.run("while True:\n    pass", timeout=1.0)
    assert result.killed and result.kill_reason == "timeout"
    assert 1.0 <= result.duration_s < 2.5
    assert "variables are lost" in result.observation()
    after = session.run("kept")
    assert after.error == "NameError"  # a fresh worker: state is gone
    assert session.run("1 + 1").value == "2"


def test_sleeping_code_times_out() -> None:
    result = sandbox.run("import time; time.sleep(30)", timeout=1.0)
    assert result.kill_reason == "timeout"


def test_output_cap_kills_and_keeps_head() -> None:
    with sandbox.Session(timeout=3.0, max_output_bytes=10_000) as s:
        result = s.run("while True:\n    print('abcdefghi')")
    assert result.killed and result.kill_reason == "output"
    assert result.stdout.startswith("abcdefghi\n")
    assert len(result.stdout) <= 10_000


def test_default_output_cap_is_one_megabyte() -> None:
    result = sandbox.run("import sys\nwhile True:\n    sys.stdout.write('x' * 4096)", timeout=3)
    assert result.kill_reason == "output"
    assert len(result.stdout) == executor.MAX_OUTPUT_BYTES


def test_large_output_under_cap_is_complete() -> None:
    result = sandbox.run("print('y' * 300_000)", timeout=3)
    assert result.ok
    assert len(result.stdout) == 300_001


def test_fresh_tmp_each_run(sandbox_tmp_listing: str) -> None:
    first = sandbox.run(f"open('/tmp/marker', 'w').write('x')\n{sandbox_tmp_listing}")
    assert first.value == "['marker']"
    assert sandbox.run(sandbox_tmp_listing, timeout=3).value == "[]"


def test_working_directory_is_tmp() -> None:
    assert sandbox.run("import os\nos.getcwd()", timeout=3).value == "'/tmp'"


def test_memory_error_is_reported() -> None:
    result = sandbox.run("b = bytearray(10**10)", timeout=3, memory_mb=256)
    assert result.error == "MemoryError" or result.kill_reason == "memory"


def test_closed_session_refuses() -> None:
    s = sandbox.Session(timeout=3.0)
    s.run("1")
    assert s.alive
    s.close()
    assert not s.alive
    with pytest.raises(RuntimeError):
        s.run("1")


def test_observation_is_compact() -> None:
    result = sandbox.run("print('z' * 20000)\n5", timeout=3)
    text = result.observation(max_chars=1000)
    assert "value: 5" in text and "truncated" in text and len(text) < 1200


def test_unavailable_without_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "isolation_backend", lambda: "none")
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install bubblewrap"):
        sandbox.run("1 + 1")
    with pytest.raises(sandbox.SandboxUnavailable):
        sandbox.Session()


def test_unisolated_opt_in_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "isolation_backend", lambda: "none")
    result = sandbox.run("print('hi')\n6 * 7", timeout=3, allow_unisolated=True)
    assert result.ok and result.stdout == "hi\n" and result.value == "42"


def test_unisolated_still_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor, "isolation_backend", lambda: "none")
    result = sandbox.run("while True: pass", timeout=1, allow_unisolated=True)
    assert result.kill_reason == "timeout"


def test_probe_rejects_missing_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(executor.shutil, "which", lambda name: None)
    assert executor._probe("bwrap") is False


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to show that capabilities are gone")
def test_dropped_capabilities_leave_root_powerless(tmp_path: Path) -> None:
    """What the worker does when it keeps uid 0 (unshare fallback for ordinary users)."""
    import subprocess
    import sys

    target = tmp_path / "file"
    target.write_text("x")
    code = (
        "import os, sys\n"
        f"sys.path.insert(0, {str(Path(executor.__file__).parent)!r})\n"
        "from _driver import drop_capabilities\n"
        f"os.chown({str(target)!r}, 1234, 1234)\n"  # allowed while capabilities are held
        "drop_capabilities()\n"
        "try:\n"
        f"    os.chown({str(target)!r}, 4321, 4321)\n"
        "except PermissionError:\n"
        "    print('denied')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "denied", out.stderr
    assert target.stat().st_uid == 1234


def test_numpy_and_sympy_are_importable_inside() -> None:
    """Math agents need them; they come read-only from the virtualenv's site-packages."""
    pytest.importorskip("numpy")
    pytest.importorskip("sympy")
    result = sandbox.run(
        "import numpy as np, sympy as sp\n(int(np.arange(4).sum()), sp.factorint(360))", timeout=20
    )
    assert result.ok, result.error_message
    assert result.value == "(6, {2: 3, 3: 2, 5: 1})"

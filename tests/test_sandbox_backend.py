"""Choosing the sandbox backend: ``$AGENTS_SANDBOX_BACKEND`` forces one, and a forced backend
that is unknown or broken is an error, never a silent fallback to something weaker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox import executor
from sandbox.executor import BACKEND_ENV, SandboxUnavailable, Session, isolation_backend


@pytest.fixture(autouse=True)
def _fresh_detection() -> Iterator[None]:
    isolation_backend.cache_clear()
    yield
    isolation_backend.cache_clear()


def test_an_unknown_forced_backend_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "docker")
    with pytest.raises(SandboxUnavailable, match="'docker' is not a sandbox backend"):
        isolation_backend()


def test_forcing_none_still_needs_consent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "none")
    assert isolation_backend() == "none"
    with pytest.raises(SandboxUnavailable):
        Session()
    with Session(allow_unisolated=True) as session:
        assert session.backend == "none" and session.run("6 * 7").value == "42"


def test_a_forced_backend_that_cannot_run_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BACKEND_ENV, "bwrap")
    monkeypatch.setattr(executor, "_probe", lambda backend: False)
    with pytest.raises(SandboxUnavailable, match="cannot run code on this machine"):
        isolation_backend()


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_a_forced_working_backend_is_the_one_used(
    backend: str, monkeypatch: pytest.MonkeyPatch, sandbox_backend: str
) -> None:
    if backend != sandbox_backend:
        pytest.skip("one combination per backend")
    monkeypatch.undo()  # drop the fixture's patch: detection itself must pick the forced one
    monkeypatch.setenv(BACKEND_ENV, backend)
    assert isolation_backend() == backend
    with Session() as session:
        assert session.backend == backend
        # Its own network namespace: only a loopback device, whichever backend built it.
        found = session.run("import socket\nsorted(n for _, n in socket.if_nameindex())")
        assert found.value == "['lo']", found

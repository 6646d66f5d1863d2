"""Launching, talking to and killing sandboxed Python workers (see the package docstring)."""

from __future__ import annotations

import functools
import json
import logging
import os
import selectors
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

logger = logging.getLogger(__name__)

DRIVER_SOURCE = (Path(__file__).with_name("_driver.py")).read_text()

NOBODY = 65534
MAX_OUTPUT_BYTES = 1_000_000
TMP_SIZE_BYTES = 64 * 1024 * 1024
MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PROCS = 32
# RLIMIT_CPU is per process and cumulative, so a session gets a CPU budget for its whole life;
# each call additionally gets a soft limit of its own timeout plus one second.
SESSION_CPU_SECONDS = 600
STARTUP_TIMEOUT = 15.0
SANDBOX_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": "/tmp", "LANG": "C.UTF-8"}
UNAVAILABLE_MESSAGE = (
    "No sandbox is available to run code in isolation: install bubblewrap "
    "(apt-get install bubblewrap) or pass allow_unisolated=True."
)


BACKEND_ENV = "AGENTS_SANDBOX_BACKEND"
BACKENDS = ("bwrap", "unshare", "none")


class SandboxUnavailable(RuntimeError):
    """Raised when no isolation tool works and the caller did not opt in to running unisolated."""


@dataclass
class ExecutionResult:
    """What one snippet did.

    Attributes:
        stdout: Text the code wrote to standard output (capped).
        stderr: Text the code wrote to standard error (capped).
        value: ``repr()`` of the last expression's value, like a REPL, else None.
        error: Exception type name (``"ZeroDivisionError"``) or None.
        error_message: The traceback of the code's frames, or why the worker was killed.
        duration_s: Wall-clock seconds from sending the code to the answer.
        killed: Whether the worker process was killed (session state is then lost).
        kill_reason: ``"timeout"``, ``"memory"``, ``"output"``, ``"cpu"``, ``"crash"``,
            ``"protocol"`` (the code wrote garbage to the result pipe) or None.
    """

    stdout: str
    stderr: str
    value: str | None
    error: str | None
    error_message: str | None
    duration_s: float
    killed: bool
    kill_reason: str | None

    @property
    def ok(self) -> bool:
        """True when the code raised nothing and the worker was not killed."""
        return self.error is None and not self.killed

    def observation(self, max_chars: int = 4000) -> str:
        """Compact text for an agent: output, value, error and why the run was stopped.

        Args:
            max_chars: Budget per section; longer text keeps its head and tail.

        Returns:
            A short multi-line report, ``"(no output)"`` when there is nothing to show.
        """
        parts = []
        if self.stdout:
            parts.append("stdout:\n" + _clip(self.stdout, max_chars))
        if self.stderr:
            parts.append("stderr:\n" + _clip(self.stderr, max_chars))
        if self.value is not None:
            parts.append("value: " + _clip(self.value, max_chars))
        if self.error is not None:
            parts.append("error:\n" + _clip(self.error_message or self.error, max_chars))
        elif self.killed:
            parts.append(f"killed ({self.kill_reason}): {self.error_message or ''}".rstrip())
        return "\n".join(parts) if parts else "(no output)"


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n...[{len(text) - 2 * half} characters truncated]...\n{text[-half:]}"


def _python_paths() -> list[str]:
    """Directories the interpreter and its packages live in, to bind read-only."""
    paths: list[str] = []
    for p in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        paths.append(os.path.abspath(p))
        paths.append(os.path.realpath(p))
    exe = os.path.realpath(sys.executable)
    paths.append(os.path.dirname(os.path.dirname(exe)))
    unique: list[str] = []
    for p in paths:
        if p in ("/", "") or p in unique or not os.path.isdir(p):
            continue
        unique.append(p)
    return unique


def _bwrap_argv(info_fd: int | None) -> list[str]:
    argv = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    argv += ["--unshare-cgroup-try", "--die-with-parent", "--new-session", "--hostname", "sandbox"]
    if os.geteuid() == 0:
        # Privileged mode without a user namespace: the driver keeps only the right to become
        # nobody, because root is exempt from RLIMIT_NPROC in any user namespace.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
    else:
        argv += ["--unshare-user", "--disable-userns", "--cap-drop", "ALL"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            argv += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            argv += ["--ro-bind", top, top]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for etc in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        argv += ["--ro-bind-try", etc, etc]
    # The private /tmp goes first: the interpreter or venv may itself live under /tmp (a CI
    # checkout, say), and a tmpfs mounted afterwards would hide it.
    argv += ["--perms", "1777", "--size", str(TMP_SIZE_BYTES), "--tmpfs", "/tmp"]
    made: set[str] = {"/tmp"}
    for path in _python_paths():
        # bwrap copies the host's mode for the directories it creates (/root is 0700), and the
        # worker runs as nobody, so the way down to the interpreter must be made traversable.
        parent = os.path.dirname(path)
        chain = []
        while parent not in ("/", "") and parent not in made:
            chain.append(parent)
            parent = os.path.dirname(parent)
        for directory in reversed(chain):
            made.add(directory)
            if not directory.startswith("/usr"):
                argv += ["--perms", "0755", "--dir", directory]
        argv += ["--ro-bind", path, path]
    argv += ["--proc", "/proc", "--dev", "/dev", "--chdir", "/tmp"]
    argv += ["--clearenv"]
    for key, value in SANDBOX_ENV.items():
        argv += ["--setenv", key, value]
    if info_fd is not None:
        argv += ["--info-fd", str(info_fd)]
    return argv


def _readonly_paths() -> list[str]:
    """What the worker may see of the host, read-only: system libraries and the interpreter."""
    paths = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"]
    paths += ["/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"]
    return [p for p in paths if os.path.lexists(p)] + _python_paths()


def _new_root_script() -> str:
    """Shell run inside unshare's namespaces: assemble a minimal root like bwrap's, chroot in.

    The new root is a tmpfs mounted on an empty host directory (``$1``) inside the private
    mount namespace, so the host sees nothing. Its /tmp is mounted before anything is bound
    beneath it, because the interpreter may itself live under the host's /tmp.
    """
    lines = [
        "set -e",
        'R="$1"; shift',
        'mount -t tmpfs -o mode=0755 sandbox-root "$R"',
        'mkdir -p "$R/tmp" "$R/proc" "$R/dev"',
        f'mount -t tmpfs -o mode=1777,size={TMP_SIZE_BYTES} sandbox-tmp "$R/tmp"',
    ]
    for path in _readonly_paths():
        q = shlex.quote(path)
        if os.path.islink(path) and os.path.dirname(path) == "/":
            # /bin -> usr/bin and friends: recreate the link, /usr is bound on its own
            lines.append(f'ln -s {shlex.quote(os.readlink(path))} "$R"{q}')
        elif os.path.isdir(path):
            lines.append(f'mkdir -p "$R"{q} && mount --rbind {q} "$R"{q}')
            lines.append(f'mount -o remount,bind,ro "$R"{q}')
        else:
            lines.append(f'mkdir -p "$(dirname "$R"{q})" && touch "$R"{q}')
            lines.append(f'mount --bind {q} "$R"{q} && mount -o remount,bind,ro "$R"{q}')
    for device in ("null", "zero", "random", "urandom"):
        lines.append(f'touch "$R/dev/{device}" && mount --bind /dev/{device} "$R/dev/{device}"')
    lines.append('mount -t proc proc "$R/proc"')
    chroot = shutil.which("chroot", path="/usr/sbin:/sbin:/usr/bin:/bin") or "chroot"
    # Not exec: the shell stays PID 1 of the namespace, because the kernel spares a namespace's
    # init from default-action signals (SIGXCPU of the CPU limit, kill -9 -1 from inside).
    lines.append(f'{chroot} "$R" /usr/bin/env -C /tmp "$@"')
    lines.append("exit $?")
    return "\n".join(lines)


def _unshare_argv(root_dir: str) -> list[str]:
    argv = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount", "--ipc", "--uts"]
    if os.geteuid() != 0:
        argv += ["--user", "--map-root-user"]
    return [*argv, "/bin/sh", "-c", _new_root_script(), "sandbox", root_dir]


def _launch_argv(
    backend: str, config: dict[str, Any], info_fd: int | None, root_dir: str | None
) -> list[str]:
    python = [sys.executable, "-I", "-c", DRIVER_SOURCE, json.dumps(config)]
    if backend == "bwrap":
        return _bwrap_argv(info_fd) + python
    if backend == "unshare":
        assert root_dir is not None
        return _unshare_argv(root_dir) + python
    return python


def _probe(backend: str) -> bool:
    """Whether ``backend`` can really run a snippet here (tools exist but may be forbidden)."""
    if shutil.which(backend) is None:
        return False
    try:
        with Session(timeout=5.0, _backend=backend) as session:
            result = session.run("6 * 7")
    except Exception as exc:  # noqa: BLE001 - any failure means this backend is unusable
        logger.debug("sandbox backend %s failed its probe: %s", backend, exc)
        return False
    if result.value != "42":
        logger.debug("sandbox backend %s failed its probe: %s", backend, result)
    return result.value == "42"


@functools.cache
def isolation_backend() -> str:
    """The isolation tool that works on this machine, checked once by running a snippet.

    ``$AGENTS_SANDBOX_BACKEND`` forces one (``bwrap``, ``unshare``, or ``none`` for the limits
    only, which still needs ``allow_unisolated=True``); a forced backend that does not work is an
    error, never a silent fallback.

    Returns:
        ``"bwrap"`` (bubblewrap), ``"unshare"`` (util-linux namespaces + chroot) or ``"none"``.

    Raises:
        SandboxUnavailable: the forced backend is unknown or does not work here.
    """
    forced = os.environ.get(BACKEND_ENV, "").strip()
    if forced:
        if forced not in BACKENDS:
            raise SandboxUnavailable(
                f"{BACKEND_ENV}={forced!r} is not a sandbox backend; use one of "
                f"{', '.join(BACKENDS)}"
            )
        if forced != "none" and not _probe(forced):
            raise SandboxUnavailable(
                f"{BACKEND_ENV}={forced} asks for {forced}, which cannot run code on this machine"
            )
        return forced
    for backend in ("bwrap", "unshare"):
        if _probe(backend):
            return backend
    logger.warning("no working sandbox backend (bwrap, unshare) on this machine")
    return "none"


class Session:
    """A persistent sandboxed worker for one agent episode; variables survive between calls.

    When a call is killed (timeout, output cap, CPU or memory), the worker is discarded and the
    next call starts a fresh one with empty state.

    Args:
        timeout: Default wall-clock seconds per call.
        memory_mb: Address-space limit of the worker (RLIMIT_AS).
        allow_unisolated: Run without isolation (limits only) when no backend works.
        max_output_bytes: Cap on stdout+stderr per call; the worker is killed beyond it.
        host_functions: Functions of the host the code may call by name (e.g. ``retrieve``),
            the only way out of the sandbox: arguments and results travel as JSON over the
            worker's own pipes, at most ``max_host_calls`` per call of :meth:`run`, each message
            at most ``max_host_bytes``. The function must check its arguments: the code chooses
            them. Its time counts against the call's timeout.
        max_host_calls: Host calls allowed per :meth:`run`.
        max_host_bytes: Largest request or answer of a host call, in bytes of JSON.

    Raises:
        SandboxUnavailable: No backend works and ``allow_unisolated`` is False.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        memory_mb: int = 1024,
        allow_unisolated: bool = False,
        max_output_bytes: int = MAX_OUTPUT_BYTES,
        host_functions: Mapping[str, Callable[..., Any]] | None = None,
        max_host_calls: int = 16,
        max_host_bytes: int = 64_000,
        _backend: str | None = None,
    ) -> None:
        backend = _backend or isolation_backend()
        if backend == "none" and not allow_unisolated:
            raise SandboxUnavailable(UNAVAILABLE_MESSAGE)
        if backend == "none":
            logger.warning("running model code WITHOUT isolation (allow_unisolated=True)")
        self.backend = backend
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.max_output_bytes = max_output_bytes
        for name in host_functions or {}:
            if not name.isidentifier() or name.startswith("_"):
                raise ValueError(f"host function name {name!r} is not a public identifier")
        self.host_functions = dict(host_functions or {})
        self.max_host_calls = max_host_calls
        self.max_host_bytes = max_host_bytes
        self.host_calls = 0  # in the current call of run()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._inner_pid: int | None = None
        self._cmd_w = -1
        self._res_r = -1
        self._closed = False
        self._restarts = 0

    @property
    def alive(self) -> bool:
        """Whether a worker process is running (one starts lazily on the next call)."""
        return self._proc is not None and self._proc.poll() is None

    def __enter__(self) -> Session:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        if getattr(self, "_proc", None) is not None:
            self._kill()

    def close(self) -> None:
        """Kills the worker and everything it started; the session cannot be used afterwards."""
        with self._lock:
            self._closed = True
            self._kill()

    def run(self, code: str, *, timeout: float | None = None) -> ExecutionResult:
        """Runs ``code`` in the session's worker, starting one if needed.

        Args:
            code: Python source; a trailing expression's value is reported like a REPL.
            timeout: Wall-clock seconds for this call (default: the session's).

        Returns:
            The call's ExecutionResult.
        """
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            if self._closed:
                raise RuntimeError("this sandbox Session is closed; create a new one")
            if not self.alive:
                if self._proc is not None:
                    self._kill()
                    self._restarts += 1
                failure = self._start()
                if failure is not None:
                    return failure
            return self._exchange(code, timeout)

    # -- worker lifecycle -------------------------------------------------------------------

    def _config(self) -> dict[str, Any]:
        drop = NOBODY if os.geteuid() == 0 and self.backend != "none" else None
        return {
            "drop_uid": drop,
            "memory_mb": self.memory_mb,
            "nproc": MAX_PROCS,
            "fsize": MAX_FILE_BYTES,
            "cpu_s": SESSION_CPU_SECONDS,
            "max_value_chars": 20_000,
            "max_traceback_lines": 30,
            "host_functions": sorted(self.host_functions),
        }

    def _start(self) -> ExecutionResult | None:
        """Starts a worker and waits for its hello; returns a failure result if it cannot."""
        started = time.monotonic()
        cmd_r, cmd_w = os.pipe()
        res_r, res_w = os.pipe()
        info_r, info_w = os.pipe() if self.backend == "bwrap" else (-1, -1)
        config = self._config() | {"cmd_fd": cmd_r, "res_fd": res_w}
        keep = (cmd_r, res_w) + ((info_w,) if info_w >= 0 else ())
        workdir = None
        cwd = None
        if self.backend == "none":
            # Unisolated: a fresh host directory is the working directory.
            workdir = cwd = _make_workdir()
        elif self.backend == "unshare":
            # An empty host directory the new root is mounted on (in the private namespace).
            workdir = _make_workdir()
        env = dict(SANDBOX_ENV, HOME=cwd or "/tmp")
        try:
            self._proc = subprocess.Popen(
                _launch_argv(self.backend, config, info_w if info_w >= 0 else None, workdir),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=keep,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        finally:
            for fd in keep:
                os.close(fd)
        self._workdir = workdir
        self._cmd_w, self._res_r, self._info_r = cmd_w, res_r, info_r
        self._inner_pid = None
        for fd in (self._proc.stdout, self._proc.stderr):
            assert fd is not None
            os.set_blocking(fd.fileno(), False)
        reply, out, err, reason = self._collect(time.monotonic() + STARTUP_TIMEOUT)
        if info_r >= 0:
            self._inner_pid = _read_child_pid(info_r)
        if reply is not None and reply.get("ready"):
            return None
        self._kill()
        message = f"the sandbox worker failed to start: {(err or out).strip()[-2000:]}"
        logger.error(message)
        return ExecutionResult(
            stdout="",
            stderr=err,
            value=None,
            error=None,
            error_message=message,
            duration_s=time.monotonic() - started,
            killed=True,
            kill_reason=reason or "crash",
        )

    def _kill(self) -> None:
        """Kills the worker's process group and its pid namespace, then frees its fds."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if self._inner_pid:
            # Killing the namespace's pid 1 kills everything inside it; bwrap then exits by
            # itself and reaps it, so no orphan is left for the host's init.
            _signal(self._inner_pid, signal.SIGKILL)
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                pass
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        proc.wait()
        if self._inner_pid:
            _wait_gone(self._inner_pid)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        for fd in (self._cmd_w, self._res_r, getattr(self, "_info_r", -1)):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._cmd_w = self._res_r = self._info_r = -1
        if getattr(self, "_workdir", None):
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    # -- one call ---------------------------------------------------------------------------

    def _exchange(self, code: str, timeout: float) -> ExecutionResult:
        started = time.monotonic()
        self.host_calls = 0
        data = (json.dumps({"code": code, "timeout": timeout}) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._cmd_w, data) :]
        except BrokenPipeError:
            pass  # the worker died; _collect sees the closed result pipe
        reply, out, err, reason = self._collect(started + timeout)
        duration = time.monotonic() - started
        if reply is not None:
            return ExecutionResult(
                stdout=out,
                stderr=err,
                value=reply.get("value"),
                error=reply.get("error"),
                error_message=reply.get("error_message"),
                duration_s=duration,
                killed=False,
                kill_reason=None,
            )
        assert self._proc is not None
        try:
            returncode: int | None = self._proc.wait(timeout=0 if reason else 2.0)
        except subprocess.TimeoutExpired:
            returncode = None
        self._kill()
        if reason is None:
            reason = _reason_from_exit(returncode, err)
        messages = {
            "timeout": f"execution exceeded the {timeout:g} s time limit and was stopped",
            "output": f"output exceeded {self.max_output_bytes} bytes and was stopped",
            "cpu": "execution exceeded its CPU-time limit and was stopped",
            "memory": f"execution exceeded the {self.memory_mb} MB memory limit",
            "crash": f"the worker process exited unexpectedly (exit status {returncode})",
            "protocol": "the code wrote something that is not a message to the sandbox's own "
            "result pipe and was stopped",
        }
        message = messages[reason] + "; the session restarts, earlier variables are lost."
        return ExecutionResult(
            stdout=out,
            stderr=err,
            value=None,
            error=None,
            error_message=message,
            duration_s=duration,
            killed=True,
            kill_reason=reason,
        )

    def _answer(self, message: dict[str, Any]) -> None:
        """Run one host call the code asked for and write the answer to the command pipe."""
        name = message.get("call")
        args, kwargs = message.get("args", []), message.get("kwargs", {})
        self.host_calls += 1
        answer: dict[str, Any]
        if self.host_calls > self.max_host_calls:
            answer = {"error": f"more than {self.max_host_calls} host calls in one run"}
        elif not isinstance(name, str) or name not in self.host_functions:
            answer = {"error": f"no host function {name!r}"}
        elif not isinstance(args, list) or not isinstance(kwargs, dict):
            answer = {"error": "malformed call"}
        elif len(json.dumps(message)) > self.max_host_bytes:
            answer = {"error": f"arguments larger than {self.max_host_bytes} bytes"}
        else:
            try:
                answer = {"result": self.host_functions[name](*args, **kwargs)}
            except Exception as exc:  # noqa: BLE001 - the code sees it as its call's error
                answer = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
        try:
            data = json.dumps(answer)
        except (TypeError, ValueError):
            data = json.dumps({"error": f"{name} returned a value that is not JSON"})
        if len(data) > self.max_host_bytes:
            data = json.dumps({"error": f"the answer is larger than {self.max_host_bytes} bytes"})
        try:
            encoded = (data + "\n").encode()
            while encoded:
                encoded = encoded[os.write(self._cmd_w, encoded) :]
        except BrokenPipeError:
            pass  # the worker died; the caller sees the closed result pipe

    def _collect(self, deadline: float) -> tuple[dict[str, Any] | None, str, str, str | None]:
        """Reads output and the result line until a reply, death, the deadline or the cap."""
        assert self._proc is not None and self._proc.stdout and self._proc.stderr
        out_fd, err_fd = self._proc.stdout.fileno(), self._proc.stderr.fileno()
        chunks: dict[int, bytearray] = {out_fd: bytearray(), err_fd: bytearray()}
        pending = bytearray()
        reply: dict[str, Any] | None = None
        reason: str | None = None
        total = 0
        selector = selectors.DefaultSelector()
        for fd in (out_fd, err_fd, self._res_r):
            selector.register(fd, selectors.EVENT_READ)
        try:
            while reply is None and reason is None and self._res_r in _fds(selector):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    reason = "timeout"
                    break
                for key, _ in selector.select(remaining):
                    fd = key.fd
                    try:
                        chunk = os.read(fd, 65536)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        selector.unregister(fd)
                    elif fd == self._res_r:
                        pending += chunk
                        while reply is None and reason is None and b"\n" in pending:
                            line, _, rest = bytes(pending).partition(b"\n")
                            pending = bytearray(rest)
                            message = _message(line)
                            if message is None:
                                reason = "protocol"  # not a JSON object: the code wrote it
                            elif "call" in message:
                                self._answer(message)
                            else:
                                reply = message
                        if reason is None and len(pending) > 4 * self.max_host_bytes:
                            reason = "protocol"  # an endless line on the result pipe
                    else:
                        total += len(chunk)
                        chunks[fd] += chunk
                        if total > self.max_output_bytes:
                            reason = "output"
            if reply is not None:
                # Output written before the reply is already in the pipes; take all of it.
                for fd in (out_fd, err_fd):
                    while total <= self.max_output_bytes:
                        try:
                            chunk = os.read(fd, 65536)
                        except BlockingIOError:
                            break
                        if not chunk:
                            break
                        total += len(chunk)
                        chunks[fd] += chunk
        finally:
            selector.close()
        out, err = _cap(chunks[out_fd], chunks[err_fd], self.max_output_bytes)
        return reply, out, err, reason


def _message(line: bytes) -> dict[str, Any] | None:
    """A line of the result pipe as a JSON object, or None when it is not one."""
    try:
        found = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    return found if isinstance(found, dict) else None


def _fds(selector: selectors.BaseSelector) -> set[int]:
    return {key.fd for key in selector.get_map().values()}


def _cap(out: bytearray, err: bytearray, limit: int) -> tuple[str, str]:
    out = out[:limit]
    err = err[: max(0, limit - len(out))]
    return out.decode(errors="replace"), err.decode(errors="replace")


def _make_workdir() -> str:
    import tempfile

    path = tempfile.mkdtemp(prefix="sandbox-")
    os.chmod(path, 0o1777)
    return path


def _read_child_pid(fd: int) -> int | None:
    """The host pid of the sandbox's pid-1 process, from bwrap's --info-fd."""
    data = bytearray()
    os.set_blocking(fd, False)
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            time.sleep(0.005)
            continue
        if not chunk:
            break
        data += chunk
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError):
        return None


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _wait_gone(pid: int, limit: float = 2.0) -> None:
    """Waits until ``pid`` has exited (a zombie counts as gone)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return
        time.sleep(0.005)


def _reason_from_exit(returncode: int | None, stderr: str) -> str:
    # bwrap and unshare report a signalled child as 128 + signal; Popen as -signal.
    sig = None
    if returncode is not None and returncode < 0:
        sig = -returncode
    elif returncode is not None and returncode > 128:
        sig = returncode - 128
    if sig == signal.SIGXCPU:
        return "cpu"
    if "MemoryError" in stderr or "Cannot allocate memory" in stderr:
        return "memory"
    return "crash"


def run(
    code: str,
    *,
    session: Session | None = None,
    timeout: float = 10.0,
    memory_mb: int = 1024,
    allow_unisolated: bool = False,
) -> ExecutionResult:
    """Runs ``code`` in a sandbox and returns what happened.

    Args:
        code: Python source; a trailing expression's value is reported like a REPL.
        session: Reuse this session's worker (its memory limit applies); else a fresh worker
            is started for this call and destroyed afterwards.
        timeout: Wall-clock seconds before the worker is killed.
        memory_mb: Address-space limit for a fresh worker.
        allow_unisolated: Run without isolation when no sandbox backend works.

    Returns:
        The ExecutionResult.

    Raises:
        SandboxUnavailable: No backend works and ``allow_unisolated`` is False.
    """
    if session is not None:
        return session.run(code, timeout=timeout)
    with Session(timeout=timeout, memory_mb=memory_mb, allow_unisolated=allow_unisolated) as s:
        return s.run(code)

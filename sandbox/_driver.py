"""Worker loop that runs inside the sandbox.

The host starts this file's source with ``python -I -c <source> <config-json>``; it is never
imported by the host. It applies the resource limits, then reads one JSON request per line from
the command fd, runs the code, and answers one JSON line on the result fd. The code's own
stdout/stderr go straight to fds 1 and 2, which the host reads as pipes, so output from
subprocesses and ``os.write`` is captured too.

Nothing here is a security boundary: the code can forge its own result line, or a host-call
line (``{"call": name, "args": [...], "kwargs": {...}}``) for one of the functions the host lent
the session (e.g. ``retrieve``). Containment comes from the namespaces and limits around this
process, and from the host, which answers only the names it lent, with bounded sizes and counts,
and checks every argument in the function itself.
"""

from __future__ import annotations

import ast
import ctypes
import json
import linecache
import math
import os
import resource
import sys
import traceback
from typing import Any

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
LINUX_CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}


def drop_capabilities() -> None:
    """Give up every capability: bounding set, ambient set, then effective/permitted/inheritable.

    Used when the worker keeps uid 0 of a user namespace (the unshare fallback for an ordinary
    user): without this, namespace-root could undo its chroot or remount what it sees.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0)  # fails harmlessly past the last capability
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    header = (ctypes.c_uint32 * 2)(LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two empty {effective, permitted, inheritable} sets
    number = SYS_CAPSET.get(os.uname().machine)
    if number is None:
        raise OSError(f"dropping capabilities is not implemented on {os.uname().machine}")
    if libc.syscall(number, header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def _set_limit(kind: int, value: int) -> None:
    resource.setrlimit(kind, (value, value))


def _setup(cfg: dict[str, Any]) -> None:
    """Drops privileges and applies the limits before any model code runs."""
    uid = cfg["drop_uid"]
    if uid is not None:
        # Root in the init user namespace is exempt from RLIMIT_NPROC, so the worker must
        # become an ordinary uid for the process limit (fork bombs) to bind.
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    else:
        drop_capabilities()
    # Setuid binaries must not hand privileges back.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    _set_limit(resource.RLIMIT_AS, cfg["memory_mb"] * 1024 * 1024)
    _set_limit(resource.RLIMIT_NPROC, cfg["nproc"])
    _set_limit(resource.RLIMIT_FSIZE, cfg["fsize"])
    _set_limit(resource.RLIMIT_CORE, 0)
    resource.setrlimit(resource.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"]))


def _cpu_used() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _format_error(exc: BaseException, filename: str, max_lines: int) -> str:
    # Drop the driver's own frames so the model only sees its code.
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != filename:
        tb = tb.tb_next
    lines = "".join(traceback.format_exception(type(exc), exc, tb)).rstrip().splitlines()
    if len(lines) > max_lines:
        lines = ["Traceback (most recent call last, truncated):", *lines[-(max_lines - 1) :]]
    return "\n".join(lines)


def _execute(code: str, namespace: dict[str, Any], n: int, cfg: dict[str, Any]) -> dict[str, Any]:
    filename = f"<cell {n}>"
    linecache.cache[filename] = (len(code), None, code.splitlines(True), filename)
    reply: dict[str, Any] = {"value": None, "error": None, "error_message": None}
    try:
        tree = ast.parse(code, filename, "exec")
        last = None
        if tree.body and isinstance(tree.body[-1], ast.Expr):
            last = ast.Expression(tree.body.pop().value)
        exec(compile(tree, filename, "exec"), namespace)
        if last is not None:
            value = eval(compile(last, filename, "eval"), namespace)
            if value is not None:
                text = repr(value)
                limit = cfg["max_value_chars"]
                reply["value"] = text if len(text) <= limit else text[:limit] + "...[truncated]"
    except BaseException as exc:  # noqa: B036 - SystemExit and friends are the code's errors too
        reply["error"] = type(exc).__name__
        reply["error_message"] = _format_error(exc, filename, cfg["max_traceback_lines"])
    return reply


def main() -> None:
    cfg = json.loads(sys.argv[1])
    _setup(cfg)
    # Move the protocol fds out of the way of the code's own files and keep them from
    # leaking into subprocesses.
    cmd = os.fdopen(os.dup(cfg["cmd_fd"]), "rb")
    res_fd = os.dup(cfg["res_fd"])
    os.close(cfg["cmd_fd"])
    os.close(cfg["res_fd"])

    def send(message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(res_fd, data) :]

    def host_call(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Ask the host to run one of the functions it lent this session; wait for its answer
        on the command pipe (the host sends no code while a call is open)."""
        try:
            message = {"call": name, "args": list(args), "kwargs": kwargs}
            data = json.dumps(message)
        except (TypeError, ValueError):
            raise TypeError(f"{name}() takes JSON values (str, int, float, list, dict)") from None
        send(json.loads(data))
        answer = json.loads(cmd.readline() or b'{"error": "the host closed the channel"}')
        if "error" in answer:
            raise RuntimeError(f"{name}(): {answer['error']}")
        return answer.get("result")

    def lent(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            return host_call(name, args, kwargs)

        call.__name__ = call.__qualname__ = name
        call.__doc__ = f"{name}(...): runs on the host, which checks every argument."
        return call

    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
    for name in cfg.get("host_functions", ()):
        namespace[name] = lent(name)
    send({"ready": True})
    for n, line in enumerate(cmd, start=1):
        request = json.loads(line)
        hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
        soft = math.ceil(_cpu_used() + request["timeout"]) + 1
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))
        reply = _execute(request["code"], namespace, n, cfg)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - the code may have closed or replaced it
                pass
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        send(reply)


if __name__ == "__main__":
    main()

"""Isolated execution of model-written Python code.

``run(code)`` executes a snippet in a fresh sandboxed worker and returns an ``ExecutionResult``;
``Session`` keeps one worker alive for an agent episode so variables and imports survive between
calls (about a millisecond per call instead of a process start).

Covered, with bubblewrap (``isolation_backend() == "bwrap"``) and with the ``unshare`` fallback:

- A separate process in its own network, pid, ipc, uts (and cgroup) namespaces: no network at
  all (only a loopback device that is down), no view of host processes, no signals to them.
- Filesystem: only ``/usr`` (with the ``/bin``, ``/lib*`` links), the dynamic-linker files in
  ``/etc`` and the Python installation and virtualenv are visible, all read-only. ``/root``,
  ``/home``, the project tree, its ``.env``, ``~/.ssh`` and ``/etc/shadow`` are simply absent.
  ``/tmp`` is a private tmpfs capped at 64 MB, fresh per worker and gone when it ends; ``/dev``
  holds only null/zero/full/random/urandom/tty; ``/proc`` shows the sandbox's processes only.
- An empty environment apart from ``PATH``, ``HOME=/tmp`` and ``LANG``: no inherited secrets.
- When the host runs as root, the worker drops to uid 65534 before any code runs (root is exempt
  from the process limit), with no capabilities and ``no_new_privs`` (setuid binaries do not
  elevate). As an ordinary user, a user namespace with further user namespaces disabled.
- Limits: wall clock (the whole process tree is killed), ``RLIMIT_CPU`` (per call and a
  600 s budget per worker), ``RLIMIT_AS`` from ``memory_mb``, ``RLIMIT_NPROC`` of 32 (fork
  bombs), 64 MB per written file, no core dumps, and stdout+stderr capped at 1 MB per call.
- The standard library plus whatever the virtualenv's site-packages holds (e.g. numpy, sympy).

Not covered:

- Kernel exploits and CPU side channels: this is namespaces and rlimits, not a VM; there is no
  seccomp filter, so every system call the kernel allows an unprivileged user is available.
- When the host runs as root, the sandbox uid 65534 is shared: ``RLIMIT_NPROC`` counts all of
  that uid's processes on the host, so concurrent fork bombs in many sandboxes compete for it,
  and code may still create (harmless, empty) nested user namespaces.
- Memory outside ``RLIMIT_AS`` (page cache, the 64 MB tmpfs) and CPU shares: there is no cgroup,
  so a worker can use a whole core until its time limit.
- The worker's answer is not trusted evidence: code can forge its own result line or output.
- The ``unshare`` fallback (util-linux, used where bwrap is missing) builds the same picture by
  hand: new namespaces, a tmpfs root holding read-only binds of the same paths, a private
  size-capped ``/tmp``, then ``chroot`` and the same privilege drop and limits. Its ``/dev``
  has only null/zero/random/urandom. Both backends pass the same attack tests. With
  ``allow_unisolated=True`` and no backend, only the limits, a clean environment and a
  temporary working directory apply.
"""

from sandbox.executor import (
    ExecutionResult,
    SandboxUnavailable,
    Session,
    isolation_backend,
    run,
)

__all__ = ["ExecutionResult", "SandboxUnavailable", "Session", "isolation_backend", "run"]

"""Adversarial tests: each runs one attack and checks it is contained and the host unchanged."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

import sandbox

pytestmark = [
    pytest.mark.usefixtures("sandbox_backend"),  # every test runs on both backends
]


PROJECT = Path(__file__).resolve().parent.parent
VENV_SITE = Path(os.__file__).parent  # the stdlib; read-only inside
TIMEOUT = 3.0


def lent_retrieve(query: str, k: int = 3) -> list[dict[str, str]]:
    """What agents lend the sandbox: a retrieval function that checks its arguments."""
    if not isinstance(query, str) or not isinstance(k, int) or not 1 <= k <= 10:
        raise ValueError("retrieve(query: str, k: int from 1 to 10)")
    return [{"title": "Bergen", "text": f"a passage about {query[:40]}"}][:k]


def attack(code: str, timeout: float = TIMEOUT, memory_mb: int = 1024) -> sandbox.ExecutionResult:
    """Run ``code`` as a model would: in a fresh session with the retrieval channel open, so
    every attack below also runs with the one way out the sandbox has."""
    with sandbox.Session(
        timeout=timeout, memory_mb=memory_mb, host_functions={"retrieve": lent_retrieve}
    ) as session:
        return session.run(code)


def host_processes_with(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if marker.encode() in cmdline:
            found.append(int(entry))
    return found


def test_read_etc_shadow() -> None:
    result = attack("open('/etc/shadow').read()")
    assert result.error in ("FileNotFoundError", "PermissionError")


def test_read_host_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-123")
    result = attack(f"open({str(secret)!r}).read()")
    assert result.error == "FileNotFoundError"
    assert "TOP-SECRET-123" not in result.observation()


def test_read_fake_dotenv(tmp_path: Path) -> None:
    env = tmp_path / "project" / ".env"
    env.parent.mkdir()
    env.write_text("OPENAI_API_KEY=sk-fake-dotenv")
    result = attack(f"open({str(env)!r}).read()")
    assert result.error == "FileNotFoundError"
    assert "sk-fake" not in result.observation()


def test_read_ssh_key_under_home(tmp_path: Path) -> None:
    key = tmp_path / "home" / ".ssh" / "id_rsa"
    key.parent.mkdir(parents=True)
    key.write_text("-----BEGIN FAKE KEY-----")
    result = attack(f"open({str(key)!r}).read()")
    assert result.error == "FileNotFoundError"


def test_root_home_shows_only_python() -> None:
    # /root on the host holds .ssh and more; inside only the interpreter's own path exists.
    result = attack("import os\nos.listdir('/root'), os.path.exists('/root/.ssh/id_rsa')")
    assert result.ok
    assert ".ssh" not in result.value and result.value.endswith("False)")


def test_read_project_sources() -> None:
    target = PROJECT / "pyproject.toml"
    assert target.exists()
    result = attack(f"open({str(target)!r}).read()")
    assert result.error == "FileNotFoundError"


def test_project_dotenv_path_invisible() -> None:
    result = attack(f"import os\nos.path.exists({str(PROJECT / '.env')!r})")
    assert result.value == "False"


def test_write_to_usr() -> None:
    result = attack("open('/usr/pwned', 'w').write('x')")
    assert result.error in ("OSError", "PermissionError")
    assert not Path("/usr/pwned").exists()


def test_write_to_etc() -> None:
    result = attack("open('/etc/pwned', 'w').write('x')")
    assert result.error is not None
    assert not Path("/etc/pwned").exists()


def test_write_into_venv() -> None:
    target = Path(os.__file__).parent / "pwned_module.py"
    result = attack(f"open({str(target)!r}, 'w').write('x')")
    assert result.error in ("OSError", "PermissionError")
    assert not target.exists()


def test_write_into_project() -> None:
    target = PROJECT / "pwned.txt"
    result = attack(f"open({str(target)!r}, 'w').write('x')")
    assert result.error is not None
    assert not target.exists()


def test_write_to_root_home() -> None:
    result = attack("open('/root/pwned', 'w').write('x')")
    assert result.error is not None
    assert not Path("/root/pwned").exists()


def test_tcp_connect_to_host_listener() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
        result = attack(code)
        assert result.error in ("ConnectionRefusedError", "OSError", "TimeoutError")
        with pytest.raises(TimeoutError):
            server.accept()
    finally:
        server.close()


def test_udp_send_to_host() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    port = receiver.getsockname()[1]
    try:
        code = (
            "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"s.sendto(b'leak', ('127.0.0.1', {port}))"
        )
        attack(code)
        with pytest.raises(TimeoutError):
            receiver.recv(16)
    finally:
        receiver.close()


def test_dns_resolution() -> None:
    result = attack("import socket\nsocket.getaddrinfo('example.com', 443)")
    assert result.error == "gaierror"


def test_only_loopback_interface_down() -> None:
    result = attack("import socket\n[n for _, n in socket.if_nameindex()]")
    assert result.value == "['lo']"


def test_parent_env_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_TEST_SECRET", "s3cr3t-value")
    result = attack("import os\nprint(dict(os.environ))\nprint(os.system('env'))")
    assert result.ok and "HOME=/tmp" in result.stdout
    assert "s3cr3t-value" not in result.stdout
    assert "AGENTS_TEST_SECRET" not in result.stdout


def test_fork_bomb() -> None:
    code = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    result = attack(code, timeout=2.0)
    assert result.killed
    started = time.monotonic()
    assert attack("1 + 1").value == "2"  # the host is still responsive
    assert time.monotonic() - started < 3.0


def test_fork_bomb_hits_process_limit() -> None:
    code = (
        "import os, time\nn = 0\ntry:\n    for _ in range(1000):\n"
        "        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\n"
        "        n += 1\nexcept OSError:\n    pass\nn"
    )
    result = attack(code)
    assert result.value is not None and int(result.value) < 64


def test_memory_bomb_bytearray() -> None:
    result = attack("b = bytearray(10**10)", memory_mb=512)
    assert result.error == "MemoryError" or result.kill_reason == "memory"
    assert attack("1").value == "1"


def test_memory_bomb_list_growth() -> None:
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(10**7))"
    result = attack(code, memory_mb=256)
    assert result.error == "MemoryError" or result.kill_reason in ("memory", "crash")


def test_infinite_loop_times_out() -> None:
    started = time.monotonic()
    result = attack("while True:\n    pass", timeout=1.0)
    assert result.kill_reason == "timeout"
    assert time.monotonic() - started < 3.0


def test_cpu_time_limit_kills() -> None:
    code = (
        "import resource\n"
        "resource.setrlimit(resource.RLIMIT_CPU, (1, resource.getrlimit(resource.RLIMIT_CPU)[1]))\n"
        "while True:\n    pass"
    )
    result = attack(code, timeout=4.0)
    assert result.killed and result.kill_reason == "cpu"


def test_raise_limits_upward_fails() -> None:
    code = "import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))"
    result = attack(code)
    assert result.error in ("ValueError", "PermissionError")


def test_huge_output_is_capped() -> None:
    result = attack("while True:\n    print('spam' * 1000)")
    assert result.kill_reason == "output"
    assert len(result.stdout) <= 1_000_000


def test_os_system_cannot_touch_host(tmp_path: Path) -> None:
    target = tmp_path / "from_os_system"
    result = attack(f"import os\nos.system('id; touch {target}')")
    assert "uid=65534" in result.stdout or "uid=" in result.stdout
    assert not target.exists()


def test_subprocess_cannot_touch_host(tmp_path: Path) -> None:
    sentinel = tmp_path / "sentinel"
    sentinel.write_text("intact")
    code = (
        "import subprocess\n"
        f"subprocess.run(['sh', '-c', 'echo hi; echo gone > {sentinel}; rm -f {sentinel}'])"
    )
    result = attack(code)
    assert "hi" in result.stdout
    assert sentinel.read_text() == "intact"


def test_setuid_binary_does_not_elevate() -> None:
    result = attack("import os\nos.system('mount -t tmpfs none /usr 2>&1; id -u')")
    assert "65534" in result.stdout
    assert os.listdir("/usr")  # host /usr untouched


def test_ctypes_kill_host_process() -> None:
    code = (
        "import ctypes, signal\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        f"libc.kill({os.getpid()}, signal.SIGKILL), ctypes.get_errno()"
    )
    result = attack(code)
    assert result.value is not None and result.value.startswith("(-1,")
    assert os.getpid()  # still alive to assert anything


def test_ctypes_ptrace_attach() -> None:
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "PTRACE_ATTACH = 16\nlibc.ptrace(PTRACE_ATTACH, 1, 0, 0)"
    )
    assert attack(code).value == "-1"


def test_ctypes_unshare_namespaces() -> None:
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000\n"
        "libc.unshare(CLONE_NEWNS | CLONE_NEWNET)"
    )
    assert attack(code).value == "-1"


def test_ctypes_setns_to_init() -> None:
    code = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "fd = os.open('/proc/1/ns/net', os.O_RDONLY)\nlibc.setns(fd, 0)"
    )
    result = attack(code)
    assert result.value == "-1" or result.error == "PermissionError"


def test_read_pid1_environ() -> None:
    result = attack("open('/proc/1/environ', 'rb').read()")
    assert result.error == "PermissionError"


def test_kill_parent_process() -> None:
    result = attack("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)")
    assert result.error == "PermissionError" or result.killed
    assert attack("2 + 2").value == "4"


def test_kill_host_pid_by_number() -> None:
    result = attack(f"import os, signal\nos.kill({os.getpid()}, signal.SIGTERM)")
    assert result.error in ("ProcessLookupError", "PermissionError")


def test_proc_shows_no_host_processes() -> None:
    code = (
        "import os\npids = [p for p in os.listdir('/proc') if p.isdigit()]\n"
        "cmds = [open(f'/proc/{p}/cmdline', 'rb').read() for p in pids]\n"
        "len(pids), any(b'pytest' in c for c in cmds)"
    )
    result = attack(code)
    count, saw_pytest = result.value.strip("()").split(", ")
    assert int(count) <= 3 and saw_pytest == "False"


def test_host_pid_cmdline_unreadable() -> None:
    result = attack(f"open('/proc/{os.getpid()}/cmdline', 'rb').read()")
    assert result.error == "FileNotFoundError" or b"pytest" not in (result.value or "").encode()


def test_symlink_to_shadow() -> None:
    result = attack("import os\nos.symlink('/etc/shadow', 'x')\nopen('x').read()")
    assert result.error == "FileNotFoundError"


def test_symlink_to_host_secret(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("hidden")
    result = attack(f"import os\nos.symlink({str(secret)!r}, 'x')\nopen('x').read()")
    assert result.error == "FileNotFoundError"
    assert secret.read_text() == "hidden"


def test_dev_mem_and_disks() -> None:
    code = "import os\n[os.path.exists(p) for p in ('/dev/mem', '/dev/sda', '/dev/kmsg')]"
    assert attack(code).value == "[False, False, False]"


def test_mount_syscall() -> None:
    code = (
        "import ctypes\nlibc = ctypes.CDLL(None, use_errno=True)\n"
        "libc.mount(b'none', b'/usr', b'tmpfs', 0, None)"
    )
    assert attack(code).value == "-1"
    assert Path("/usr/bin").exists()


def test_sethostname() -> None:
    before = socket.gethostname()
    result = attack("import ctypes\nctypes.CDLL(None).sethostname(b'pwned', 5)")
    assert result.value == "-1"
    assert socket.gethostname() == before


def test_chroot_and_setuid_root() -> None:
    result = attack("import os\nos.setuid(0)")
    assert result.error == "PermissionError"


def test_kill_all_processes() -> None:
    result = attack("import os, signal\nos.kill(-1, signal.SIGKILL)")
    # nobody owns no other process it could reach; at most the sandbox's own die.
    assert result.killed or result.error == "ProcessLookupError"
    assert attack("3 * 3").value == "9"


def test_huge_file_in_tmp(sandbox_tmp_listing: str) -> None:
    code = "with open('/tmp/big', 'wb') as f:\n    while True:\n        f.write(b'0' * 2**20)"
    result = attack(code)
    assert result.error == "OSError"  # ENOSPC or EFBIG: the tmpfs is capped
    assert attack(sandbox_tmp_listing).value == "[]"


def test_pty_does_not_escape() -> None:
    code = (
        "import pty, os\npid, fd = pty.fork()\nif pid == 0:\n"
        "    os.execv('/bin/sh', ['sh', '-c', 'id -u'])\nos.read(fd, 100)"
    )
    result = attack(code)
    assert result.value is None or "65534" in result.value


def test_sys_modules_tampering_does_not_persist() -> None:
    attack("import sys, json\nsys.modules['json'] = None\njson.dumps = None")
    assert attack("import json\njson.dumps([1])").value == "'[1]'"


def test_builtins_tampering_does_not_persist() -> None:
    attack("import builtins\nbuiltins.len = lambda x: 0")
    assert attack("len('abc')").value == "3"


def test_background_processes_die_with_run() -> None:
    marker = f"4242.{os.getpid()}"
    code = (
        "import os, subprocess\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "if os.fork() == 0:\n    os.setsid()\n"
        f"    os.execv('/bin/sleep', ['sleep', '{marker}1'])\n"
        "import time\ntime.sleep(0.2)"
    )
    result = attack(code)
    assert result.ok
    assert host_processes_with(marker) == []


def test_daemon_thread_dies_with_run() -> None:
    marker = f"9191.{os.getpid()}"
    code = (
        "import threading, subprocess\n"
        f"t = threading.Thread(target=lambda: subprocess.run(['sleep', '{marker}']), daemon=True)\n"
        "t.start()\nimport time\ntime.sleep(0.2)"
    )
    attack(code)
    assert host_processes_with(marker) == []

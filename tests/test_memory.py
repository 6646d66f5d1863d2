"""Peak memory per stage: the sampler sees this process and the processes it started."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import psutil

from agents.memory import PeakMemory

# Run in a fresh interpreter: a test process that has loaded and freed models keeps freed pages
# resident in its allocator, and a new block may reuse them without the resident set growing.
_FREED_BLOCK = """
import json, time
from agents.memory import PeakMemory, tree_rss
before = tree_rss()
with PeakMemory(interval_s=0.05) as peak:
    block = b"\\x01" * (300 * 2**20)  # written, so resident (calloc'd zeros are not)
    time.sleep(0.3)
    del block
print(json.dumps({"before": before, "peak": peak.peak, "after": tree_rss()}))
"""


def test_peak_covers_memory_freed_before_the_end() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _FREED_BLOCK], capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["peak"] - seen["before"] > 250 * 2**20
    assert seen["after"] < seen["peak"]


_HEAP_PAGES = """
import json
import psutil
from agents.memory import release_freed_memory
me = psutil.Process()
blocks = [bytearray(b"\\x01" * 100_000) for _ in range(6000)]  # 600 MB in heap chunks
keep = bytearray(b"\\x01" * 100_000)  # allocated last: the heap top stays in use
held = me.memory_info().rss
del blocks
freed = me.memory_info().rss
release_freed_memory()
print(json.dumps({"held": held, "freed": freed, "released": me.memory_info().rss}))
"""


def test_freed_heap_pages_go_back_to_the_system() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _HEAP_PAGES], capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["freed"] - seen["released"] > 400 * 2**20, seen  # free() alone kept them


def test_children_count_with_the_process_that_started_them() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "b = b'1' * (300 * 2**20); import time; time.sleep(30)"]
    )
    try:
        deadline = time.monotonic() + 20
        while psutil.Process(child.pid).memory_info().rss < 250 * 2**20:
            assert time.monotonic() < deadline, "the child never filled its block"
            time.sleep(0.05)
        with PeakMemory(interval_s=0.05) as peak:
            time.sleep(0.3)
        own = psutil.Process().memory_info().rss
        assert peak.peak - own > 250 * 2**20
    finally:
        child.kill()
        child.wait()

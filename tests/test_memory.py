"""Peak memory per stage: the sampler sees this process and the processes it started."""

from __future__ import annotations

import subprocess
import sys
import time

from agents.memory import PeakMemory, tree_rss


def test_peak_covers_memory_freed_before_the_end() -> None:
    before = tree_rss()
    with PeakMemory(interval_s=0.05) as peak:
        block = b"\x01" * (300 * 2**20)  # 300 MB, written, so resident (calloc'd zeros are not)
        time.sleep(0.3)
        del block
    assert peak.peak - before > 250 * 2**20
    assert tree_rss() < peak.peak


def test_children_count_with_the_process_that_started_them() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", "b = b'1' * (300 * 2**20); import time; time.sleep(30)"]
    )
    try:
        with PeakMemory(interval_s=0.05) as peak:
            time.sleep(1.5)
        alone = PeakMemory()
        alone._sample()
        assert peak.peak >= alone.peak
        assert peak.gb > 0.25
    finally:
        child.kill()
        child.wait()

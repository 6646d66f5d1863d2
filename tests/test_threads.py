"""CPU thread choice: the CPUs a process may use and the user's override."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agents import threads
from agents.config import ConfigError


def test_cgroup_quota_is_read_from_v2_then_v1(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpus(tmp_path) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpus(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpus(tmp_path) is None
    assert threads.cgroup_cpus(tmp_path / "absent") is None


def test_available_cpus_follow_affinity_and_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: None)
    assert threads.available_cpus() == 4
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: 1.5)
    assert threads.available_cpus() == 2
    monkeypatch.setattr(threads, "cgroup_cpus", lambda: 0.2)
    assert threads.available_cpus() == 1


def test_the_user_override_wins_and_bad_values_say_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.delenv(threads.ENV, raising=False)
    assert threads.threads_wanted() == 2
    monkeypatch.setenv(threads.ENV, "1")
    assert threads.threads_wanted() == 1
    monkeypatch.setenv(threads.ENV, "untuned")
    assert threads.threads_wanted() is None
    for bad, said in (("many", "a number of threads"), ("0", "at least 1")):
        monkeypatch.setenv(threads.ENV, bad)
        with pytest.raises(ConfigError, match=said):  # the CLI's one-line, exit-2 error
            threads.threads_wanted()


def test_configure_sets_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv(threads.ENV, "1")
    try:
        assert threads.configure() == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


def test_adapt_drops_to_one_thread_while_contended_and_returns_after(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.delenv(threads.ENV, raising=False)
    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    timings = {2: 0.060, 1: 0.006}  # beside a busy process: the pair waits on each other
    monkeypatch.setattr(threads, "_probe_seconds", lambda n: timings[n])
    try:
        assert threads.adapt(force=True) == 1 == torch.get_num_threads()
        timings.update({2: 0.003, 1: 0.006})  # the other process ended
        assert threads.adapt() == 1  # measured moments ago: not again yet
        assert threads.adapt(force=True) == 2 == torch.get_num_threads()
        monkeypatch.setenv(threads.ENV, "2")  # a fixed count is never second-guessed
        timings.update({2: 0.060, 1: 0.006})
        assert threads.adapt(force=True) == 2
    finally:
        torch.set_num_threads(before)


def test_one_thread_must_win_clearly() -> None:
    assert threads.choose(full=0.010, one=0.009, threads=2) == 2
    assert threads.choose(full=0.010, one=0.005, threads=2) == 1


def test_the_probe_times_real_work() -> None:
    import torch

    before = torch.get_num_threads()
    try:
        assert 0 < threads._probe_seconds(1) < 5
    finally:
        torch.set_num_threads(before)

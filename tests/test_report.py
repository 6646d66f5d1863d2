"""The run report: markdown content and the PNG figure, from a real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents import report
from agents.jobs import report_section
from agents.report import ReportFiles
from agents.store import Store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def render_markdown(store: Store, run_id: str, plot_name: str | None) -> str:
    """The report of a run with its scheme's section, as a scheme run writes it."""
    section = report_section(store.get_run(run_id).scheme)
    return report.render_markdown(store, run_id, plot_name, section)


def write_report(store: Store, run_id: str, out_dir: Path) -> ReportFiles:
    return report.write_report(store, run_id, out_dir, report_section(store.get_run(run_id).scheme))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(f"sqlite:///{tmp_path / 's.db'}")
    yield opened
    opened.close()


def _stage(store: Store, run_id: str, round: int, name: str, metrics: dict[str, Any]) -> None:
    store.start_stage(run_id, round, name)
    store.finish_stage(run_id, round, name, metrics)


def _socratic_run(store: Store) -> str:
    run = store.create_run("socratic", {}, name="tiny")
    store.set_run_status(run.id, "running")
    eval_metrics = {"items": 50, "samples": 1}
    _stage(store, run.id, 0, "eval_base", {"accuracy": 0.4, "seconds": 8.0, **eval_metrics})
    _stage(store, run.id, 0, "warmup", {"examples": 8, "steps": 4, "first_loss": 2.0, "seconds": 1})
    _stage(store, run.id, 0, "eval", {"accuracy": 0.42, "seconds": 10.0, **eval_metrics})
    for t, (acc, solve_s) in enumerate([(0.5, 100.0), (0.55, 300.0)], start=1):
        _stage(store, run.id, t, "solve", {"questions": 20 * t, "samples": 80, "seconds": solve_s})
        verify = {"correct": 30 + t, "incorrect": 40, "unverifiable": 10, "seconds": 5.0}
        _stage(store, run.id, t, "verify", verify)
        _stage(store, run.id, t, "pairs", {"pairs": 12 * t, "questions_with_pairs": 6})
        _stage(store, run.id, t, "train_solver", {"pairs": 12 * t, "steps": 3, "seconds": 50.0})
        _stage(store, run.id, t, "zones", {"mastered": 3, "learning": 5 + t, "too_hard": 2})
        _stage(store, run.id, t, "refine", {"proposed": 10, "malformed": 1})
        quality = {"checked": 9, "accepted": 6, "dropped": 3, "reasons": {"dup": 2, "no_answer": 1}}
        _stage(store, run.id, t, "quality", quality)
        _stage(store, run.id, t, "utility", {"problems": 6, "mean_utility": 0.3456})
        by_zone = {"mastered": 3, "learning": 5 + t, "too_hard": 2, "unseen": 4}
        _stage(store, run.id, t, "curriculum", {"size": 14 + t, "added": 6, "by_zone": by_zone})
        _stage(store, run.id, t, "eval", {"accuracy": acc, "seconds": 10.0, **eval_metrics})
    store.record_call(
        "m",
        run_id=run.id,
        role="teacher",
        requests=1,
        samples=2,
        cached_samples=1,
        prompt_tokens=10,
        completion_tokens=20,
        latency_s=0.5,
    )
    store.record_call("m", run_id=run.id, role="teacher", samples=3, prompt_tokens=5)
    return run.id


def _row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{markdown}")


def test_accuracy_table_has_every_round_and_the_change_from_the_base_model(store: Store) -> None:
    markdown = render_markdown(store, _socratic_run(store), None)
    assert markdown.startswith("# Run ")
    assert "- scheme: `socratic`" in markdown and "- status: **running**" in markdown
    assert "- name: tiny" in markdown
    assert "change vs base model" in markdown
    assert _row(markdown, "base model")[1:3] == ["0.400", "—"]
    assert _row(markdown, "before round 1")[1:4] == ["0.420", "+0.020", "50"]
    assert _row(markdown, "after round 1")[1:3] == ["0.500", "+0.100"]
    assert _row(markdown, "after round 2")[1:3] == ["0.550", "+0.150"]
    assert "![plot]" not in markdown


def test_round_table_shows_verdicts_zones_new_problems_and_curriculum(store: Store) -> None:
    markdown = render_markdown(store, _socratic_run(store), None)
    assert _row(markdown, "2") == [
        "2",
        "40",
        "32 / 40 / 10",
        "24",
        "3 / 7 / 2",
        "10 → 6 (dup 2, no_answer 1)",
        "0.346",
        "16 (+6)",
    ]


def test_usage_is_summed_per_role_and_model(store: Store) -> None:
    markdown = render_markdown(store, _socratic_run(store), None)
    # batches, requests, samples, cached samples, prompt tokens, completion tokens, retries,
    # seconds
    row = ["teacher", "`m`", "2", "2", "5", "1", "15", "20", "0", "0.5"]
    assert _row(markdown, "teacher") == row


def test_time_per_stage_is_sorted_longest_first_with_shares(store: Store) -> None:
    markdown = render_markdown(store, _socratic_run(store), None)
    section = markdown.split("## Time per stage", 1)[1]
    names = [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| `")]
    assert names[:4] == ["`solve`", "`train_solver`", "`eval`", "`verify`"]
    # 400 s of about 549 s (solve, train_solver, eval, verify, eval_base, warmup, the rest ~0).
    solve = _row(section, "`solve`")
    assert solve[1:3] == ["2", "6m 40s"]
    share = float(solve[3].rstrip("%"))
    assert 72.0 < share < 73.0
    assert _row(section, "total")[3] == "100.0%"
    assert "peak memory" not in section  # no stage recorded it: no column of dashes


def test_time_per_stage_shows_each_stages_peak_memory(store: Store) -> None:
    run = store.create_run("socratic", {})
    _stage(store, run.id, 0, "solve", {"seconds": 30.0, "peak_rss_gb": 2.5})
    _stage(store, run.id, 1, "solve", {"seconds": 30.0, "peak_rss_gb": 3.25})
    _stage(store, run.id, 0, "eval", {"seconds": 10.0})
    markdown = render_markdown(store, run.id, None)
    section = markdown.split("## Time per stage", 1)[1]
    assert "| peak memory |" in section
    assert _row(section, "`solve`")[4] == "3.2 GB"  # the larger of its rounds
    assert _row(section, "`eval`")[4] == "—" and _row(section, "total")[4] == "3.2 GB"
    assert "peak_rss_gb" not in markdown.split("## Time per stage", 1)[0]  # not a stage metric


def test_write_report_writes_markdown_and_a_real_png(store: Store, tmp_path: Path) -> None:
    run_id = _socratic_run(store)
    files = write_report(store, run_id, tmp_path / "reports" / run_id)
    assert isinstance(files, ReportFiles)
    assert files.markdown.read_text().count("![plot](report.png)") == 1
    assert files.plot is not None and files.plot.name == "report.png"
    data = files.plot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    assert sorted(p.name for p in files.markdown.parent.iterdir()) == ["report.md", "report.png"]


def test_eval_only_run_has_no_round_table(store: Store, tmp_path: Path) -> None:
    run = store.create_run("eval", {})
    _stage(store, run.id, 0, "eval", {"accuracy": 0.625, "items": 8, "samples": 1})
    files = write_report(store, run.id, tmp_path / "out")
    markdown = files.markdown.read_text()
    assert _row(markdown, "evaluated model")[1] == "0.625"
    assert "change" not in markdown
    assert "## Rounds" not in markdown and "## Model usage" not in markdown
    assert files.plot is not None and files.plot.read_bytes().startswith(PNG_MAGIC)


def test_sft_run_lists_its_train_stage_metrics(store: Store) -> None:
    run = store.create_run("sft", {})
    metrics = {"examples": 32, "steps": 8, "first_loss": 2.5, "last_loss": 1.25, "seconds": 90}
    _stage(store, run.id, 0, "train", metrics)
    markdown = render_markdown(store, run.id, "report.png")
    assert "## Held-out accuracy" not in markdown and "## Rounds" not in markdown
    assert "first_loss 2.500, last_loss 1.250" in _row(markdown, "0")[2]
    assert _row(markdown, "`train`")[2:] == ["1m 30s", "100.0%"]
    assert "![plot](report.png)" in markdown


def test_run_without_stages_says_nothing_yet_and_has_no_plot(store: Store, tmp_path: Path) -> None:
    run = store.create_run("socratic", {})
    files = write_report(store, run.id, tmp_path / "empty")
    markdown = files.markdown.read_text()
    assert "Nothing recorded for this run yet" in markdown
    assert "##" not in markdown and "![plot]" not in markdown
    assert files.plot is None and not (tmp_path / "empty" / "report.png").exists()


def test_failed_and_running_stages_are_shown(store: Store) -> None:
    run = store.create_run("socratic", {})
    _stage(store, run.id, 0, "eval", {"accuracy": 0.5})
    store.start_stage(run.id, 1, "solve")
    store.finish_stage(run.id, 1, "solve", {"questions": 3}, status="failed")
    store.start_stage(run.id, 1, "verify")
    store.set_run_status(run.id, "failed", notes="engine went away")
    markdown = render_markdown(store, run.id, None)
    assert "- status: **failed**" in markdown and "- notes: engine went away" in markdown
    assert "- round 1 `solve`: **failed**" in markdown
    assert "- round 1 `verify`: **running**" in markdown
    assert _row(markdown, "1")[:2] == ["1", "3"]


def _agent_eval(label: str, accuracy: float, math: float, factual: float) -> dict[str, Any]:
    return {
        "label": label,
        "items": 30,
        "accuracy": accuracy,
        "accuracy_math": math,
        "accuracy_factual": factual,
        "answered": 0.9,
        "mean_steps": 2.5,
        "parse_errors": 3,
        "exec_errors": 1,
        "seconds": 40.0,
    }


def _agent_distill_run(store: Store, *, teacher: float = 0.7) -> str:
    run = store.create_run("agent-distill", {})
    store.set_run_status(run.id, "finished")
    _stage(store, run.id, 0, "setup", {"tasks": 60, "heldout": 30})
    cot = {"answers": 60, "items": 60, "accuracy": 0.6, "accuracy_math": 0.7, "seconds": 90.0}
    _stage(store, run.id, 0, "teacher_cot", cot)
    agent = {"trajectories": 60, "with_prefix": 58, "items": 60, "accuracy": 0.55}
    agent |= {"answered": 0.8, "mean_steps": 3.1, "parse_errors": 7, "exec_errors": 9}
    _stage(store, run.id, 0, "teacher_agent", {**agent, "seconds": 600.0})
    kept = {"trajectories": 60, "kept": 30, "keep_rate": 0.5, "judged": 4, "judged_correct": 1}
    kept |= {"dropped_wrong_answer": 18, "dropped_parse_error": 5, "dropped_step_limit": 7}
    _stage(store, run.id, 0, "filter", {**kept, "kept_with_exec_errors": 6})
    train = {"examples": 30, "steps": 8, "first_loss": 1.5, "last_loss": 0.5, "seconds": 300}
    _stage(store, run.id, 0, "train_student", train)
    _stage(store, run.id, 0, "train_cot", {"skipped": "cot_baseline is off"})
    _stage(store, run.id, 0, "eval_student_base", _agent_eval("student before", 0.1, 0.15, 0.0))
    _stage(store, run.id, 0, "eval_teacher", _agent_eval("teacher (agent)", teacher, 0.8, 0.5))
    _stage(store, run.id, 0, "eval_student", _agent_eval("student after", 0.3, 0.35, 0.2))
    _stage(store, run.id, 0, "eval_student_sc", _agent_eval("student + SC", 0.35, 0.4, 0.25))
    _stage(store, run.id, 0, "eval_cot", {"skipped": "no CoT baseline was trained"})
    return run.id


def test_agent_distill_section_has_evals_trajectories_and_gap_closed(store: Store) -> None:
    markdown = render_markdown(store, _agent_distill_run(store), None)
    section = markdown.split("## Agent distillation", 1)[1].split("\n## ", 1)[0]
    # agent, items, accuracy, math, factual, answered, mean steps, parse errors
    assert _row(section, "student before") == [
        "student before", "30", "0.100", "0.150", "0.000", "0.900", "2.500", "3"
    ]  # fmt: skip
    assert _row(section, "teacher (agent)")[1:5] == ["30", "0.700", "0.800", "0.500"]
    assert _row(section, "student after")[2] == "0.300"
    assert _row(section, "student + SC")[2] == "0.350"
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 5  # header + the four finished evaluations; eval_cot was skipped
    assert "- teacher chain of thought: 0.600 correct" in section
    assert "- teacher agent: 0.550 correct on 60 tasks" in section
    assert (
        "- filter: kept 30 / 60 (50.0%); dropped: wrong answer 18, parse error 5, step limit 7; "
        "kept with execution errors: 6; judged by the teacher: 4, 1 correct"
    ) in section
    # (0.3 - 0.1) / (0.7 - 0.1) = 1/3
    assert "Gap closed: **0.333** = (student after 0.300 − before 0.100)" in section
    assert "`eval_cot` (no CoT baseline was trained)" in section
    # those stages are not dumped again among the stage metrics; the others are
    stage_metrics = markdown.split("## Stage metrics", 1)[1].split("\n## ", 1)[0]
    assert "`setup`" in stage_metrics and "`train_student`" in stage_metrics
    for name in ("eval_student", "eval_teacher", "filter", "teacher_agent", "teacher_cot"):
        assert f"`{name}`" not in stage_metrics
    assert "## Held-out accuracy" not in markdown and "## Rounds" not in markdown


def test_gap_closed_is_a_dash_when_the_teacher_does_not_beat_the_base(store: Store) -> None:
    markdown = render_markdown(store, _agent_distill_run(store, teacher=0.1), None)
    assert "Gap closed: — (the teacher does not beat the student before training)" in markdown


def test_agent_distill_report_writes_a_png(store: Store, tmp_path: Path) -> None:
    run_id = _agent_distill_run(store)
    files = write_report(store, run_id, tmp_path / "reports" / run_id)
    assert files.plot is not None
    data = files.plot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    assert "![plot](report.png)" in files.markdown.read_text()


def test_agent_distill_run_without_evaluations_yet(store: Store, tmp_path: Path) -> None:
    run = store.create_run("agent-distill", {})
    _stage(store, run.id, 0, "setup", {"tasks": 6, "heldout": 3})
    store.start_stage(run.id, 0, "teacher_cot")
    files = write_report(store, run.id, tmp_path / "early")
    markdown = files.markdown.read_text()
    assert "No held-out evaluation has finished yet." in markdown
    assert "Gap closed: — (needs" in markdown
    assert "- round 0 `teacher_cot`: **running**" in markdown
    assert files.plot is not None  # the setup stage's time, and "no data" panels


def test_socratic_monitor_flags_a_proxy_rising_while_heldout_falls(store: Store) -> None:
    """Round 2's DPO reward accuracy and own-curriculum success rise while held-out accuracy
    falls: the report flags it, and a round where both rise is not flagged."""
    from agents.reporting import RunView
    from agents.schemes.socratic.report import proxies

    run = store.create_run("socratic", {}, name="monitor")
    scores = {str(i): 1.0 if i < 20 else 0.0 for i in range(50)}
    _stage(
        store, run.id, 0, "eval", {"accuracy": 0.4, "items": 50, "samples": 1, "_scores": scores}
    )
    rounds = [(0.6, 30, 0.5), (0.9, 45, 0.3)]  # reward accuracy, correct of 60, held-out
    for t, (reward, correct, held) in enumerate(rounds, start=1):
        _stage(store, run.id, t, "verify", {"correct": correct, "incorrect": 60 - correct})
        _stage(store, run.id, t, "train_solver", {"reward_accuracy": reward})
        after = {str(i): 1.0 if i < round(held * 50) else 0.0 for i in range(50)}
        _stage(
            store,
            run.id,
            t,
            "eval",
            {"accuracy": held, "items": 50, "samples": 1, "_scores": after},
        )
    monitor = proxies(RunView.load(store, run.id))
    assert [(t, flag) for t, *_, flag in monitor] == [(1, False), (2, True)]
    assert monitor[1][1:4] == (0.9, 0.75, 0.3)
    text = render_markdown(store, run.id, None)
    assert "**proxy up, held-out down**" in text
    # Paired comparisons over the same 50 questions: the first checkpoint against the last.
    assert "before round 1 → after round 2 | 0.400 → 0.300 | -0.100" in text
    assert "McNemar exact" in text

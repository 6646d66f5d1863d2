"""The "Strategy teaching" part of the run report, from a real store and strategy library."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_strategy_library import HashEmbedding

from agents import report
from agents.jobs import report_section
from agents.report import ReportFiles
from agents.store import Store, Workspace
from strategies import StrategyLibrary

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _paired(difference: float, low: float, high: float, p: float) -> dict[str, Any]:
    return {"difference": difference, "ci": [low, high], "p_value": p, "test": "McNemar exact"}


DIALOGUES = {
    "student": {
        "n": 10,
        "success": 0.2,
        "success_ci": [0.0, 0.5],
        "action_recall": 0.45,
        "action_recall_ci": [0.25, 0.65],
        "violations": 1.5,
        "dialogues_with_violations": 0.6,
        "dialogues_with_violations_ci": [0.3, 0.9],
        "turns": 4.25,
        "tool_calls": 2.5,
        "tool_errors": 3,
        "ended": {"customer_stop": 6, "max_turns": 4},
    },
    "student_strategies": {
        "n": 10,
        "success": 0.4,
        "success_ci": [0.1, 0.7],
        "action_recall": 0.7,
        "action_recall_ci": [0.5, 0.9],
        "violations": 0.5,
        "dialogues_with_violations": 0.3,
        "dialogues_with_violations_ci": [0.1, 0.6],
        "turns": 5.0,
        "tool_calls": 3.0,
        "tool_errors": 1,
        "ended": {"customer_stop": 10},
        "vs_student": {
            "success": _paired(0.2, -0.1, 0.5, 0.625),
            "action_recall": _paired(0.25, 0.05, 0.45, 0.031),
        },
    },
    "teacher": {
        "n": 10,
        "success": 0.6,
        "success_ci": [0.3, 0.9],
        "action_recall": 0.85,
        "action_recall_ci": [0.7, 1.0],
        "violations": 0.1,
        "dialogues_with_violations": 0.1,
        "dialogues_with_violations_ci": [0.0, 0.3],
        "turns": 6.5,
        "tool_calls": 4.0,
        "tool_errors": 0,
        "ended": {"customer_stop": 9, "transfer": 1},
        "vs_student": {"success": _paired(0.4, 0.1, 0.7, 0.0313)},
    },
}
JUDGE = {
    "scenarios": 12,
    "judge": "builtin:qwen2.5-coder-1.5b",
    "_judge_is_teacher": False,
    "strategies_vs_alone": {
        "win_rate": 0.708,
        "ci": [0.5, 0.875],
        "p_value": 0.18,
        "wins": 7,
        "ties": 3,
        "losses": 2,
        "identical": 1,
        "unjudged": 0,
    },
    "strategies_vs_teacher": {
        "win_rate": 0.318,
        "ci": [0.136, 0.5],
        "p_value": 0.289,
        "wins": 2,
        "ties": 3,
        "losses": 6,
        "identical": 0,
        "unjudged": 1,
    },
    "alone_vs_teacher": {
        "win_rate": 0.25,
        "ci": [0.083, 0.458],
        "p_value": 0.109,
        "wins": 1,
        "ties": 4,
        "losses": 7,
        "identical": 0,
        "unjudged": 0,
    },
}


def render_markdown(store: Store, run_id: str, plot_name: str | None) -> str:
    """The report of a run with its scheme's section, as a scheme run writes it."""
    section = report_section(store.get_run(run_id).scheme)
    return report.render_markdown(store, run_id, plot_name, section)


def write_report(store: Store, run_id: str, out_dir: Path) -> ReportFiles:
    return report.write_report(store, run_id, out_dir, report_section(store.get_run(run_id).scheme))


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


@pytest.fixture
def store(workspace: Workspace) -> Iterator[Store]:
    opened = Store.open(workspace)
    yield opened
    opened.close()


def _stage(store: Store, run_id: str, round: int, name: str, metrics: dict[str, Any]) -> None:
    store.start_stage(run_id, round, name)
    store.commit_stage(run_id, round, name, {**metrics, "seconds": 30.0 * (round + 1)})


def _scenarios(dialogues: int, preference: float, shortfalls: int, rule: int) -> dict[str, Any]:
    return {
        "dialogues": dialogues,
        "student_turns": dialogues * 4,
        "judged": dialogues * 4,
        "student_preference": preference,
        "shortfalls": shortfalls,
        "rule_shortfalls": rule,
        "teacher_scenarios": 2,
        "scenarios": shortfalls + 2,
    }


def _refine(scenarios: int, closed: int, new: int, edited: int, size: int) -> dict[str, Any]:
    return {
        "scenarios": scenarios,
        "closed": closed,
        "iterations": scenarios * 2,
        "new_strategies": new,
        "edited_strategies": edited,
        "student_preference_first": 0.071,
        "student_preference_last": 0.643,
        "library_size": size,
    }


def _teaching_run(
    store: Store, *, evaluated: bool = True, judge: dict[str, Any] | None = None
) -> str:
    run = store.create_run("strategy-teaching", {}, name="retail-small")
    store.set_run_status(run.id, "finished" if evaluated else "running")
    setup = {"domain": "retail", "train_tasks": 8, "heldout_tasks": 5}
    _stage(store, run.id, 0, "setup", {**setup, "library": "retail", "library_size": 0})
    _stage(store, run.id, 1, "scenarios", _scenarios(4, 0.344, 5, 3))
    _stage(store, run.id, 1, "refine", _refine(7, 4, 5, 1, 5))
    _stage(store, run.id, 2, "scenarios", _scenarios(4, 0.469, 2, 1))
    _stage(store, run.id, 2, "refine", _refine(4, 3, 2, 0, 7))
    if evaluated:
        _stage(store, run.id, 2, "eval_dialogues", DIALOGUES)
        _stage(store, run.id, 2, "eval_judge", judge or JUDGE)
    return run.id


def _library(store: Store, workspace: Workspace) -> StrategyLibrary:
    return StrategyLibrary.open(store, workspace.chroma_dir, "retail", embedding=HashEmbedding())


def _add_strategies(library: StrategyLibrary, run_id: str) -> list[int]:
    """Three strategies of the run (preference gains 1.0, 0.5 and none), one of another run."""
    common = {"author": "teacher:big", "teacher": "big", "domain": "retail", "run_id": run_id}
    small = library.add(
        "A customer asks for a refund",
        "Check the order status before promising a refund.",
        round=1,
        score_before=0.0,
        teacher_score=1.0,
        **common,
    )
    library.record_scores([small.id], score_after=0.5)  # type: ignore[list-item]
    big = library.add(
        "A customer asks to cancel an order",
        "Ask the customer to identify themselves (email,\nor name and zip) first.",
        round=2,
        score_before=0.0,
        teacher_score=1.0,
        **common,
    )
    library.record_scores([big.id], score_after=1.0)  # type: ignore[list-item]
    library.set_status(big.id, "approved", author="reviewer:ann")  # type: ignore[arg-type]
    untried = library.add(
        "A customer is angry", "Apologise once, then solve the problem.", round=2, **common
    )
    other = library.add(
        "Any situation",
        "A strategy from another run.",
        author="teacher:big",
        run_id="someone-else",
        score_before=0.0,
        teacher_score=1.0,
    )
    library.record_scores([other.id], score_after=1.0)  # type: ignore[list-item]
    return [big.id, small.id, untried.id]  # type: ignore[list-item]


def _section(markdown: str, title: str) -> str:
    """The text under ``title`` (a ## or ### heading) up to the next heading."""
    return markdown.split(f" {title}\n", 1)[1].split("\n#", 1)[0]


def _first_cells(table: str) -> list[str]:
    """The first cell of each table row, header included (the alignment rule left out)."""
    return [
        line.split("|")[1].strip()
        for line in table.splitlines()
        if line.startswith("| ") and "---" not in line
    ]


def _row(markdown: str, first_cell: str) -> list[str]:
    """The cells of the table row whose first cell is ``first_cell``."""
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{markdown}")


def test_held_out_comparison_table_per_agent_with_intervals(store: Store) -> None:
    markdown = render_markdown(store, _teaching_run(store), None)
    assert "## Strategy teaching" in markdown
    assert (
        "Setup: domain `retail`, 8 training tasks, 5 held-out tasks, "
        "library `retail` (0 strategies at the start)."
    ) in markdown
    table = _section(markdown, "Held-out comparison")
    assert _row(table, "agent") == [
        "agent",
        "judged win rate vs student alone",
        "judged win rate vs teacher",
        "task success",
        "success − student alone (paired)",
        "gold-action recall",
        "dialogues with a violation",
    ]
    assert _row(table, "student alone")[1:] == [
        "—", "0.250 (0.083–0.458)", "0.200 (0.000–0.500)", "—", "0.450 (0.250–0.650)",
        "0.600 (0.300–0.900)",
    ]  # fmt: skip
    assert _row(table, "student + learned strategies")[1:5] == [
        "0.708 (0.500–0.875)", "0.318 (0.136–0.500)", "0.400 (0.100–0.700)",
        "+0.200 (-0.100–+0.500), p 0.625",
    ]  # fmt: skip
    # the teacher's win rate over the student alone is one minus the student's over it
    assert _row(table, "teacher")[1:4] == ["0.750 (0.542–0.917)", "—", "0.600 (0.300–0.900)"]
    assert "transfer" not in table  # no transfer student in this run: no guessed rows
    assert "Judge `builtin:qwen2.5-coder-1.5b`; 12 held-out scenarios judged" in table
    assert "self-preference" not in table and "10 full held-out dialogues per agent" in table


def test_a_judge_that_is_the_teacher_is_called_out(store: Store) -> None:
    run_id = _teaching_run(store, judge={**JUDGE, "judge": "t", "_judge_is_teacher": True})
    table = _section(render_markdown(store, run_id, None), "Held-out comparison")
    assert "which is the teacher: it grades its own replies" in table


def test_judged_next_replies_table_per_comparison(store: Store) -> None:
    markdown = render_markdown(store, _teaching_run(store), None)
    table = _section(markdown, "Judged next replies")
    assert "| comparison (A vs B) | win rate of A (95% CI) | sign test p |" in table
    # win rate (CI), p, wins / ties / losses, identical replies (among the ties), unjudged
    assert _row(table, "student + strategies vs student alone") == [
        "student + strategies vs student alone", "0.708 (0.500–0.875)", "0.180", "7 / 3 / 2",
        "1", "0",
    ]  # fmt: skip
    assert _row(table, "student + strategies vs teacher")[3:] == ["2 / 3 / 6", "0", "1"]
    assert "generic" not in table  # comparisons the run did not make have no row


def test_held_out_dialogues_table_per_agent(store: Store) -> None:
    table = _section(render_markdown(store, _teaching_run(store), None), "Held-out dialogues")
    assert _row(table, "student alone")[1:] == [
        "4.250", "2.500", "3", "1.500", "—", "customer_stop 6, max_turns 4"
    ]  # fmt: skip
    assert _row(table, "student + learned strategies")[5] == "+0.250 (+0.050–+0.450), p 0.031"


def test_rounds_table_has_scenarios_closed_strategies_and_preferences(store: Store) -> None:
    markdown = render_markdown(store, _teaching_run(store), None)
    table = _section(markdown, "Rounds")
    # round, dialogues, student preferred (turns), shortfalls (rule), teacher scenarios,
    # scenarios, closed, new / edited, student preferred first → last try, library size
    assert _row(table, "round")[2] == "student preferred, turns"
    assert _row(table, "round")[8] == "student preferred, first → last try"
    assert _row(table, "1") == [
        "1", "4", "0.344", "5 (3)", "2", "7", "4", "5 / 1", "0.071 → 0.643", "5"
    ]  # fmt: skip
    assert _row(table, "2")[1:8] == ["4", "0.469", "2 (1)", "2", "4", "3", "2 / 0"]
    assert "score" not in table
    assert "mean preference (0 to 1) for the student's reply over the teacher's" in table
    assert "\n## Rounds" not in markdown  # no Socratic round table for this scheme
    # the scheme's stages are not dumped again among the stage metrics
    assert "## Stage metrics" not in markdown
    assert "`eval_judge`" in _section(markdown, "Time per stage")


def test_strategies_learned_largest_gain_first(store: Store, workspace: Workspace) -> None:
    run_id = _teaching_run(store)
    big, small, untried = _add_strategies(_library(store, workspace), run_id)
    markdown = render_markdown(store, run_id, None)
    table = _section(markdown, "Strategies learned in this run")
    assert "This run wrote 3 strategies (approved 1, proposed 2)" in table
    assert _first_cells(table) == ["id", str(big), str(small), str(untried)]  # gains 1, 0.5, none
    assert _row(table, "id")[6:] == ["student preferred before → after"]  # 1 − before: no column
    assert _row(table, str(big)) == [
        str(big),
        "approved",
        "2",
        "2",
        "A customer asks to cancel an order",
        "Ask the customer to identify themselves (email, or name and zip) first.",
        "0.000 → 1.000",
    ]
    assert _row(table, str(small))[6:] == ["0.000 → 0.500"]
    assert _row(table, str(untried))[6:] == ["—"]
    assert "another run" not in markdown


def test_at_most_eight_strategies_are_listed(store: Store, workspace: Workspace) -> None:
    run_id = _teaching_run(store)
    library = _library(store, workspace)
    for i in range(10):
        library.add(f"situation {i}", f"strategy number {i}", author="t", run_id=run_id, round=1)
    markdown = render_markdown(store, run_id, None)
    table = _section(markdown, "Strategies learned in this run")
    assert "This run wrote 10 strategies (proposed 10); the 8 shown" in table
    assert len(_first_cells(table)) == 1 + 8


def test_strategy_teaching_report_writes_a_png(
    store: Store, workspace: Workspace, tmp_path: Path
) -> None:
    run_id = _teaching_run(store)
    _add_strategies(_library(store, workspace), run_id)
    files = write_report(store, run_id, tmp_path / "reports" / run_id)
    assert files.plot is not None
    data = files.plot.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 20_000
    assert "![plot](report.png)" in files.markdown.read_text()


def test_run_without_evaluations_or_strategy_tables(tmp_path: Path) -> None:
    # A plain store that never opened a library: the report reads no strategy table.
    store = Store(f"sqlite:///{tmp_path / 'plain.db'}")
    try:
        run_id = _teaching_run(store, evaluated=False)
        store.start_stage(run_id, 2, "eval_dialogues")
        files = write_report(store, run_id, tmp_path / "early")
    finally:
        store.close()
    markdown = files.markdown.read_text()
    assert "No held-out evaluation has finished yet." in markdown
    assert "### Held-out dialogues" not in markdown
    assert "### Judged next replies" not in markdown
    assert "### Strategies learned" not in markdown
    assert "- round 2 `eval_dialogues`: **running**" in markdown
    assert _row(_section(markdown, "Rounds"), "2")[6] == "3"
    assert files.plot is not None and files.plot.read_bytes().startswith(PNG_MAGIC)


def test_missing_metrics_are_dashes_not_guesses(store: Store) -> None:
    run = store.create_run("strategy-teaching", {})
    _stage(store, run.id, 1, "scenarios", {"dialogues": 3, "scenarios": 2})
    _stage(store, run.id, 2, "eval_dialogues", {"student": {"success": 0.5}})
    markdown = render_markdown(store, run.id, None)
    assert "Setup:" not in markdown
    rounds = _section(markdown, "Rounds")
    assert _row(rounds, "round") == ["round", "dialogues", "scenarios"]  # dash-only columns go
    assert _row(rounds, "1") == ["1", "3", "2"]
    assert "Student preferred:" not in rounds  # no note for a column that is not there
    assert _row(_section(markdown, "Held-out comparison"), "student alone") == [
        "student alone",
        "0.500",
    ]
    assert "### Held-out dialogues" not in markdown  # nothing but dashes: no table

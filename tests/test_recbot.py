"""The RecBot scheme end to end on scripted engines: setup on a real (small) catalog, teacher
episodes, the filter, real LoRA training of a tiny student, every evaluation, the report, resume.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from catalog_world import FILMS, RATINGS
from recbot_world import PlainSimulator, ScriptedRecBot

from agents.cli import main
from agents.schemes.recbot import RecBotJob, RecBotRun
from agents.schemes.recbot.episode import PARSER_PREFIX, STUDENT_PARSER_PREFIX
from agents.store import Store, Workspace
from tools.catalog import Catalog, CatalogData, Rating

# Enough users with a history for goals: two tastes, as in the catalog tests.
USERS = [
    *RATINGS,
    *(
        Rating(str(u), i, 4.0 + (n % 2), 100 * u + n)
        for u in range(10, 22)
        for n, i in enumerate(
            ["1", "2", "4", "5", "6", "7", "8", "3"]
            if u % 2
            else ["3", "9", "4", "5", "7", "8", "6", "2"]
        )
    ),
]


def catalog_factory(root: Path):
    def build(heldout: set[str]) -> Catalog:
        data = CatalogData("films", list(FILMS), list(USERS))
        train = [r for r in USERS if r.user not in heldout]
        return Catalog.build(data, root / "catalog", train_ratings=train, factors=4)

    return build


def config(model: Path, **overrides: Any) -> RecBotJob:
    data: dict[str, Any] = {
        "teacher": "scripted:teacher",
        "student": str(model),
        "simulator": "scripted:simulator",
        "users": {"train": 4, "heldout": 3, "min_history": 3, "max_turns": 3},
        "episode": {"k": 3},
        "training": {"max_steps": 2, "batch_size": 2, "max_length": 1024},
        **overrides,
    }
    return RecBotJob.model_validate(data)


@dataclass
class Finished:
    root: Path
    run: RecBotRun
    world: dict[str, Any]


def _world() -> dict[str, Any]:
    return {
        "teacher": ScriptedRecBot("teacher"),
        "student": ScriptedRecBot("student"),
        "simulator": PlainSimulator(),
    }


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[Finished]:
    root = tmp_path_factory.mktemp("recbot")
    world = _world()
    workspace = Workspace.resolve(root / "ws")
    run = RecBotRun.create(
        config(tiny_model_dir),
        workspace,
        Store.open(workspace),
        progress=False,
        loader=lambda role: world[role],
        catalog=catalog_factory(root),
    )
    run.run()
    yield Finished(root, run, world)
    run.close()


def _metrics(run: RecBotRun) -> dict[str, dict[str, Any]]:
    return {s.name: s.metrics or {} for s in run.store.stages(run.run_id)}


def test_every_stage_finishes_and_the_student_learns_the_teachers_turns(
    finished: Finished,
) -> None:
    run = finished.run
    assert run.store.get_run(run.run_id).status == "finished"
    metrics = _metrics(run)
    setup = metrics["setup"]
    assert setup["train_goals"] == 4 and setup["heldout_goals"] == 3
    # the held-out users never reach the collaborative model's training ratings
    heldout = {i.content["user"] for i in run.store.items(run.run_id) if i.kind == "heldout"}
    train = {i.content["user"] for i in run.store.items(run.run_id) if i.kind == "task"}
    assert not heldout & train
    assert metrics["teacher_episodes"]["pass"] == 1.0
    assert metrics["filter"]["kept"] == 4 and metrics["filter"]["parser_examples"] >= 4
    assert metrics["train_student"]["examples"] == (
        metrics["filter"]["parser_examples"] + metrics["filter"]["planner_examples"]
    )
    # the untrained student writes prose; trained (the scripted stand-in) it parses and plans
    base, student = metrics["eval_student_base"], metrics["eval_student"]
    assert base["json_valid"] == 0.0 and student["json_valid"] == 1.0
    assert student["f1"] == 1.0 and student["pass"] >= base["pass"]
    # the student continues the compact prefix it is trained on, the teacher the spaced one
    prefixes = {
        role: {r.prefix for r in finished.world[role].seen if r.prefix and "positive" in r.prefix}
        for role in ("teacher", "student")
    }
    assert prefixes == {"teacher": {PARSER_PREFIX}, "student": {STUDENT_PARSER_PREFIX}}
    for stage in ("eval_popularity", "eval_collaborative", "eval_retrieval", "eval_teacher"):
        m = metrics[stage]
        assert m["items"] == 3 and 0.0 <= m["pass"] <= 1.0
        assert m["pass_interval"]["low"] <= m["pass"] <= m["pass_interval"]["high"]
    assert set(run.scores()) == {
        "popularity",
        "collaborative",
        "retrieval",
        "teacher",
        "student_base",
        "student",
    }


def test_the_stored_training_rows_are_the_parsers_and_planners_turns(finished: Finished) -> None:
    from agents.schemes.recbot.graph import examples_of

    run = finished.run
    rows = run.store.trajectories(run.run_id, role="teacher", stage="episodes")
    turn = rows[0].meta["turns"][0]
    parsed = json.loads(turn["parser_messages"][-1]["content"])
    assert set(parsed) == {"positive", "negative"}
    calls = turn["planner_messages"][2]["tool_calls"]
    assert calls[-1]["function"]["name"] == "aggregate_feed"
    # the readable dialogue: each command, then the feed it got
    assert rows[0].messages[0]["role"] == "user" and rows[0].messages[1]["role"] == "assistant"
    checkpoint = run.store.checkpoints(run.run_id, role="student")[0]
    assert checkpoint.metrics["agent_mode"] == "recbot"
    names = [t["function"]["name"] for t in checkpoint.metrics["tools"]]
    assert names == ["filter_items", "match_items", "attenuate_items", "aggregate_feed"]
    # a plan is learnt up to its last reply: the new feed after it carries no loss
    _, planner = examples_of(rows, "verified", 3)
    assert planner and all(e["messages"][-1]["role"] == "assistant" for e in planner)
    first = planner[0]["messages"]
    assert first == rows[0].meta["turns"][0]["planner_messages"][: len(first)]


def test_the_report_has_every_system_and_paired_tests(finished: Finished) -> None:
    run = finished.run
    text = Path(run.report()).read_text()
    assert "## RecBot" in text and "Held-out users (K = 3" in text
    for label in ("popularity", "teacher RecBot", "student RecBot after distillation"):
        assert label in text
    assert "pass rate: student_base vs student" in text
    assert "Pass rate per scenario" in text


def test_the_cli_knows_the_scheme_and_rejects_a_half_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "run",
            "recbot",
            "--workspace",
            str(tmp_path / "ws"),
            "--set",
            f"catalog.items={tmp_path / 'items.jsonl'}",
        ]
    )
    assert code == 2
    assert "catalog.items and catalog.interactions go together" in capsys.readouterr().err


def test_the_student_exports_as_a_recbot_agent(finished: Finished) -> None:
    from agents.export import ExportError, load_agent

    run = finished.run
    out = finished.root / "agent"
    code = main(["export", run.run_id, "--out", str(out), "--workspace", str(finished.root / "ws")])
    assert code == 0
    card = json.loads((out / "agent_card.json").read_text())
    assert card["mode"] == "recbot" and card["scheme"] == "recbot"
    assert f"agents chat recbot --model {out}" in (out / "README.md").read_text()
    agent = load_agent(out)
    with pytest.raises(ExportError, match="agents chat recbot"):
        agent.run("something funny")


def test_chat_prints_what_was_understood_and_the_new_feed(finished: Finished) -> None:
    import io

    from agents.schemes.recbot.chat import chat

    catalog = finished.run.context.catalog()
    out = io.StringIO()
    commands = io.StringIO(
        "I want genre Crime.\n\nI want films from 1995 or later.\nquit\nignored\n"
    )
    assert chat(ScriptedRecBot("teacher"), catalog, user="1", source=commands, out=out) == 0
    text = out.getvalue()
    assert text.count("Your feed:") == 3  # the start, then one per command
    assert "Understood: + genre == Crime | - nothing" in text
    assert "Understood: + genre == Crime; year >= 1995 | - nothing" in text
    # user 1 rated both crime films: nothing is left to show them
    assert text.rsplit("Your feed:", 1)[1].strip() == "(no film meets these constraints)"
    out = io.StringIO()
    commands = io.StringIO("I want genre Crime.\n")
    assert chat(ScriptedRecBot("teacher"), catalog, source=commands, out=out) == 0
    last = out.getvalue().rsplit("Your feed:", 1)[1]
    assert "1. Heat (1995)" in last or "1. Casino (1995)" in last


def test_chat_of_a_scheme_without_one_is_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["chat", "agent-distill"]) == 2
    assert "agent-distill has no chat; schemes with one: recbot" in capsys.readouterr().err
    assert main(["chat", "nope"]) == 2
    assert "no scheme named 'nope'" in capsys.readouterr().err


def test_a_run_that_dies_mid_stage_resumes_from_its_last_finished_stage(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    world = _world()
    # the teacher dies in the middle of its episodes (after the first parser batch)
    world["teacher"] = ScriptedRecBot("teacher", crash_after=1)
    workspace = Workspace.resolve(tmp_path / "ws")
    cfg = config(tiny_model_dir, baselines=False, eval_teacher=False)
    run = RecBotRun.create(
        cfg,
        workspace,
        Store.open(workspace),
        progress=False,
        loader=lambda role: world[role],
        catalog=catalog_factory(tmp_path),
    )
    with pytest.raises(RuntimeError, match="scripted teacher crashed"):
        run.run()
    stages = {s.name: s.status for s in run.store.stages(run.run_id)}
    assert stages.get("setup") == "finished" and stages.get("teacher_episodes") != "finished"
    assert not run.store.trajectories(run.run_id, role="teacher")  # nothing half-written
    run_id = run.run_id
    run.close()
    fresh = _world()
    resumed = RecBotRun.resume(
        run_id,
        workspace,
        Store.open(workspace),
        progress=False,
        loader=lambda role: fresh[role],
        catalog=catalog_factory(tmp_path),
    )
    try:
        assert resumed.run().status == "finished"
        names = [s.name for s in resumed.store.stages(run_id)]
        assert names.count("setup") == 1  # not redone
        assert len(resumed.store.trajectories(run_id, role="teacher")) == 4
        # the batch answered before the crash came back from the response cache
        before = [r.messages for r in world["teacher"].seen]
        assert len(before) == 4  # the first turn's four parses
        assert not [r for r in fresh["teacher"].seen if r.messages in before]
    finally:
        resumed.close()

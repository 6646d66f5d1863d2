"""Socratic co-evolution on scripted roles: pausing, replay, resuming, crashes and bad input.

A *calm* run of mastered questions that never trains (pausing, replay, resuming from the store),
and a small *crash* world run once straight through and again with a crash in one stage and a
resume, the two compared row for row.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from socratic_runs import (
    make_config,
    new_problems,
    new_world,
    open_loop,
    resume_loop,
    row_counts,
    solve_requests,
    stage_metrics,
)
from socratic_world import ScriptedRole, true_answer

from agents.config import ConfigError
from agents.schemes.socratic import SocraticJob, SocraticLoop
from agents.schemes.socratic.rules import generator_messages
from agents.store import Run, Store, Workspace

# ---------------------------------------------------------------------------- the calm run

CALM_TAGS = ["[m] #s4"] * 6


def calm_config(root: Path, model: Path, **overrides: Any) -> SocraticJob:
    """Mastered seeds whose new problems are mastered too: no pairs, so nothing trains."""
    settings: dict[str, Any] = {
        "rounds": 2,
        "questions_per_round": 4,
        "replay": 0.5,
        "generator_training": None,
        **overrides,
    }
    return make_config(root, model, CALM_TAGS, **settings)


@dataclass
class CalmRun:
    loop: SocraticLoop
    paused: Run
    paused_scores: dict[str | int, float]
    paused_stages: list[tuple[int, str, str]]
    finished: Run


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[CalmRun]:
    """A calm run paused after round 1, then run to the end."""
    root = tmp_path_factory.mktemp("calm")
    config = calm_config(root, tiny_model_dir)
    loop = open_loop(root, config, new_world())

    paused = loop.run(rounds=1)
    paused_scores = loop.scores()
    paused_stages = [(s.round, s.name, s.status) for s in loop.store.stages(loop.run_id)]
    yield CalmRun(loop, paused, paused_scores, paused_stages, loop.run())
    loop.close()


def test_run_pauses_after_the_requested_round(calm: CalmRun) -> None:
    assert calm.paused.status == "paused"
    assert set(calm.paused_scores) == {"base", 0, 1}
    assert calm.paused_stages[-1] == (1, "eval", "finished")
    assert not any(r == 2 for r, _, _ in calm.paused_stages)


def test_second_run_continues_to_the_end(calm: CalmRun) -> None:
    loop = calm.loop
    assert calm.finished.status == "finished"
    assert set(loop.scores()) == {"base", 0, 1, 2}
    names = Counter((s.round, s.name) for s in loop.store.stages(loop.run_id))
    assert set(names.values()) == {1}
    assert len(names) == 6 + 2 * 12
    # Nothing trained: no pairs (all correct) and generator training off.
    metrics = stage_metrics(loop)
    assert metrics[(1, "train_solver")]["skipped"] == "no preference pairs this round"
    assert metrics[(2, "train_generator")]["skipped"] == "generator training is off"
    assert loop.store.checkpoints(loop.run_id) == []
    # A finished run does nothing more.
    assert loop.run().status == "finished"
    assert Counter((s.round, s.name) for s in loop.store.stages(loop.run_id)) == names


def test_pausing_again_at_an_evaluated_round_runs_nothing(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    loop = open_loop(tmp_path, calm_config(tmp_path, tiny_model_dir), new_world())
    assert loop.run(rounds=1).status == "paused"
    stages = len(loop.store.stages(loop.run_id))
    again = loop.run(rounds=1)
    loop.close()
    assert again.status == "paused"
    assert len(loop.store.stages(loop.run_id)) == stages


def test_round_two_replays_the_configured_share(calm: CalmRun) -> None:
    loop = calm.loop
    metrics = stage_metrics(loop)
    seeds = [i.id for i in loop.store.items(loop.run_id, round=0, kind="question")]
    # Round 1: the first 4 of 6 seeds, nothing to replay yet.
    assert metrics[(1, "select")]["_state"]["batch"] == seeds[:4]
    assert {k: metrics[(1, "select")][k] for k in ("questions", "fresh", "replay")} == {
        "questions": 4,
        "fresh": 4,
        "replay": 0,
    }
    # Round 2: 4 x 0.5 = 2 replayed from round 1's (mastered) seeds; the 2 fresh ones are the
    # never-solved seeds, which come before round 1's new problems.
    select = metrics[(2, "select")]
    assert {k: select[k] for k in ("questions", "fresh", "replay")} == {
        "questions": 4,
        "fresh": 2,
        "replay": 2,
    }
    batch = select["_state"]["batch"]
    assert batch[:2] == seeds[4:]
    assert len(set(batch[2:])) == 2 and set(batch[2:]) <= set(seeds[:4])
    assert select["_state"]["round"] == 2
    solved = [
        t.item_id
        for t in loop.store.trajectories(loop.run_id, role="solver", round=2)
        if t.stage == "solve"
    ]
    assert Counter(solved) == {i: 4 for i in batch}


def test_resume_replays_a_stage_committed_before_the_checkpoint(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = calm_config(tmp_path, tiny_model_dir)
    loop = open_loop(tmp_path, config, new_world())
    assert loop.run(rounds=1).status == "paused"
    seeds = [i.id for i in loop.store.items(loop.run_id, round=0, kind="question")]
    # The process committed round 2's select, then died before LangGraph's checkpoint: the
    # batch below is not what select would pick (it would take seeds 5 and 6 plus 2 replays).
    batch = [seeds[5], seeds[0]]
    committed = {"questions": 2, "fresh": 1, "replay": 1, "_state": {"batch": batch, "round": 2}}
    loop.store.start_stage(loop.run_id, 2, "select")
    loop.store.commit_stage(loop.run_id, 2, "select", committed)
    loop.close()

    world = new_world()
    resumed = resume_loop(tmp_path, loop.run_id, world)
    assert resumed.run().status == "finished"
    assert resumed.store.stage(loop.run_id, 2, "select").metrics == committed
    solved = Counter(
        t.item_id
        for t in resumed.store.trajectories(loop.run_id, role="solver", round=2)
        if t.stage == "solve"
    )
    assert solved == {seeds[5]: 4, seeds[0]: 4}
    assert len(solve_requests(world["solver"], config, 2)) == 2
    assert stage_metrics(resumed)[(2, "solve")]["questions"] == 2
    resumed.close()


def test_ctrl_c_pauses_the_run_and_it_resumes(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = calm_config(tmp_path, tiny_model_dir, rounds=1)
    loop = open_loop(tmp_path, config, new_world(crash_on={"refine"}, crash_with=KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        loop.run()
    assert loop.store.get_run(loop.run_id).status == "paused"
    assert loop.store.stage(loop.run_id, 1, "refine").status == "running"
    assert new_problems(loop) == []
    loop.close()
    world = new_world()
    resumed = resume_loop(tmp_path, loop.run_id, world)
    assert resumed.run().status == "finished"
    assert world["teacher"].asked["refine"] == 4 and len(new_problems(resumed)) == 4
    assert solve_requests(world["solver"], config, 1) == []
    resumed.close()


def test_generator_writes_the_new_problems(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = calm_config(
        tmp_path,
        tiny_model_dir,
        rounds=1,
        questions_per_round=None,
        refine={"use_generator": True},
        quality={"samples": 1},
    )
    world = new_world()
    loop = open_loop(tmp_path, config, world)
    assert loop.run().status == "finished"
    teacher, generator = world["teacher"], world["generator"]
    assert teacher.asked["refine"] == 0
    qc = teacher.requests_of("qc")
    assert len(qc) == 6 and {r.n for r in qc} == {2}
    assert generator.asked["generate"] == 6
    items = new_problems(loop)
    assert len(items) == 6
    seeds = loop.store.items_by_id([i.parent_id for i in items])
    for item in items:
        assert item.source == "generator"
        assert item.status == "active"
        question = item.content["question"]
        assert question.endswith("Count the apples in each basket. [l]")
        # No answer came with the problem: the Teacher's two agreeing re-solves give it.
        assert item.answer == str(true_answer(question))
        assert item.meta["qc_answers"] == [item.answer] * 2
        assert item.content["solution"] == f"The answer is \\boxed{{{item.answer}}}."
        parent = seeds[item.parent_id]
        messages = generator_messages(
            parent.content["question"], item.content["parent_solution"], "mastered"
        )
        assert any(list(r.messages) == messages for r in generator.requests_of("generate"))
    metrics = stage_metrics(loop)
    assert metrics[(1, "refine")]["by"] == "generator"
    assert metrics[(1, "quality")]["accepted"] == 6
    loop.close()


def test_raw_latex_refinement_is_accepted(tmp_path: Path, tiny_model_dir: Path) -> None:
    # The Teacher writes "\boxed" unescaped and no answer key: the answer comes from the box.
    config = make_config(tmp_path, tiny_model_dir, ["[m] #latex"], generator_training=None)
    loop = open_loop(tmp_path, config, new_world())
    assert loop.run().status == "finished"
    (item,) = new_problems(loop)
    loop.close()
    assert "\\boxed{16}" in item.content["solution"]
    assert (item.status, item.answer) == ("active", "16")


# ---------------------------------------------------------------------------- crash and resume

CRASH_TAGS = ["[m]", "[l]", "[h]", "[u]"]


def crash_config(root: Path, model: Path) -> SocraticJob:
    return make_config(root, model, CRASH_TAGS, eval_base=False)


@pytest.fixture(scope="module")
def straight(
    tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path
) -> Iterator[SocraticLoop]:
    """The crash world run without a crash: what a resumed run must end up with."""
    root = tmp_path_factory.mktemp("straight")
    loop = open_loop(root, crash_config(root, tiny_model_dir), new_world())
    assert loop.run().status == "finished"
    yield loop
    loop.close()


def crash_then_resume(
    root: Path,
    model: Path,
    world: dict[str, ScriptedRole],
    failing: str,
    store: Store | None = None,
) -> tuple[SocraticLoop, dict[str, ScriptedRole], dict[tuple[int, str], Any]]:
    """Run until ``failing`` crashes; check the failure; resume with fresh engines to the end.

    Returns the resumed loop, its fresh engines, and (finished_at, metrics) of every stage
    that had finished before the crash.
    """
    config = crash_config(root, model)
    loop = open_loop(root, config, world, store)
    with pytest.raises(RuntimeError, match="crashed"):
        loop.run()
    assert loop.store.get_run(loop.run_id).status == "failed"
    stages = {(s.round, s.name): s for s in loop.store.stages(loop.run_id)}
    assert stages[(1, failing)].status == "running"
    before = {k: (s.finished_at, s.metrics) for k, s in stages.items() if s.status == "finished"}
    loop.close()

    fresh = new_world()
    resumed = resume_loop(root, loop.run_id, fresh)
    assert resumed.run().status == "finished"
    after = {(s.round, s.name): s for s in resumed.store.stages(loop.run_id)}
    # Stages finished before the crash were not redone.
    assert {k: (after[k].finished_at, after[k].metrics) for k in before} == before
    return resumed, fresh, before


def assert_same_rows(resumed: SocraticLoop, straight: SocraticLoop) -> None:
    got, want = row_counts(resumed), row_counts(straight)
    for table in want:
        assert got[table] == want[table], table
    assert all(status == "finished" for _, _, status in got["stages"])
    assert set(got["stages"].values()) == {1}


def test_resume_after_a_crash_in_quality(
    tmp_path: Path, tiny_model_dir: Path, straight: SocraticLoop
) -> None:
    world = new_world(crash_on={"qc"})
    resumed, fresh, before = crash_then_resume(tmp_path, tiny_model_dir, world, "quality")
    assert (1, "refine") in before and (1, "quality") not in before
    assert_same_rows(resumed, straight)
    config = resumed.config
    # Finished stages asked nothing again; quality asked the Teacher anew (nothing was cached).
    assert solve_requests(fresh["solver"], config, 1) == []
    assert (fresh["teacher"].asked["judge"], fresh["teacher"].asked["refine"]) == (0, 0)
    assert fresh["teacher"].asked["qc"] == len(new_problems(resumed))
    resumed.close()


def test_resume_after_a_crash_in_solver_training(
    tmp_path: Path,
    tiny_model_dir: Path,
    straight: SocraticLoop,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from agents.training import dpo

    real_dpo, calls = dpo.train_dpo, []

    def dies_once_after_training(*args: Any, **kwargs: Any) -> Any:
        result = real_dpo(*args, **kwargs)
        calls.append(result)
        if len(calls) == 1:
            raise RuntimeError("training process crashed before the stage committed")
        return result

    monkeypatch.setattr(dpo, "train_dpo", dies_once_after_training)
    resumed, fresh, before = crash_then_resume(
        tmp_path, tiny_model_dir, new_world(), "train_solver"
    )
    assert (1, "pairs") in before
    assert len(calls) == 2  # trained again on resume, with the same pairs
    assert (
        calls[0].num_examples == calls[1].num_examples == len(resumed.store.pairs(resumed.run_id))
    )
    assert_same_rows(resumed, straight)
    (checkpoint,) = resumed.store.checkpoints(resumed.run_id, role="solver")
    assert Path(checkpoint.adapter_path) == calls[1].adapter_dir
    assert solve_requests(fresh["solver"], resumed.config, 1) == []
    assert fresh["teacher"].asked["judge"] == 0
    resumed.close()


def test_resume_after_a_crash_before_solve_committed_reuses_the_samples(
    tmp_path: Path, tiny_model_dir: Path, straight: SocraticLoop
) -> None:
    workspace = Workspace.resolve(tmp_path / "ws")
    store = Store.open(workspace)
    real_commit: Callable[..., Any] = store.commit_stage

    def dies_before_solve_commits(run_id: str, rnd: int, name: str, *args: Any, **kw: Any) -> Any:
        if (rnd, name) == (1, "solve"):
            raise RuntimeError("process crashed after sampling, before the commit")
        return real_commit(run_id, rnd, name, *args, **kw)

    store.commit_stage = dies_before_solve_commits  # type: ignore[method-assign]
    world = new_world()
    resumed, fresh, before = crash_then_resume(tmp_path, tiny_model_dir, world, "solve", store)
    config = resumed.config
    # Before the crash the Solver sampled every question once; the stage left no rows.
    assert len(solve_requests(world["solver"], config, 1)) == len(CRASH_TAGS)
    # On resume every one of those samples came from the response cache.
    assert solve_requests(fresh["solver"], config, 1) == []
    assert_same_rows(resumed, straight)
    resumed.close()


# ---------------------------------------------------------------------------- bad input


def test_seed_without_answer_is_a_config_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = make_config(tmp_path, tiny_model_dir, ["[m]", "[l]"])
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(seeds.read_text() + '{"question": "What is 1 + 1? [m]"}\n')
    workspace = Workspace.resolve(tmp_path / "ws")
    store = Store.open(workspace)
    with pytest.raises(ConfigError, match=r"seeds\.jsonl:3 needs a non-empty 'answer'"):
        SocraticLoop.create(
            config, workspace, store, progress=False, loader=lambda role: ScriptedRole(role)
        )
    assert store.list_runs() == []

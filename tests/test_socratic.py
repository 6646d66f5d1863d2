"""Socratic co-evolution on scripted roles, with real (tiny-model) training: the rich run.

A *rich* run whose seeds exercise every zone, judge path and quality-control drop (real DPO and
weighted SFT); ``test_socratic_resume.py`` has the runs that pause, resume and crash.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from socratic_runs import (
    TRAINING,
    by_question,
    make_config,
    new_problems,
    new_world,
    open_loop,
    stage_metrics,
)
from socratic_world import ScriptedRole, true_answer

from agents.models.base import ChatRequest
from agents.schemes.socratic import SocraticLoop
from agents.schemes.socratic.rules import PROMPTS, generator_messages
from agents.store import Run

# ---------------------------------------------------------------------------- the rich run

#: Seed tags of the rich run and what each one tests (see socratic_world for the markers).
RICH_TAGS = [
    "[m]",  # mastered: a harder variant is accepted
    "[l]",  # learning: an error-targeted problem is accepted
    "[h]",  # too hard: no refinement, the reference wins its pairs
    "[u]",  # undecidable by rule: the judge (malformed once) says incorrect
    "[u] #judge-bad",  # the judge is malformed on every retry: unverifiable
    "[m] #json",  # the Teacher never writes JSON: dropped at refine as malformed
    "[l] #short",  # QC: malformed (too short)
    "[m] #irr",  # QC: irreproducible
    "[l] #amb",  # QC: ambiguous
    "[m] #dup of a long enough question",  # QC: duplicate of its parent
    "[m] #s1",  # accepted; the Solver's success on it is 1/4
    "[l] #s3",  # accepted; the Solver's success on it is 3/4
    "[u] #judge-yes",  # the judge says correct: mastered through the judge
]
RICH_SUCCESS = {"[l]": 0.5, "[s1]": 0.25, "[s3]": 0.75}


@dataclass
class RichRun:
    loop: SocraticLoop
    world: dict[str, ScriptedRole]
    paused: Run
    finished: Run
    generator_rows: list[list[dict[str, Any]]]  # what each train_sft of the Generator got
    round_1: list[tuple[str, ChatRequest]]  # the Teacher's requests until the pause

    def teacher_round_1(self, kind: str) -> list[ChatRequest]:
        return [r for k, r in self.round_1 if k == kind]


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[RichRun]:
    """A two-round run of the rich world, paused after round 1 (the Teacher's requests so far
    are kept), then finished; the Generator's training rows are recorded."""
    root = tmp_path_factory.mktemp("rich")
    config = make_config(
        root,
        tiny_model_dir,
        RICH_TAGS,
        warmup_tags=("[m]", "[m]"),
        rounds=2,
        warmup=TRAINING,
        verify={"retries": 2},
        utility={"samples": 8},
    )
    world = new_world(judge_malformed_first=True)
    generator_rows: list[list[dict[str, Any]]] = []
    from agents.training import sft

    real_sft = sft.train_sft

    def recording_sft(base: Any, rows: Any, out: Path, **kwargs: Any) -> Any:
        if "generator" in Path(out).parts:
            generator_rows.append(list(rows))
        return real_sft(base, rows, out, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft, "train_sft", recording_sft)
        loop = open_loop(root, config, world)
        paused = loop.run(rounds=1)
        round_1 = list(world["teacher"].requests)
        finished = loop.run()
    yield RichRun(loop, world, paused, finished, generator_rows, round_1)
    loop.close()


def test_rich_run_finishes_every_stage_once(rich: RichRun) -> None:
    assert rich.paused.status == "paused"
    assert rich.finished.status == "finished"
    stages = rich.loop.store.stages(rich.loop.run_id)
    names = [(s.round, s.name) for s in stages]
    round_stages = [
        "select",
        "solve",
        "verify",
        "pairs",
        "train_solver",
        "zones",
        "refine",
        "quality",
        "utility",
        "train_generator",
        "curriculum",
        "eval",
    ]
    expected = [
        (0, n) for n in ("setup", "calibrate", "eval_base", "eval_teacher", "warmup", "eval")
    ] + [(r, n) for r in (1, 2) for n in round_stages]
    assert names == expected
    assert all(s.status == "finished" for s in stages)
    assert set(rich.loop.scores()) == {"base", 0, 1, 2}


def test_zones_follow_the_solver_success(rich: RichRun) -> None:
    metrics = stage_metrics(rich.loop)[(1, "zones")]
    assert {k: metrics[k] for k in ("mastered", "learning", "too_hard")} == {
        "mastered": 6,
        "learning": 4,
        "too_hard": 3,
    }
    seeds = [i for i in rich.loop.store.items(rich.loop.run_id, round=0, kind="question")]
    expected = {"[m]": "mastered", "[l]": "learning", "[h]": "too_hard", "[u]": "too_hard"}
    for item in seeds:
        tag = item.content["question"].split("? ")[1].split()[0]
        zone = "mastered" if "#judge-yes" in item.content["question"] else expected[tag]
        assert item.meta["zones"]["1"] == zone, item.content["question"]


def test_mastered_questions_get_a_harder_variant_with_a_correct_solution(rich: RichRun) -> None:
    loop, teacher = rich.loop, rich.world["teacher"]
    parents = loop.store.items_by_id([i.parent_id for i in new_problems(loop)])
    refine_users = [r.messages[-1]["content"] for r in teacher.requests_of("refine")]
    mastered = [i for i in new_problems(loop) if i.meta["from_zone"] == "mastered"]
    assert len(mastered) == 6
    for item in mastered:
        parent = parents[item.parent_id]
        assert parent.meta["zones"]["1"] == "mastered"
        shown = item.content["parent_solution"]
        solve = [
            t
            for t in loop.store.trajectories(loop.run_id, role="solver", round=1)
            if t.item_id == parent.id and t.stage == "solve"
        ]
        verdicts = {t.messages[-1]["content"]: t.verdict for t in solve}
        assert verdicts[shown] == "correct"
        user = PROMPTS["refine_mastered"].format(
            question=parent.content["question"], answer=parent.answer, solution=shown
        )
        assert user in refine_users
        assert "harder variant" in user and "solved this problem correctly" in user


def test_learning_questions_get_an_error_targeted_prompt_with_a_wrong_solution(
    rich: RichRun,
) -> None:
    loop, teacher = rich.loop, rich.world["teacher"]
    parents = loop.store.items_by_id([i.parent_id for i in new_problems(loop)])
    refine_users = [r.messages[-1]["content"] for r in teacher.requests_of("refine")]
    learning = [i for i in new_problems(loop) if i.meta["from_zone"] == "learning"]
    assert len(learning) == 4
    for item in learning:
        parent = parents[item.parent_id]
        shown = item.content["parent_solution"]
        # The scripted Solver is wrong by one on learning questions.
        assert f"\\boxed{{{true_answer(parent.content['question']) + 1}}}" in shown
        user = PROMPTS["refine_learning"].format(
            question=parent.content["question"], answer=parent.answer, solution=shown
        )
        assert user in refine_users
        assert "A failed student solution" in user


def test_too_hard_questions_are_not_refined(rich: RichRun) -> None:
    loop, teacher = rich.loop, rich.world["teacher"]
    too_hard = [
        i
        for i in loop.store.items(loop.run_id, round=0, kind="question")
        if i.meta["zones"]["1"] == "too_hard"
    ]
    assert len(too_hard) == 3
    refined_parents = {i.parent_id for i in loop.store.items(loop.run_id, kind="question")}
    refine_users = "\n".join(r.messages[-1]["content"] for r in teacher.requests_of("refine"))
    for item in too_hard:
        assert item.id not in refined_parents
        assert item.content["question"] not in refine_users
    assert stage_metrics(loop)[(1, "refine")]["requested"] == 10


def test_pairs_match_the_success_pattern(rich: RichRun) -> None:
    loop = rich.loop
    items = {i.id: i for i in loop.store.items(loop.run_id, round=0, kind="question")}
    per_item = Counter(p.item_id for p in loop.store.pairs(loop.run_id, round=1))
    per_question = {items[i].content["question"].split("? ")[1]: n for i, n in per_item.items()}
    # Learning: 2 correct x 2 incorrect; too hard and judged incorrect: reference x 4 incorrect;
    # mastered (nothing incorrect) and unverifiable (nothing verified): no pairs.
    assert per_question == {
        "[l]": 4,
        "[l] #short": 4,
        "[l] #amb": 4,
        "[l] #s3": 4,
        "[h]": 4,
        "[u]": 4,
    }
    metrics = stage_metrics(loop)[(1, "pairs")]
    assert (metrics["pairs"], metrics["questions_with_pairs"], metrics["reference_winners"]) == (
        24,
        6,
        8,
    )
    assert stage_metrics(loop)[(1, "train_solver")]["pairs"] == 24


def test_reference_pairs_choose_the_seed_solution(rich: RichRun) -> None:
    loop = rich.loop
    items = loop.store.items_by_id([p.item_id for p in loop.store.pairs(loop.run_id, round=1)])
    reference = [p for p in loop.store.pairs(loop.run_id, round=1) if p.meta["kind"] == "reference"]
    assert len(reference) == 8
    for pair in reference:
        item = items[pair.item_id]
        assert pair.chosen == [{"role": "assistant", "content": item.content["solution"]}]
        assert pair.prompt[-1]["content"] == item.content["question"]
    sampled = [p for p in loop.store.pairs(loop.run_id, round=1) if p.meta["kind"] == "sampled"]
    for pair in sampled:
        answer = true_answer(pair.prompt[-1]["content"])
        assert f"\\boxed{{{answer}}}" in pair.chosen[0]["content"]
        assert f"\\boxed{{{answer + 1}}}" in pair.rejected[0]["content"]


def test_judge_retries_malformed_replies_then_gives_up(rich: RichRun) -> None:
    loop = rich.loop
    metrics = stage_metrics(loop)[(1, "verify")]
    # 3 undecidable questions x 4 samples; attempt 0 (seed 0) is malformed for all of them,
    # attempt 1 fixes two questions, #judge-bad stays malformed through attempt 2.
    assert {k: metrics[k] for k in ("correct", "incorrect", "unverifiable")} == {
        "correct": 32,
        "incorrect": 16,
        "unverifiable": 4,
    }
    assert (metrics["judged"], metrics["judge_retries"]) == (12, 12 + 4)
    # Identical samples share a cache key: one Teacher request per question and attempt.
    asked = rich.teacher_round_1("judge")
    judged = Counter(true_answer(r.messages[-1]["content"]) for r in asked)
    assert judged == {5 + 6: 2, 6 + 7: 3, 14 + 15: 2}
    assert [r.seed for r in asked] == [0, 0, 0, 1, 1, 1, 2]
    by_text = by_question(loop)
    for question, verdict, judge in (
        ("What is 5 + 6? [u]", "incorrect", "no final answer"),
        ("What is 6 + 7? [u] #judge-bad", "unverifiable", "malformed"),
        ("What is 14 + 15? [u] #judge-yes", "correct", "no final answer"),
    ):
        rows = [
            t
            for t in loop.store.trajectories(loop.run_id, role="solver", round=1)
            if t.item_id == by_text[question].id and t.stage == "solve"
        ]
        assert [(t.verdict, t.meta["judge"]) for t in rows] == [(verdict, judge)] * 4
    assert by_text["What is 6 + 7? [u] #judge-bad"].meta["success"]["1"] is None


def test_quality_control_drops_with_reasons(rich: RichRun) -> None:
    loop = rich.loop
    metrics = stage_metrics(loop)
    assert {k: metrics[(1, "refine")][k] for k in ("requested", "proposed", "malformed")} == {
        "requested": 10,
        "proposed": 9,
        "malformed": 1,
    }
    quality = metrics[(1, "quality")]
    assert (quality["checked"], quality["accepted"], quality["dropped"]) == (9, 5, 4)
    assert quality["reasons"] == {
        "malformed": 1,
        "irreproducible": 1,
        "ambiguous": 1,
        "duplicate": 1,
    }
    parents = {i.id: i.content["question"] for i in loop.store.items(loop.run_id, round=0)}
    dropped = {
        parents[i.parent_id].split("#")[1].split()[0]: i.meta["dropped"]
        for i in new_problems(loop)
        if i.status == "dropped"
    }
    assert dropped == {
        "json": "malformed",
        "short": "malformed",
        "irr": "irreproducible",
        "amb": "ambiguous",
        "dup": "duplicate",
    }
    # The refinement that never parsed was retried once (refine.retries = 1).
    json_parent = next(q for q in parents.values() if "#json" in q)
    asked = [r for r in rich.teacher_round_1("refine") if json_parent in str(r)]
    assert [r.seed for r in asked] == [1, 2]


def test_dropped_problems_never_join_the_curriculum(rich: RichRun) -> None:
    loop = rich.loop
    dropped = [i for i in loop.store.items(loop.run_id, kind="question") if i.status == "dropped"]
    assert len(dropped) >= 5
    curriculum = loop.curriculum()
    curriculum_ids = {i.id for i in curriculum}
    assert not curriculum_ids & {i.id for i in dropped}
    assert {i.id for i in loop.curriculum(status="dropped")} == {i.id for i in dropped}
    # Nor were they ever solved after round 1, or attempted for utility.
    solved = {
        t.item_id
        for t in loop.store.trajectories(loop.run_id, role="solver")
        if t.stage in ("solve", "utility")
    }
    assert not solved & {i.id for i in dropped}
    metrics = stage_metrics(loop)[(1, "curriculum")]
    assert (metrics["size"], metrics["added"]) == (13 + 5, 5)
    assert metrics["by_zone"] == {"mastered": 6, "learning": 4, "too_hard": 3, "unseen": 5}


def test_accepted_problems_carry_the_teacher_answer(rich: RichRun) -> None:
    accepted = [i for i in new_problems(rich.loop) if i.status == "active"]
    assert len(accepted) == 5
    for item in accepted:
        assert item.source == "teacher"
        assert item.answer == str(true_answer(item.content["question"]))
        assert item.meta["qc_answers"] == [item.answer]


def test_utility_is_the_gaussian_of_the_solver_success(rich: RichRun) -> None:
    loop = rich.loop
    accepted = [i for i in new_problems(loop) if i.status == "active"]
    for item in accepted:
        tag = item.content["question"].rsplit(" ", 1)[1]
        s = RICH_SUCCESS[tag]
        assert item.meta["solver_success"] == s
        assert item.meta["utility"] == pytest.approx(math.exp(-((s - 0.5) ** 2) / (2 * 0.2**2)))
    utilities = sorted(round(i.meta["utility"], 6) for i in accepted)
    assert utilities == [round(math.exp(-0.78125), 6)] * 2 + [1.0] * 3
    metrics = stage_metrics(loop)[(1, "utility")]
    assert metrics["problems"] == 5
    assert metrics["mean_utility"] == pytest.approx((3 + 2 * math.exp(-0.78125)) / 5)
    assert metrics["mean_success"] == pytest.approx((0.5 * 3 + 0.25 + 0.75) / 5)
    attempts = [
        t
        for t in loop.store.trajectories(loop.run_id, role="solver", round=1)
        if t.stage == "utility"
    ]
    assert len(attempts) == 5 * 8  # utility.samples, not solve.samples


def test_generator_trains_on_weighted_accepted_problems(rich: RichRun) -> None:
    loop = rich.loop
    accepted = [i for i in new_problems(loop) if i.status == "active"]
    checkpoints = {c.round: c for c in loop.store.checkpoints(loop.run_id, role="generator")}
    assert set(checkpoints) == {1, 2}
    assert checkpoints[1].metrics["examples"] == len(accepted) == 5
    assert checkpoints[1].parent_id is None and checkpoints[2].parent_id == checkpoints[1].id
    assert Path(checkpoints[1].adapter_path, "adapter_config.json").exists()
    rows = rich.generator_rows[0]
    parents = loop.store.items_by_id([i.parent_id for i in accepted])
    expected = [
        {
            "messages": [
                *generator_messages(
                    parents[i.parent_id].content["question"],
                    i.content["parent_solution"],
                    i.meta["from_zone"],
                ),
                {"role": "assistant", "content": i.content["question"]},
            ],
            "weight": i.meta["utility"],
        }
        for i in accepted
    ]
    assert rows == expected
    round_2 = [i for i in new_problems(loop, rnd=2) if i.status == "active"]
    assert checkpoints[2].metrics["examples"] == len(round_2) == len(rich.generator_rows[1])


def test_solver_adapters_chain_across_rounds(rich: RichRun) -> None:
    loop = rich.loop
    checkpoints = {c.round: c for c in loop.store.checkpoints(loop.run_id, role="solver")}
    assert set(checkpoints) == {0, 1, 2}  # warm-up, then DPO each round
    lineage = loop.store.checkpoint_lineage(checkpoints[2].id)
    assert [c.round for c in lineage] == [0, 1, 2]
    # The solver answered round 2 with the round-1 adapter, the final eval with round 2's.
    solve_2 = [
        t
        for t in loop.store.trajectories(loop.run_id, role="solver", round=2)
        if t.stage == "solve"
    ]
    assert {t.model for t in solve_2} == {f"scripted:solver+{checkpoints[1].adapter_path}"}
    assert rich.world["solver"].adapter == checkpoints[2].adapter_path

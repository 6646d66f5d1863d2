"""Socratic co-evolution orchestration on scripted roles, with real (tiny-model) training.

Three worlds keep the file fast: a *rich* run whose seeds exercise every zone, judge path and
quality-control drop (real DPO and weighted SFT); a *calm* run of mastered questions that never
trains (pausing, replay, resuming from the store); and a small *crash* world run once straight
through and again with a crash in one stage and a resume, the two compared row for row.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from socratic_world import ScriptedRole, true_answer, write_seeds

from agents.config import ConfigError, SocraticJob
from agents.models.base import ChatRequest
from agents.schemes.socratic.graph import SocraticLoop
from agents.schemes.socratic.rules import PROMPTS, generator_messages
from agents.store import Item, Run, Store, Workspace

ROLES = ("teacher", "solver", "generator")
TRAINING = {"max_steps": 1, "batch_size": 2, "max_length": 128}


def make_config(tmp_path: Path, model: Path, tags: list[str], **overrides: Any) -> SocraticJob:
    """A config over scripted seeds with these tags; training (when it happens) is one step."""
    seeds = write_seeds(tmp_path / "seeds.jsonl", tags)
    heldout = write_seeds(tmp_path / "heldout.jsonl", ["[m]", "[h]"], start=100)
    data: dict[str, Any] = {
        "solver": str(model),
        "generator": str(model),
        "teacher": "scripted:teacher",
        "rounds": 1,
        "seeds": {"source": str(seeds), "heldout_data": str(heldout), "count": len(tags)},
        "solve": {"samples": 4, "temperature": 0.8, "max_tokens": 32},
        "eval": {"samples": 2, "temperature": 0.7, "max_tokens": 32},
        "utility": {"samples": 4},
        "warmup": None,
        "solver_training": TRAINING,
        "generator_training": TRAINING,
        **overrides,
    }
    return SocraticJob.model_validate(data)


def new_world(**teacher: Any) -> dict[str, ScriptedRole]:
    return {role: ScriptedRole(role, **(teacher if role == "teacher" else {})) for role in ROLES}


def open_loop(
    root: Path, config: SocraticJob, world: dict[str, ScriptedRole], store: Store | None = None
) -> SocraticLoop:
    workspace = Workspace.resolve(root / "ws")
    store = store or Store.open(workspace)
    return SocraticLoop.create(
        config, workspace, store, progress=False, loader=lambda role: world[role]
    )


def resume_loop(root: Path, run_id: str, world: dict[str, ScriptedRole]) -> SocraticLoop:
    """The run reopened as a new process would: a fresh store handle and fresh engines."""
    workspace = Workspace.resolve(root / "ws")
    return SocraticLoop.resume(
        run_id, workspace, Store.open(workspace), progress=False, loader=lambda role: world[role]
    )


def stage_metrics(loop: SocraticLoop) -> dict[tuple[int, str], dict[str, Any]]:
    return {(s.round, s.name): s.metrics for s in loop.store.stages(loop.run_id)}


def new_problems(loop: SocraticLoop, rnd: int = 1) -> list[Item]:
    return [
        i
        for i in loop.store.items(loop.run_id, round=rnd, kind="question")
        if i.parent_id is not None
    ]


def by_question(loop: SocraticLoop) -> dict[str, Item]:
    return {i.content["question"]: i for i in loop.store.items(loop.run_id, kind="question")}


def row_counts(loop: SocraticLoop) -> dict[str, Counter]:
    """Every row a run wrote, counted by what distinguishes it (ids and times left out)."""
    store, run_id = loop.store, loop.run_id
    return {
        "items": Counter(
            (i.round, i.kind, i.status, i.zone, i.content["question"], i.answer)
            for i in store.items(run_id)
        ),
        "trajectories": Counter(
            (t.round, t.role, t.meta["stage"], t.item_id, t.verdict, t.messages[-1]["content"])
            for t in store.trajectories(run_id)
        ),
        "pairs": Counter(
            (p.round, p.item_id, p.chosen[0]["content"], p.rejected[0]["content"])
            for p in store.pairs(run_id)
        ),
        "checkpoints": Counter((c.role, c.round) for c in store.checkpoints(run_id)),
        "stages": Counter((s.round, s.name, s.status) for s in store.stages(run_id)),
    }


def solve_requests(role: ScriptedRole, config: SocraticJob, rnd: int) -> list[ChatRequest]:
    """The Solver's requests of the solve stage of round ``rnd`` (not eval, not utility)."""
    return [
        r
        for r in role.requests_of("solve")
        if r.seed == config.seed + rnd
        and r.temperature == config.solve.temperature
        and r.n == config.solve.samples
        and "A shop counts" not in r.messages[-1]["content"]
    ]


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
    expected = [(0, n) for n in ("setup", "eval_base", "warmup", "eval")] + [
        (r, n) for r in (1, 2) for n in round_stages
    ]
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
            if t.item_id == parent.id and t.meta["stage"] == "solve"
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
            if t.item_id == by_text[question].id and t.meta["stage"] == "solve"
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
        if t.meta["stage"] in ("solve", "utility")
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
        if t.meta["stage"] == "utility"
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
        if t.meta["stage"] == "solve"
    ]
    assert {t.model for t in solve_2} == {f"scripted:solver+{checkpoints[1].adapter_path}"}
    assert rich.world["solver"].adapter == checkpoints[2].adapter_path


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
    assert len(names) == 4 + 2 * 12
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
        if t.meta["stage"] == "solve"
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
        if t.meta["stage"] == "solve"
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

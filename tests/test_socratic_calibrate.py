"""The seed filter (calibrate), the warm-up pool and the held-out statistics of a Socratic run,
on scripted roles (the tags of socratic_world fix each question's success rate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from socratic_runs import TRAINING, make_config, new_world, open_loop, stage_metrics

from agents.reporting import RunView
from agents.schemes.socratic import SocraticJob
from agents.schemes.socratic.report import comparisons, proxies, teacher_comparisons

# Success rates over 8 tries: [m] 1.0, [h] 0.0, [l] 0.5, [s1] 0.25, [s3] 0.75.
CANDIDATES = ["[m]", "[l]", "[h]", "[s1]", "[s3]", "[l]", "[h]", "[l]"]


def _calibrating(tmp_path: Path, model: Path, count: int, **overrides: Any) -> SocraticJob:
    """Eight candidates for ``count`` seeds, k = 8 tries each, and a two-row warm-up pool."""
    config = make_config(
        tmp_path,
        model,
        CANDIDATES,
        warmup_tags=("[m]", "[m]"),
        warmup=TRAINING,
        calibrate={"enabled": True, "candidates": len(CANDIDATES), "samples": 8},
        **overrides,
    )
    return config.model_copy(update={"seeds": config.seeds.model_copy(update={"count": count})})


def test_calibration_keeps_the_learning_zone_up_to_the_seed_count(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = _calibrating(tmp_path, tiny_model_dir, count=3, calibrate_only=True)
    loop = open_loop(tmp_path, config, new_world())
    run = loop.run()
    assert run.status == "paused"  # --calibrate-only stops after the filter
    metrics = stage_metrics(loop)[(0, "calibrate")]
    (family,) = metrics["families"].values()
    # [m] too easy (1.0 > 0.7), [h] x2 too hard, [s3] 0.75 too easy; [l] x3 and [s1] in band.
    assert (metrics["candidates"], metrics["kept"]) == (8, 3)
    assert (family["too_easy"], family["too_hard"], family["in_band"]) == (2, 2, 4)
    assert family["surplus"] == 1
    assert family["histogram"] == [2, 0, 1, 0, 3, 0, 1, 0, 1]
    active = loop.curriculum()
    assert len(active) == 3
    assert all(0.1 <= i.meta["calibration"] <= 0.7 for i in active)
    dropped = {i.meta["dropped"] for i in loop.curriculum(status="dropped")}
    assert dropped == {"too_easy", "too_hard", "surplus"}
    # Calibration sampled the base Solver k = 8 times per candidate, in its own stage.
    tries = loop.store.trajectories(loop.run_id, role="solver", stage="calibrate")
    assert len(tries) == 8 * 8
    assert loop.calibrate() == metrics  # already done: the stored funnel


def test_calibrated_run_goes_on_after_the_filter_and_reports_statistics(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = _calibrating(tmp_path, tiny_model_dir, count=3, eval_teacher=True)
    world = new_world()
    loop = open_loop(tmp_path, config, world)
    funnel = loop.calibrate()
    assert funnel["kept"] == 3
    assert loop.store.stage(loop.run_id, 0, "eval_base") is None
    run = loop.run()
    assert run.status == "finished"
    metrics = stage_metrics(loop)
    # The warm-up trained on its own pool (2 rows with solutions), not on the seeds.
    assert metrics[(0, "warmup")]["solutions"] == {"source": 2}
    warm = {i.content["question"] for i in loop.store.items(loop.run_id, kind="warmup")}
    seeds = {i.content["question"] for i in loop.store.items(loop.run_id, kind="question")}
    held = {i.content["question"] for i in loop.store.items(loop.run_id, kind="heldout")}
    assert len(warm) == 2 and not warm & seeds and not warm & held and not seeds & held
    # Round 1 solves only the kept seeds.
    assert metrics[(1, "select")]["questions"] == 3
    # Every evaluation carries its interval and per-question scores; comparisons are paired.
    for key in ((0, "eval_base"), (0, "eval_teacher"), (0, "eval"), (1, "eval")):
        interval = metrics[key]["interval"]
        assert interval["low"] <= metrics[key]["accuracy"] <= interval["high"]
        assert len(metrics[key]["_scores"]) == metrics[key]["items"]
    view = RunView.load(loop.store, loop.run_id)
    found = dict(comparisons(view))
    assert set(found) == {
        "base model → after round 1",
        "base model → before round 1",
        "before round 1 → after round 1",
    }
    assert all(c.n == 2 for c in found.values())
    # The Teacher answered the same held-out questions as a reference ([m] right, [h] wrong),
    # under its own role, and the last Solver is compared with it, paired.
    teacher = loop.store.trajectories(loop.run_id, role="teacher", stage="eval")
    assert len(teacher) == 2 * config.eval.samples
    assert loop.scores()["teacher"] == 0.5
    assert loop.intervals()["teacher"].value == 0.5
    assert set(metrics[(0, "eval_teacher")]["_scores"]) == set(metrics[(0, "eval")]["_scores"])
    ((label, vs_teacher),) = teacher_comparisons(view)
    assert label == "Teacher → Solver after round 1" and vs_teacher.n == 2
    assert [row[0] for row in proxies(view)] == [1]
    report = (Path(loop.report())).read_text()
    for heading in (
        "Seed filter: 3 of 8 candidates kept",
        "Before → after (paired",
        "Proxy vs held-out",
        "| Teacher (reference) | 0.500 |",
        "Teacher → Solver after round 1",
        "95% CI",
    ):
        assert heading in report

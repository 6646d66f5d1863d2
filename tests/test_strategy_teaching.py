"""The strategy-teaching scheme with scripted engines on the real retail domain."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from service_world import (
    BAD_REPLY,
    EDITED,
    GOOD_REPLY,
    STRATEGY,
    WRITTEN_SCENARIO,
    ServiceEngine,
)
from test_strategy_library import HashEmbedding

from agents.config import ConfigError
from agents.episodes.dialogue import GUIDANCE_HEADER
from agents.schemes.strategy_teaching import StrategyTeachingJob
from agents.schemes.strategy_teaching.baselines import finetune_records
from agents.schemes.strategy_teaching.graph import StrategyTeaching
from agents.schemes.strategy_teaching.rules import parse_choice, parse_strategies, retrieval_query
from agents.store import Store, Workspace
from strategies import StrategyLibrary


def small(**changes: object) -> StrategyTeachingJob:
    data = {
        "rounds": 2,
        "tasks": {"train": 2, "heldout": 2},
        "dialogue": {"max_turns": 2},
        "scenarios": {"max_per_round": 3, "teacher_scenarios": 1},
        "refine": {"max_iterations": 2, "top_k": 2},
        "heldout_turns": 1,
        "evaluation": {"finetune": False},  # trained for real in its own test
        **changes,
    }
    return StrategyTeachingJob.model_validate(data)


class World:
    """Scripted engines per role and a workspace whose library embeds words."""

    def __init__(self, tmp_path, *, stubborn: bool = False, edit: bool = False) -> None:
        self.workspace = Workspace(tmp_path / "ws").ensure()
        self.store = Store.open(self.workspace)
        self.engines = {
            "teacher": ServiceEngine("teacher", edit=edit),
            "student": ServiceEngine("student", stubborn=stubborn),
            "transfer_student": ServiceEngine("transfer_student"),
            "student_finetuned": ServiceEngine("student_finetuned"),
        }

    def load(self, role: str) -> ServiceEngine:
        return self.engines.get(role) or self.engines["teacher"]  # customer, judge: the teacher

    def library(self, name: str = "retail") -> StrategyLibrary:
        return StrategyLibrary.open(
            self.store, self.workspace.chroma_dir, name, embedding=HashEmbedding()
        )

    def create(self, config: StrategyTeachingJob) -> StrategyTeaching:
        return StrategyTeaching.create(
            config,
            self.workspace,
            self.store,
            progress=False,
            loader=self.load,
            library=self.library,
        )

    def student_prompts(self) -> list[str]:
        return [r.messages[0]["content"] for r in self.engines["student"].requests_of("agent")]


def test_a_run_teaches_the_student_through_strategies(tmp_path) -> None:
    world = World(tmp_path)
    run = world.create(small())
    assert run.run().status == "finished"
    stages = [(s.round, s.name) for s in world.store.stages(run.run_id)]
    assert stages == [
        (0, "setup"),
        (1, "scenarios"),
        (1, "refine"),
        (2, "scenarios"),
        (2, "refine"),
        (2, "generic"),
        (2, "finetune"),
        (2, "eval_dialogues"),
        (2, "eval_judge"),
    ]
    metrics = {(s.round, s.name): s.metrics for s in world.store.stages(run.run_id)}
    # round 1: the unguided student's turns fall short (judge 3 < 7) + one teacher scenario
    first = metrics[(1, "scenarios")]
    assert first["shortfalls"] >= 1 and first["teacher_scenarios"] == 1
    assert first["scenarios"] == first["shortfalls"] + 1
    refine = metrics[(1, "refine")]
    assert refine["new_strategies"] >= 1 and refine["closed"] == refine["scenarios"]
    assert refine["student_preference_first"] == 0 and refine["student_preference_last"] == 0.5

    [strategy, *_] = run.library.strategies()
    assert strategy.text == STRATEGY and strategy.status == "proposed"
    assert (strategy.teacher, strategy.round, strategy.run_id) == (
        "builtin:qwen2.5-coder-0.5b",
        1,
        run.run_id,
    )
    # judge preference for the student over the teacher: 0 before, a tie (0.5) after
    assert (strategy.score_before, strategy.teacher_score, strategy.score_after) == (0, 1, 0.5)
    scenario = run.library.scenario(strategy.scenario_ids[0])
    assert scenario.meta["student_reply"] == BAD_REPLY
    assert scenario.meta["teacher_reply"] == GOOD_REPLY
    assert scenario.messages[-1]["role"] == "user"
    sources = {s.source for s in run.library.scenarios(run_id=run.run_id)}
    assert sources == {"failure", "teacher"}
    assert any(s.messages[-1]["content"] == WRITTEN_SCENARIO for s in run.library.scenarios())

    # round 2: the guided student is as good as the teacher on the new teacher scenario
    assert metrics[(2, "refine")]["student_preference_first"] == 0.5

    scores = run.scores()
    assert scores["strategies_vs_alone"]["win_rate"] == 1.0
    assert scores["alone_vs_teacher"]["win_rate"] == 0.0
    assert scores["strategies_vs_teacher"]["win_rate"] == 0.5  # the same reply: a tie
    assert scores["strategies_vs_teacher"]["identical"] == 2  # 2 held-out dialogues × 1 turn
    assert scores["transfer_strategies_vs_alone"]["win_rate"] == 0.5
    # generic guidance (written from the policy alone) does not teach identification here
    generic = metrics[(2, "generic")]
    assert generic["generic_strategies"] == generic["library_strategies"] == run.library.count()
    assert scores["generic_vs_alone"]["win_rate"] == 0.5
    assert scores["strategies_vs_generic"]["win_rate"] == 1.0
    assert scores["strategies_vs_generic"]["ci"][1] == 1.0
    assert "finetuned_vs_alone" not in scores and metrics[(2, "finetune")]["skipped"] is True
    agents = ("student", "student_generic", "student_strategies", "teacher", "transfer")
    for agent in (*agents, "transfer_strategies"):
        assert set(scores[agent]) >= {"success", "success_ci", "action_recall", "violations"}
        assert scores[agent]["n"] == 2 and scores[agent]["ended"] == {"customer_stop": 2}
    assert "vs_student" not in scores["student"]
    assert set(scores["teacher"]["vs_student"]["success"]) >= {"difference", "ci", "p_value"}
    # the guided held-out dialogues recorded which strategies they saw
    guided = world.store.trajectories(run.run_id, role="student_strategies")
    assert guided and all(any(ids for ids in r.meta["guidance"]) for r in guided)
    alone = world.store.trajectories(run.run_id, role="student")
    assert all(r.stage in ("scenarios", "eval_dialogues") for r in alone)
    assert all("stage" not in r.meta for r in alone)  # the column is the one place
    assert (tmp_path / "ws" / "reports" / run.run_id).exists()
    run.close()


def test_the_finetuned_baseline_learns_the_teachers_replies_to_the_scenarios(
    tmp_path, tiny_model_dir
) -> None:
    """LoRA SFT for real (a tiny model stands in for the student's weights); the held-out agent
    is the student's engine with that adapter loaded."""
    world = World(tmp_path)
    config = small(
        rounds=1,
        student=str(tiny_model_dir),
        evaluation={"finetune": True, "generic": False},
        training={"max_steps": 2},
    )
    run = world.create(config)
    assert run.run().status == "finished"
    stages = {s.name: s.metrics for s in world.store.stages(run.run_id)}
    scenarios = run.library.scenarios(run_id=run.run_id)
    assert stages["finetune"]["examples"] == len(scenarios) >= 2
    assert stages["finetune"]["steps"] == 2 and stages["generic"]["skipped"] is True
    [checkpoint] = world.store.checkpoints(run.run_id, role="student_finetuned")
    assert (Path(checkpoint.adapter_path) / "adapter_config.json").is_file()
    assert world.engines["student_finetuned"].adapter == checkpoint.adapter_path
    assert world.engines["student"].adapter is None  # the student's own engine stays bare

    # each example is a scenario under the plain agent prompt, ending with the teacher's reply,
    # which is the only part learnt
    records = finetune_records(run.context)
    for record, scenario in zip(records, scenarios, strict=True):
        messages = record["messages"]
        assert GUIDANCE_HEADER not in messages[0]["content"]
        assert messages[1:-1] == scenario.messages
        assert messages[-1]["content"] == GOOD_REPLY
        assert record["context_messages"] == len(messages) - 1

    scores = run.scores()
    assert scores["finetuned_vs_alone"]["win_rate"] == 1.0
    assert scores["strategies_vs_finetuned"]["win_rate"] == 0.5  # both ask to identify
    assert scores["student_finetuned"]["n"] == 2
    run.close()


def test_only_audited_strategies_reach_prompts_outside_training(tmp_path) -> None:
    world = World(tmp_path)
    library = world.library()
    rejected = library.add("customer wants to cancel", "REJECTED identify advice", author="t")
    proposed = library.add("customer wants to cancel", "PROPOSED identify advice", author="t")
    approved = library.add("customer wants to cancel", "APPROVED identify advice", author="t")
    library.set_status(rejected.id, "rejected", author="reviewer:x")
    library.set_status(approved.id, "approved", author="reviewer:x")
    run = world.create(small(use_proposed=False, rounds=1))
    run.run()
    prompts = world.student_prompts()
    assert prompts and all("REJECTED" not in p and "PROPOSED" not in p for p in prompts)
    assert any("APPROVED" in p for p in prompts)
    assert library.get(proposed.id).status == "proposed"
    run.close()

    # a training run may use proposed strategies, never rejected ones
    world2 = World(tmp_path / "second")
    lib2 = world2.library()
    r = lib2.add("customer wants to cancel", "REJECTED identify advice", author="t")
    lib2.set_status(r.id, "rejected", author="reviewer:x")
    lib2.add("customer wants to cancel", "PROPOSED identify advice", author="t")
    run = world2.create(small(rounds=1))
    run.run()
    prompts = world2.student_prompts()
    assert all("REJECTED" not in p for p in prompts)
    assert any("PROPOSED" in p for p in prompts)
    run.close()


def test_a_student_that_does_not_improve_gets_edited_strategies_until_the_limit(tmp_path) -> None:
    world = World(tmp_path, stubborn=True, edit=True)
    library = world.library()
    seed = library.add("customer wants a change", "Ask them to identify themselves.", author="t")
    run = world.create(small(rounds=1))
    run.run()
    refine = next(s for s in world.store.stages(run.run_id) if s.name == "refine").metrics
    assert refine["closed"] == 0 and refine["edited_strategies"] == 1
    assert refine["iterations"] == refine["scenarios"] * 3  # first try + 2 after writing
    versions = library.versions(seed.id)
    assert versions[-1].text == EDITED and versions[-1].author.startswith("teacher:")
    assert library.get(seed.id).status == "proposed" and library.get(seed.id).version > 1
    run.close()


def test_a_paused_run_resumes_without_redoing_stages(tmp_path) -> None:
    world = World(tmp_path)
    run = world.create(small(rounds=1))
    assert run.run(until="refine").status == "paused"
    asked = world.engines["teacher"].asked["customer"]
    run_id = run.run_id
    run.close()
    again = StrategyTeaching.resume(
        run_id,
        world.workspace,
        world.store,
        progress=False,
        loader=world.load,
        library=world.library,
    )
    assert again.run().status == "finished"
    names = [s.name for s in world.store.stages(run_id)]
    assert names.count("scenarios") == 1 and names.count("refine") == 1
    # only the held-out dialogues talked to the customer after the pause
    assert world.engines["teacher"].asked["customer"] > asked
    again.close()


def test_parsers() -> None:
    assert parse_choice("A") == "A" and parse_choice(" b.") == "B"
    assert parse_choice("Reply A: I can help") == "A"
    assert parse_choice("Neither") is None and parse_choice("") is None
    out = parse_strategies(
        "Sure.\nNEW: When the order is pending, check its status first.\n"
        "NEW: When <situation>, <what to do>.\n"
        "- NEW: Always confirm before cancelling an order.\n"
        "EDIT [3]: When asked to cancel, ask for the reason.\nEDIT x: nothing here\n"
        "NEW: EDIT 4: When asked for a refund, name the payment method."
    )
    assert out == {
        "new": [
            {
                "situation": "When the order is pending",
                "strategy": "When the order is pending, check its status first.",
            },
            {"situation": "", "strategy": "Always confirm before cancelling an order."},
        ],
        "edit": [
            {"id": 3, "strategy": "When asked to cancel, ask for the reason."},
            {"id": 4, "strategy": "When asked for a refund, name the payment method."},
        ],
    }
    assert parse_strategies("I have no advice.") is None


def test_retrieval_query_uses_the_last_messages() -> None:
    messages = [
        {"role": "assistant", "content": "Hi"},
        {"role": "user", "content": "one"},
        {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "x"}}]},
        {"role": "tool", "content": "data"},
        {"role": "assistant", "content": "two"},
        {"role": "user", "content": "three"},
    ]
    assert retrieval_query(messages) == "one\ntwo\nthree"


def test_guidance_header_is_absent_without_strategies(tmp_path) -> None:
    world = World(tmp_path)
    run = world.create(small(rounds=1, use_proposed=False))
    run.run()
    assert all(GUIDANCE_HEADER not in p for p in world.student_prompts())
    run.close()


def test_config_errors_are_one_sentence(tmp_path) -> None:
    with pytest.raises(ConfigError, match="inspect-evals"):
        StrategyTeaching.check(small(tasks={"data_dir": str(tmp_path / "nowhere")}))
    with pytest.raises(ValueError):
        small(tasks={"domain": "banking"})
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "agents.cli",
            "run",
            "strategy-teaching",
            "--workspace",
            str(tmp_path / "ws"),
            "--domain",
            "telecom",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "domain" in result.stderr
    assert "Traceback" not in result.stderr


class PositionJudge(ServiceEngine):
    """A judge that always picks the first reply shown, or answers nonsense."""

    def __init__(self, answer: str) -> None:
        super().__init__("judge")
        self.answer = answer

    def _answer(self, kind: str, request) -> str:
        return self.answer


def test_prefer_shows_both_orders_and_ties_identical_replies() -> None:
    from agents.schemes.strategy_teaching.rules import prefer
    from tools.service import load_domain

    domain = load_domain("retail")
    prefix = [{"role": "user", "content": "cancel my order"}]
    good = {"role": "assistant", "content": GOOD_REPLY}
    bad = {"role": "assistant", "content": BAD_REPLY}

    fair = ServiceEngine("judge")  # picks the reply asking for identification
    assert prefer(fair, domain, [prefix, prefix], [good, bad], [bad, good]) == [1.0, 0.0]
    assert len(fair.requests_of("compare")) == 4  # each pair both ways round
    request = fair.requests_of("compare")[0]
    assert request.prefix == "The better reply is " and request.max_tokens == 4

    biased = PositionJudge("A")  # a position bias alone decides nothing
    assert prefer(biased, domain, [prefix], [good], [bad]) == [0.5]
    assert prefer(biased, domain, [prefix], [good], [bad], both_orders=False) == [1.0]

    silent = PositionJudge("I cannot say")
    assert prefer(silent, domain, [prefix, prefix], [good, good], [bad, good]) == [None, 0.5]
    assert len(silent.requests) == 4  # 2 orders, each asked again once; identical: not asked


def test_the_airline_domain_runs_too(tmp_path) -> None:
    world = World(tmp_path)
    config = small(rounds=1, tasks={"domain": "airline", "train": 1, "heldout": 1})
    run = world.create(config)
    assert run.run().status == "finished"
    assert run.library.name == "airline"
    prompts = world.student_prompts()
    assert prompts and "airline" in prompts[0] and "# Policy" in prompts[0]
    assert {h for h in run.scores()} >= {"student", "strategies_vs_alone"}
    run.close()


def test_strategies_naming_the_customer_are_too_specific() -> None:
    from agents.schemes.strategy_teaching.rules import too_specific

    policy = "Cancel only pending orders. Refunds go to PayPal or a gift card."
    said = [{"role": "user", "content": "Hi, I am Olivia Lopez, order #W2378156 is late."}]
    assert too_specific("When Olivia Lopez writes, check her order.", said, policy)
    assert too_specific("When order #W2378156 is late, apologise.", said, policy)
    assert too_specific("When asked, write to olivia@example.com.", said, policy)
    assert not too_specific("When an order is late, check its status first.", said, policy)
    assert not too_specific("When a refund is asked, offer PayPal.", said, policy)
    assert not too_specific("Check the status. Then ask for the reason.", said, policy)


def test_no_rounds_evaluates_the_audited_library(tmp_path) -> None:
    world = World(tmp_path)
    library = world.library()
    approved = library.add("customer wants to cancel", "APPROVED identify advice", author="t")
    library.set_status(approved.id, "approved", author="reviewer:x")
    library.add("customer wants to cancel", "PROPOSED identify advice", author="t")
    run = world.create(small(rounds=0, use_proposed=False))
    assert run.run().status == "finished"
    names = [s.name for s in world.store.stages(run.run_id)]
    assert names == ["setup", "generic", "finetune", "eval_dialogues", "eval_judge"]
    generic = world.store.stage(run.run_id, 0, "generic").metrics
    assert generic["library_strategies"] == generic["generic_strategies"] == 1  # approved only
    prompts = world.student_prompts()
    assert any("APPROVED" in p for p in prompts) and all("PROPOSED" not in p for p in prompts)
    assert run.scores()["strategies_vs_alone"]["win_rate"] == 1.0
    run.close()


def test_refine_rerun_after_a_crash_reuses_what_it_wrote(tmp_path) -> None:
    """Refine writes the library outside its stage transaction; re-run, it must not duplicate."""
    clean = World(tmp_path / "clean")
    expected = clean.create(small(rounds=1))
    expected.run(until="refine")
    clean_refine = clean.store.stage(expected.run_id, 1, "refine")
    clean_texts = sorted(s.text for s in expected.library.strategies())
    clean_scenarios = len(expected.library.scenarios(run_id=expected.run_id))
    expected.close()

    world = World(tmp_path / "crash")
    run = world.create(small(rounds=1))
    commit = world.store.commit_stage

    def crash_refine(run_id: str, round: int, name: str, *args, **kwargs):
        if name == "refine":
            raise RuntimeError("killed before refine committed")
        return commit(run_id, round, name, *args, **kwargs)

    world.store.commit_stage = crash_refine  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="killed"):
        run.run(until="refine")
    del world.store.commit_stage  # back to the class's method
    run_id = run.run_id
    written = [(s.id, s.origin) for s in run.library.strategies()]
    assert written and world.store.stage(run_id, 1, "refine").status == "running"
    run.close()

    again = StrategyTeaching.resume(
        run_id,
        world.workspace,
        world.store,
        progress=False,
        loader=world.load,
        library=world.library,
    )
    again.run(until="refine")
    library = again.library
    assert [(s.id, s.origin) for s in library.strategies()] == written  # nothing added twice
    assert sorted(s.text for s in library.strategies()) == clean_texts
    assert library.collection.count() == library.count()
    assert len(library.scenarios(run_id=run_id)) == clean_scenarios
    refine = world.store.stage(run_id, 1, "refine")
    assert refine.status == "finished"
    assert refine.metrics["new_strategies"] == clean_refine.metrics["new_strategies"] >= 1
    again.close()

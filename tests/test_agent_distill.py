"""Agent distillation orchestration on scripted engines, with real (tiny-model) training.

The teacher and the student are the scripted agents of ``agent_world`` injected through
``loader``; retrieval searches its fake corpus; the student's LoRA training is one step on the
random 2-layer ``tiny_model_dir``. Tasks come from JSONL files (nothing is generated).

A *full* run is stopped after ``filter``, then resumed with fresh engines as a new process would,
and finished; most tests read it. Small runs cover the judge, a crash and resume, a run whose
filter keeps nothing, and configuration errors.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from agent_runs import make_config, new_world, open_run, resume_run
from agent_world import ScriptedAgent, alias_of, true_answer

from agents.config import ConfigError
from agents.episodes.agent_loop import AGENT_SYSTEM_PROMPT, DEMONSTRATIONS
from agents.schemes.agent_distill.graph import (
    COT_SYSTEM_PROMPT,
    STAGES,
    AgentDistillation,
    load_tasks,
)
from agents.store import Run, Store, Trajectory, Workspace

#: Runs execute the agents' code in the sandbox; skipped where it is missing, as its tests are.
needs_sandbox = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed"
)

STAGE_NAMES = [name for name, _ in STAGES]
TOOL_NAMES = ["python_exec", "retrieve", "final_answer"]

#: Training tasks of the full run and what the filter does with each.
TRAIN = [
    "What is 2 + 3?",  # kept
    "What is 4 + 5? #crash",  # kept, with its execution error
    "What is the capital of Freedonia?",  # kept (factual, by retrieval)
    "What is 6 + 7? #wrong",  # dropped: wrong answer
    "What is 8 + 9? #loop",  # dropped: step limit
    "What is 10 + 11? #parse1",  # dropped: a parse error (then a right answer)
    "What is 12 + 13? #noparse",  # dropped: step limit (never a call)
]
KEPT = TRAIN[:3]
#: Held-out tasks: the trained agents get the "#wrong" one wrong; "#sc" splits candidates.
HELDOUT = ["What is 20 + 22? #sc", "What is 30 + 33? #wrong", "What is the capital of Sylvania?"]


def metrics_of(run: AgentDistillation) -> dict[str, dict[str, Any]]:
    return {s.name: s.metrics for s in run.store.stages(run.run_id)}


def agent_rows(run: AgentDistillation) -> dict[str, Trajectory]:
    """The teacher's training trajectories by question."""
    items = {i.id: i.content["question"] for i in run.store.items(run.run_id)}
    return {
        items[t.item_id]: t
        for t in run.store.trajectories(run.run_id, role="teacher")
        if t.stage == "agent"
    }


def questions_asked(engine: ScriptedAgent, kind: str = "agent") -> set[str]:
    return {
        next(
            m["content"]
            for m in reversed(r.messages)
            if m["role"] == "user" and not m["content"].startswith("Error:")
        )
        for r in engine.requests_of(kind)
    }


# ---------------------------------------------------------------------------- the full run


@dataclass
class FullRun:
    run: AgentDistillation
    paused: Run
    paused_stages: list[tuple[str, str]]
    before: dict[str, tuple[Any, dict[str, Any]]]  # stage -> (finished_at, metrics) at the pause
    first: dict[str, ScriptedAgent]
    fresh: dict[str, ScriptedAgent]
    finished: Run
    trained: dict[str, list[dict[str, Any]]]  # adapter directory -> the rows it was trained on


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[FullRun]:
    root = tmp_path_factory.mktemp("full")
    config = make_config(root, tiny_model_dir, TRAIN, HELDOUT)
    from agents.training import sft

    real_sft, trained = sft.train_sft, {}

    def recording_sft(base: Any, rows: Any, out: Path, **kwargs: Any) -> Any:
        trained[str(out)] = list(rows)
        return real_sft(base, rows, out, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sft, "train_sft", recording_sft)
        first = new_world()
        run = open_run(root, config, first)
        paused = run.run(until="filter")
        stages = run.store.stages(run.run_id)
        paused_stages = [(s.name, s.status) for s in stages]
        before = {s.name: (s.finished_at, s.metrics) for s in stages}
        run.close()
        fresh = new_world()
        resumed = resume_run(root, run.run_id, fresh)
        finished = resumed.run()
    yield FullRun(resumed, paused, paused_stages, before, first, fresh, finished, trained)
    resumed.close()


@needs_sandbox
def test_stages_finish_in_order(full: FullRun) -> None:
    assert full.paused.status == "paused"
    assert full.paused_stages == [(n, "finished") for n in STAGE_NAMES[:5]]
    assert full.finished.status == "finished"
    stages = full.run.store.stages(full.run.run_id)
    assert [(s.name, s.status) for s in stages] == [(n, "finished") for n in STAGE_NAMES]
    # No corpus-fact questions were asked for; every other stage ran.
    assert [s.name for s in stages if "skipped" in s.metrics] == ["write_facts"]
    setup = metrics_of(full.run)["setup"]
    assert {k: setup[k] for k in ("tasks", "heldout", "tasks_math", "tasks_factual")} == {
        "tasks": 7,
        "heldout": 3,
        "tasks_math": 6,
        "tasks_factual": 1,
    }


@needs_sandbox
def test_resume_does_not_redo_finished_stages(full: FullRun) -> None:
    stages = {s.name: s for s in full.run.store.stages(full.run.run_id)}
    assert {n: (stages[n].finished_at, stages[n].metrics) for n in full.before} == full.before
    # The first engines did the teacher stages; the fresh teacher only evaluated held-out tasks.
    assert len(full.first["teacher"].requests_of("cot")) == len(TRAIN)
    assert questions_asked(full.first["teacher"]) == set(TRAIN)
    # ...and the held-out tasks closed book (chain of thought, no tools).
    assert questions_asked(full.fresh["teacher"], "cot") == set(HELDOUT)
    assert questions_asked(full.fresh["teacher"]) == set(HELDOUT)
    assert full.first["student"].requests == []
    assert Counter(s.name for s in full.run.store.stages(full.run.run_id)) == Counter(STAGE_NAMES)


@needs_sandbox
def test_teacher_cot_opens_the_first_thought(full: FullRun) -> None:
    metrics = metrics_of(full.run)
    assert (metrics["teacher_cot"]["answers"], metrics["teacher_cot"]["accuracy"]) == (7, 1.0)
    assert metrics["teacher_agent"]["with_prefix"] == 7
    first_steps = [r for r in full.first["teacher"].requests_of("agent") if r.prefix]
    prefixes = {r.messages[-1]["content"]: r.prefix for r in first_steps if "\n" not in r.prefix}
    assert prefixes["What is 2 + 3?"] == "Thought: I add 2 and 3."
    assert prefixes["What is the capital of Freedonia?"] == (
        "Thought: I recall the capital of Freedonia."
    )
    rows = agent_rows(full.run)
    first_turn = rows["What is 2 + 3?"].messages[2 + len(DEMONSTRATIONS)]
    assert first_turn["content"] == "Thought: I add 2 and 3."
    assert rows["What is 2 + 3?"].meta["prefix"] == "Thought: I add 2 and 3."


@needs_sandbox
def test_filter_keeps_correct_clean_trajectories(full: FullRun) -> None:
    metrics = metrics_of(full.run)["filter"]
    assert {k: v for k, v in metrics.items() if k not in ("seconds", "peak_rss_gb", "_state")} == {
        "trajectories": 7,
        "kept": 3,
        "keep_rate": pytest.approx(3 / 7),
        "judged": 0,
        "judged_correct": 0,
        "dropped_wrong_answer": 1,
        "dropped_parse_error": 1,
        "dropped_step_limit": 2,
        "kept_with_exec_errors": 1,
        # Two kept math tasks ran python; the factual one retrieved; 2 + 3 + 2 steps.
        "kept_with_python": pytest.approx(2 / 3),
        "kept_with_retrieve": pytest.approx(1 / 3),
        "kept_mean_steps": pytest.approx(7 / 3),
        "kept_train.jsonl": 3,
    }
    rows = agent_rows(full.run)
    dropped = {q: rows[q].meta["dropped"] for q in TRAIN}
    assert dropped == {
        TRAIN[0]: None,
        TRAIN[1]: None,
        TRAIN[2]: None,
        TRAIN[3]: "wrong_answer",
        TRAIN[4]: "step_limit",
        TRAIN[5]: "parse_error",
        TRAIN[6]: "step_limit",
    }
    assert {q: rows[q].meta["kept"] for q in TRAIN} == {q: q in KEPT for q in TRAIN}
    # The #parse1 trajectory was right, yet its parse error drops it.
    assert rows[TRAIN[5]].verdict == "correct" and rows[TRAIN[5]].meta["parse_errors"] == 1
    crash = rows["What is 4 + 5? #crash"]
    assert crash.meta["exec_errors"] == 1 and crash.verdict == "correct"
    assert any("ZeroDivisionError" in m["content"] for m in crash.messages if m["role"] == "tool")
    kept = full.run.kept()
    assert sorted(t.id for t in kept) == sorted(rows[q].id for q in KEPT)


@needs_sandbox
def test_only_kept_trajectories_are_trained_on(full: FullRun) -> None:
    metrics = metrics_of(full.run)
    assert metrics["train_student"]["examples"] == metrics["filter"]["kept"] == 3
    assert metrics["train_student"]["steps"] == 1
    (checkpoint,) = full.run.store.checkpoints(full.run.run_id, role="student")
    rows = full.trained[checkpoint.adapter_path]
    kept = sorted(full.run.kept(), key=lambda t: t.id)
    context = 1 + len(DEMONSTRATIONS)  # system prompt and worked examples: no loss
    assert rows == [
        {"messages": t.messages, "tools": t.tools, "context_messages": context} for t in kept
    ]
    # The CoT baseline trains on the teacher's correct chain-of-thought answers, no tools.
    (cot,) = full.run.store.checkpoints(full.run.run_id, role="student_cot")
    cot_rows = full.trained[cot.adapter_path]
    assert metrics["train_cot"]["examples"] == len(cot_rows) == 7
    assert all(r["messages"][0]["content"] == COT_SYSTEM_PROMPT for r in cot_rows)
    assert all("tools" not in r for r in cot_rows)


@needs_sandbox
def test_student_checkpoint_lists_its_tools(full: FullRun) -> None:
    (checkpoint,) = full.run.store.checkpoints(full.run.run_id, role="student")
    assert [t["function"]["name"] for t in checkpoint.metrics["tools"]] == TOOL_NAMES
    assert checkpoint.metrics["system_prompt"] == AGENT_SYSTEM_PROMPT
    assert checkpoint.metrics["examples"] == 3
    assert Path(checkpoint.adapter_path, "adapter_config.json").exists()
    (cot,) = full.run.store.checkpoints(full.run.run_id, role="student_cot")
    assert cot.metrics["tools"] == [] and cot.metrics["system_prompt"] == COT_SYSTEM_PROMPT


@needs_sandbox
def test_scores_of_every_evaluated_agent(full: FullRun) -> None:
    assert full.run.scores() == {
        "student_base": 0.0,  # the untrained scripted student never calls a tool
        "teacher": pytest.approx(2 / 3),
        "student": pytest.approx(2 / 3),
        "student_sc": pytest.approx(2 / 3),
        "student_cot": 1.0,  # its chain of thought ignores the "#wrong" marker
        "student_base_cot": 1.0,  # closed book, as above
        "teacher_cot": 1.0,
    }
    base = metrics_of(full.run)["eval_student_base"]
    assert (base["answered"], base["parse_errors"]) == (0.0, 3 * 4)


@needs_sandbox
def test_trajectories_are_stored_per_role(full: FullRun) -> None:
    store, run_id = full.run.store, full.run.run_id
    by_role = Counter((t.role, t.stage) for t in store.trajectories(run_id))
    assert by_role == {
        ("teacher", "cot"): 7,
        ("teacher", "agent"): 7,
        ("teacher", "eval_teacher"): 3,
        ("student_base", "eval_student_base"): 3,
        ("student", "eval_student"): 3,
        ("student_sc", "eval_student_sc"): 3,
        ("student_cot", "eval_cot"): 3,
        ("student_base_cot", "eval_student_closed"): 3,
        ("teacher_cot", "eval_teacher_closed"): 3,
    }
    adapters = {c.role: c.adapter_path for c in store.checkpoints(run_id)}
    models = {
        t.role: t.model for t in store.trajectories(run_id) if not t.role.startswith("teacher")
    }
    assert models == {
        "student_base": "scripted:student+None",
        "student_base_cot": "scripted:student+None",
        "student": f"scripted:student+{adapters['student']}",
        "student_sc": f"scripted:student+{adapters['student']}",
        "student_cot": f"scripted:student+{adapters['student_cot']}",
    }
    for row in store.trajectories(run_id, role="student"):
        assert [t["function"]["name"] for t in row.tools] == TOOL_NAMES
        assert any(m["role"] == "tool" for m in row.messages)


@needs_sandbox
def test_self_consistent_student_records_its_candidates(full: FullRun) -> None:
    items = {i.id: i.content["question"] for i in full.run.store.items(full.run.run_id)}
    rows = {
        items[t.item_id]: t for t in full.run.store.trajectories(full.run.run_id, role="student_sc")
    }
    sc = rows["What is 20 + 22? #sc"]
    # Candidates print 43, 42 and 42 (as "22 + 20"): the first 42 is run.
    assert sc.meta["candidates"][0] == {"step": 0, "valid": 3, "chosen": 1}
    assert sc.final_answer == "42" and sc.verdict == "correct"
    asked = [r for r in full.fresh["student"].requests_of("agent") if r.n > 1]
    assert asked and {(r.n, r.temperature) for r in asked} == {(3, 0.4)}


@needs_sandbox
def test_report_is_written(full: FullRun) -> None:
    report = full.run.workspace.reports_dir / full.run.run_id / "report.md"
    assert report.exists() and report.read_text().strip()


@needs_sandbox
def test_export_of_the_distilled_student_lists_its_tools(full: FullRun, tmp_path: Path) -> None:
    from agents.cli import main

    out = tmp_path / "agent"
    workspace = str(full.run.workspace.root)
    assert main(["export", full.run.run_id, "--out", str(out), "--workspace", workspace]) == 0
    card = json.loads((out / "agent_card.json").read_text())
    assert card["scheme"] == "agent-distill"
    assert [t["function"]["name"] for t in card["tools"]] == TOOL_NAMES
    assert card["system_prompt"] == AGENT_SYSTEM_PROMPT
    assert card["training_data"] == {"student round 0": 3}


# ---------------------------------------------------------------------------- the loss mask


def _spans(text: str, parts: list[tuple[str, str]]) -> list[tuple[str, int, int]]:
    """(role, start, end) of each rendered message's content, found in order."""
    spans, cursor = [], 0
    for role, content in parts:
        start = text.find(content, cursor)
        assert start >= 0, content[:60]
        spans.append((role, start, start + len(content)))
        cursor = start + len(content)
    return spans


@needs_sandbox
def test_loss_mask_covers_only_the_assistant_turns_of_a_kept_trajectory(
    full: FullRun, tiny_model_dir: Path, tmp_path: Path
) -> None:
    from agents.models.chat_format import prepare_messages
    from agents.training.data import tokenize_records
    from agents.training.lora import load_tokenizer
    from agents.training.sft import SFTSettings, build_sft_trainer

    (crash,) = [t for t in full.run.kept() if t.meta["exec_errors"]]
    context_messages = 1 + len(DEMONSTRATIONS)
    record = {
        "messages": crash.messages,
        "tools": crash.tools,
        "context_messages": context_messages,
    }
    tokenizer = load_tokenizer(tiny_model_dir)
    dataset = tokenize_records(tokenizer, [record], max_length=4096)
    trainer = build_sft_trainer(
        tiny_model_dir, [record], tmp_path, SFTSettings(max_length=4096), progress=False
    )
    batch = trainer.data_collator([dict(row) for row in trainer.train_dataset])
    ids = batch["input_ids"][0].tolist()
    labels = batch["labels"][0].tolist()
    assert ids == dataset[0]["input_ids"]
    assert labels == [
        t if m else -100 for t, m in zip(ids, dataset[0]["assistant_masks"], strict=True)
    ]

    prepared = prepare_messages(crash.messages, tokenizer.chat_template, crash.tools)
    text = tokenizer.apply_chat_template(prepared, tokenize=False)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    assert encoded["input_ids"] == ids  # nothing was cut
    offsets = encoded["offset_mapping"]
    spans = _spans(text, [(m["role"], m["content"]) for m in prepared])

    def inside(start: int, end: int) -> list[int]:
        return [i for i, (a, b) in enumerate(offsets) if start <= a and b <= end and b > a]

    observations = [s for s in spans if text[s[1] : s[2]].startswith("<tool_response>")]
    assert len(observations) == 2 + 4  # two tool results after the task, four in the demos
    assert any("ZeroDivisionError" in text[a:b] for _, a, b in observations)
    context = [s for s in spans if s[0] in ("system", "user")]
    assert context[0][0] == "system" and "python_exec" in text[context[0][1] : context[0][2]]
    for role, start, end in context:
        tokens = inside(start, end)
        assert tokens, role
        assert all(labels[i] == -100 for i in tokens), text[start:end][:60]

    task_at = 1 + len(DEMONSTRATIONS)
    assert prepared[task_at] == {"role": "user", "content": "What is 4 + 5? #crash"}
    # The worked examples' replies are prompt: the student does not learn them by heart.
    demos = [s for k, s in enumerate(spans) if k < task_at and s[0] == "assistant"]
    assert len(demos) == 4
    for _, start, end in demos:
        tokens = inside(start, end)
        assert tokens and all(labels[i] == -100 for i in tokens), text[start:end][:60]
    replies = [s for k, s in enumerate(spans) if k > task_at and s[0] == "assistant"]
    assert len(replies) == 3  # the failing run, the rerun, the final answer
    for _, start, end in replies:
        call_at = text.index("<tool_call>", start, end)
        body = text[call_at + len("<tool_call>") : text.index("</tool_call>", call_at, end)]
        assert json.loads(body)["name"] in TOOL_NAMES
        tokens = inside(call_at, end)
        assert tokens and all(labels[i] == ids[i] for i in tokens)
    # The final answer's JSON, token by token, is learnt.
    final = text[replies[-1][1] : replies[-1][2]]
    assert '"final_answer"' in final and '"answer": "9"' in final


# ---------------------------------------------------------------------------- the judge


@needs_sandbox
@pytest.mark.parametrize("judge", [True, False])
def test_teacher_judges_factual_answers_the_rule_rejects(
    judge: bool, tmp_path: Path, tiny_model_dir: Path
) -> None:
    train = ["What is the capital of Atlantis? #alias", "What is 6 + 7? #wrong", "What is 2 + 3?"]
    config = make_config(tmp_path, tiny_model_dir, train, HELDOUT, judge=judge, cot_baseline=False)
    world = new_world()
    run = open_run(tmp_path, config, world)
    assert run.run(until="filter").status == "paused"
    metrics = metrics_of(run)["filter"]
    rows = agent_rows(run)
    alias = rows[train[0]]
    assert alias.final_answer == alias_of("Atlantis") and alias.meta["status"] == "answered"
    asked = world["teacher"].requests_of("judge")
    if judge:
        # Only the factual answer is judged (a wrong number is wrong by rule).
        assert (metrics["judged"], metrics["judged_correct"], metrics["kept"]) == (1, 1, 2)
        assert metrics["dropped_wrong_answer"] == 1
        (request,) = asked
        prompt = request.messages[0]["content"]
        assert "Reference answer: Poseidonia" in prompt
        assert f"Proposed answer: {alias_of('Atlantis')}" in prompt
        assert (alias.verdict, alias.reward, alias.meta["judged"]) == ("correct", 1.0, True)
        assert alias.meta["kept"] is True
        assert {t.id for t in run.kept()} == {alias.id, rows[train[2]].id}
    else:
        assert (metrics["judged"], metrics["kept"], metrics["dropped_wrong_answer"]) == (0, 1, 2)
        assert asked == []
        assert (alias.verdict, alias.meta["kept"], alias.meta["dropped"]) == (
            "incorrect",
            False,
            "wrong_answer",
        )
    run.close()


# ---------------------------------------------------------------------------- crash and resume


@needs_sandbox
def test_a_crash_mid_stage_fails_the_run_and_a_resume_completes(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    train = ["What is 2 + 3?", "What is the capital of Genovia?"]
    config = make_config(tmp_path, tiny_model_dir, train, ["What is 20 + 22?"], cot_baseline=False)
    run = open_run(tmp_path, config, new_world(crash_on={"agent"}))
    with pytest.raises(RuntimeError, match="crashed on agent"):
        run.run()
    assert run.store.get_run(run.run_id).status == "failed"
    stages = {s.name: s.status for s in run.store.stages(run.run_id)}
    assert stages == {
        "setup": "finished",
        "write_facts": "finished",
        "teacher_cot": "finished",
        "teacher_agent": "running",
    }
    assert run.store.trajectories(run.run_id, role="teacher") and not agent_rows(run)
    run.close()

    fresh = new_world()
    resumed = resume_run(tmp_path, run.run_id, fresh)
    assert resumed.run().status == "finished"
    assert [(s.name, s.status) for s in resumed.store.stages(run.run_id)] == [
        (n, "finished") for n in STAGE_NAMES
    ]
    # teacher_cot was not redone: the fresh teacher answered only the held-out task closed book.
    assert questions_asked(fresh["teacher"], "cot") == {"What is 20 + 22?"}
    assert set(train) <= questions_asked(fresh["teacher"])  # teacher_agent was
    assert metrics_of(resumed)["filter"]["kept"] == 2
    assert metrics_of(resumed)["train_student"]["examples"] == 2
    assert set(resumed.scores()) == {
        "student_base",
        "teacher",
        "student",
        "student_sc",
        "student_base_cot",
        "teacher_cot",
    }
    # A finished run does nothing more.
    assert resumed.run().status == "finished"
    assert len(resumed.store.stages(run.run_id)) == len(STAGE_NAMES)
    resumed.close()


@needs_sandbox
def test_nothing_kept_skips_training_and_the_trained_evals(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    train = ["What is 6 + 7? #wrong", "What is 1 + 2? #noparse"]
    config = make_config(tmp_path, tiny_model_dir, train, ["What is 20 + 22?"])
    world = new_world()
    run = open_run(tmp_path, config, world)
    assert run.run().status == "finished"
    metrics = metrics_of(run)
    assert metrics["filter"]["kept"] == 0 and metrics["filter"]["keep_rate"] == 0.0
    assert metrics["train_student"]["skipped"] == "the filter kept no trajectory"
    assert metrics["eval_student"]["skipped"] == "the student was not trained"
    assert metrics["eval_student_sc"]["skipped"] == "the student was not trained"
    # The CoT answers were right, so the CoT baseline still trains and is evaluated.
    assert metrics["train_cot"]["examples"] == 2
    assert set(run.scores()) == {
        "student_base",
        "teacher",
        "student_cot",
        "student_base_cot",
        "teacher_cot",
    }
    assert [c.role for c in run.store.checkpoints(run.run_id)] == ["student_cot"]
    assert all(s.status == "finished" for s in run.store.stages(run.run_id))
    assert run.kept() == []
    run.close()


# ---------------------------------------------------------------------------- bad input


def test_no_training_tasks_is_a_config_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = make_config(tmp_path, tiny_model_dir, ["What is 2 + 3?"], HELDOUT)
    config.tasks.data = None
    workspace = Workspace.resolve(tmp_path / "ws")
    store = Store.open(workspace)
    with pytest.raises(ConfigError, match="no training tasks"):
        AgentDistillation.create(config, workspace, store, loader=lambda role: ScriptedAgent())
    assert store.list_runs() == []


def test_no_heldout_tasks_is_a_config_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = make_config(tmp_path, tiny_model_dir, ["What is 2 + 3?"], HELDOUT)
    config.tasks.heldout_data = None
    with pytest.raises(ConfigError, match="no held-out tasks"):
        load_tasks(config)


def test_bad_domain_in_a_task_file_names_its_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = make_config(tmp_path, tiny_model_dir, ["What is 2 + 3?"], HELDOUT)
    path = Path(config.tasks.data)
    path.write_text(
        path.read_text() + json.dumps({"question": "Q?", "answer": "1", "domain": "chem"}) + "\n"
    )
    workspace = Workspace.resolve(tmp_path / "ws")
    store = Store.open(workspace)
    with pytest.raises(ConfigError, match=r"train\.jsonl:2 has domain 'chem'"):
        AgentDistillation.create(config, workspace, store, loader=lambda role: ScriptedAgent())
    assert store.list_runs() == []


def test_resuming_a_socratic_run_is_a_config_error(tmp_path: Path) -> None:
    workspace = Workspace.resolve(tmp_path / "ws")
    store = Store.open(workspace)
    other = store.create_run("socratic", {})
    with pytest.raises(ConfigError, match=f"run {other.id} is a socratic run"):
        AgentDistillation.resume(other.id, workspace, store, loader=lambda role: ScriptedAgent())


def test_unknown_stage_to_stop_at_is_a_config_error(tmp_path: Path, tiny_model_dir: Path) -> None:
    config = make_config(tmp_path, tiny_model_dir, ["What is 2 + 3?"], HELDOUT)
    run = open_run(tmp_path, config, new_world())
    with pytest.raises(ConfigError, match="unknown stage 'nope'"):
        run.run(until="nope")
    assert run.store.stages(run.run_id) == []
    run.close()


def test_heldout_factual_tasks_without_factual_training_tasks(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    config = make_config(tmp_path, tiny_model_dir, ["What is 2 + 3?"], HELDOUT)
    config.tasks.heldout_data = None
    config.tasks.heldout_factual = 1
    train, heldout = load_tasks(config)
    assert [t.question for t in train] == ["What is 2 + 3?"]
    assert [t.domain for t in heldout] == ["factual"]


def test_cli_missing_task_file_exits_with_one_sentence(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from agents.cli import EXIT_USER_ERROR, main

    missing = tmp_path / "missing.jsonl"
    code = main(
        [
            "run", "agent-distill", "--workspace", str(tmp_path / "ws"), "--quiet",
            "--task-data", str(missing), "--student", str(tiny_model_dir),
        ]
    )  # fmt: skip
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and f"{missing} does not exist" in err
    assert len(err.splitlines()) == 1
    assert Store.open(Workspace.resolve(tmp_path / "ws")).list_runs() == []


def test_scripted_answers_are_the_references() -> None:
    # A guard on the world itself: every task's reference is what a correct agent answers.
    assert [true_answer(q) for q in KEPT] == ["5", "9", "Fredville"]

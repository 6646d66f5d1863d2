"""The store: SQLite setup, runs and stages, round trips, lineage, ledger, cache, concurrency."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from sqlmodel import SQLModel

from agents.store import (
    Item,
    PreferencePair,
    Store,
    StoreError,
    Trajectory,
    Workspace,
)

TOOL_CONVERSATION = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "What is 6 * 7?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "python_exec", "arguments": '{"code": "print(6 * 7)"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "name": "python_exec", "content": "42\n"},
    {"role": "assistant", "content": "The answer is 42."},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "python_exec",
            "description": "Run Python code.",
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string"}},
                "required": ["code"],
            },
        },
    }
]


# Every test taking `store` runs on SQLite, and on Postgres too when a server is given, e.g.
# AGENTS_TEST_POSTGRES_URL=postgresql+psycopg://user:pass@127.0.0.1/db (its tables are reset).
POSTGRES_URL = os.environ.get("AGENTS_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        store = Store.open(Workspace(tmp_path / "ws"))
    else:
        if not POSTGRES_URL:
            pytest.skip("AGENTS_TEST_POSTGRES_URL is not set")
        store = Store.open(url=POSTGRES_URL)
        SQLModel.metadata.drop_all(store.engine)
        SQLModel.metadata.create_all(store.engine)
    yield store
    store.close()


def test_sqlite_store_uses_wal_and_foreign_keys(tmp_path: Path) -> None:
    store = Store.open(Workspace(tmp_path / "ws"))
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_workspace_layout(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws").ensure()
    assert workspace.db_path == tmp_path / "ws" / "agents.db"
    assert workspace.db_url == f"sqlite:///{tmp_path / 'ws' / 'agents.db'}"
    assert workspace.checkpoints_path.name == "checkpoints.sqlite"
    assert all(d.is_dir() for d in (workspace.chroma_dir, workspace.reports_dir))
    assert (
        workspace.adapter_dir("r1", "student", 2) == workspace.adapters_dir / "r1/student/round-2"
    )


def test_workspace_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTS_WORKSPACE", str(tmp_path / "from-env"))
    assert Workspace.resolve().root == tmp_path / "from-env"
    assert Workspace.resolve(tmp_path / "explicit").root == tmp_path / "explicit"
    monkeypatch.delenv("AGENTS_WORKSPACE")
    monkeypatch.chdir(tmp_path)
    assert Workspace.resolve().root == tmp_path / "workspace"


def test_run_create_get_list_and_status(store: Store) -> None:
    first = store.create_run("socratic", {"seeds": 10}, name="try")
    second = store.create_run("strategy_teaching", {"rounds": 2})
    assert first.id != second.id
    assert len(first.id.split("-")) == 3 and first.status == "created"
    assert first.created_at.tzinfo is not None

    loaded = store.get_run(first.id)
    assert (loaded.scheme, loaded.name, loaded.config) == ("socratic", "try", {"seeds": 10})
    assert loaded.created_at.utcoffset() == UTC.utcoffset(None)
    assert {r.id for r in store.list_runs()} == {first.id, second.id}
    assert [r.id for r in store.list_runs(scheme="socratic")] == [first.id]
    assert len(store.list_runs(limit=1)) == 1

    store.set_run_status(first.id, "running")
    assert store.get_run(first.id).finished_at is None
    finished = store.set_run_status(first.id, "finished", notes="done")
    reloaded = store.get_run(first.id)
    assert reloaded.status == "finished" and reloaded.notes == "done"
    assert reloaded.finished_at == finished.finished_at is not None
    with pytest.raises(ValueError, match="status"):
        store.set_run_status(first.id, "exploded")


def test_missing_run_raises_store_error(store: Store) -> None:
    with pytest.raises(StoreError, match="nope"):
        store.get_run("nope")
    with pytest.raises(LookupError):
        store.set_run_status("nope", "running")
    with pytest.raises(StoreError):
        store.start_stage("nope", 0, "generate")


def test_start_stage_is_idempotent_and_finish_records_metrics(store: Store) -> None:
    run = store.create_run("socratic", {})
    stage = store.start_stage(run.id, 0, "generate")
    again = store.start_stage(run.id, 0, "generate")
    assert again.id == stage.id and again.started_at == stage.started_at
    store.start_stage(run.id, 1, "generate")

    finished = store.finish_stage(run.id, 0, "generate", {"accuracy": 0.5})
    assert finished.id == stage.id and finished.status == "finished"
    assert store.start_stage(run.id, 0, "generate").status == "finished"
    stages = store.stages(run.id)
    assert [(s.round, s.name, s.status) for s in stages] == [
        (0, "generate", "finished"),
        (1, "generate", "running"),
    ]
    assert stages[0].metrics == {"accuracy": 0.5}


def test_items_trajectories_and_pairs_round_trip_with_tool_calls(store: Store) -> None:
    run = store.create_run("agent_distill", {})
    (seed,) = store.add_items([Item(run_id=run.id, content={"question": "6*7?"}, answer="42")])
    (child,) = store.add_items(
        [Item(run_id=run.id, kind="scenario", round=1, content="harder", parent_id=seed.id)]
    )
    assert seed.id is not None and child.parent_id == seed.id
    assert [i.id for i in store.items(run.id, round=1, kind="scenario")] == [child.id]
    assert store.items(run.id, kind="question")[0].content == {"question": "6*7?"}

    store.add_trajectories(
        [
            Trajectory(
                run_id=run.id,
                item_id=seed.id,
                role="teacher",
                model="openai:gpt-4o-mini",
                messages=TOOL_CONVERSATION,
                tools=TOOLS,
                final_answer="42",
                verdict="correct",
                reward=1.0,
                meta={"weight": 0.5},
            ),
            Trajectory(run_id=run.id, role="student", messages=TOOL_CONVERSATION[:2]),
        ]
    )
    (teacher,) = store.trajectories(run.id, role="teacher", verdict="correct")
    assert teacher.messages == TOOL_CONVERSATION
    assert teacher.tools == TOOLS
    assert (teacher.final_answer, teacher.reward, teacher.meta) == ("42", 1.0, {"weight": 0.5})
    (student,) = store.trajectories(run.id, role="student", round=0)
    assert student.tools is None and student.verdict is None

    store.add_pairs(
        [
            PreferencePair(
                run_id=run.id,
                item_id=seed.id,
                prompt=TOOL_CONVERSATION[:2],
                chosen=TOOL_CONVERSATION[2:],
                rejected=[{"role": "assistant", "content": "41"}],
            )
        ]
    )
    (pair,) = store.pairs(run.id, round=0)
    assert pair.chosen == TOOL_CONVERSATION[2:] and pair.prompt == TOOL_CONVERSATION[:2]
    assert store.pairs(run.id, round=1) == []


def test_unknown_verdict_is_rejected(store: Store) -> None:
    run = store.create_run("socratic", {})
    with pytest.raises(ValueError, match="Verdicts"):
        store.add_trajectories([Trajectory(run_id=run.id, role="student", verdict="right")])
    assert store.trajectories(run.id) == []


def test_checkpoint_lineage_over_three_rounds(store: Store) -> None:
    run = store.create_run("socratic", {})
    parent = None
    made = []
    for round_ in range(3):
        checkpoint = store.register_checkpoint(
            run.id,
            "student",
            round_,
            base_model="builtin:smollm2-135m",
            adapter_path=f"/adapters/{round_}",
            parent_id=parent,
            metrics={"loss": 1.0 / (round_ + 1)},
        )
        made.append(checkpoint.id)
        parent = checkpoint.id
    store.register_checkpoint(run.id, "teacher", 0, "hf:x", "/other")

    latest = store.latest_checkpoint(run.id, "student")
    assert latest is not None and latest.id == made[-1] and latest.round == 2
    lineage = store.checkpoint_lineage(made[-1])
    assert [c.id for c in lineage] == made
    assert [c.adapter_path for c in lineage] == ["/adapters/0", "/adapters/1", "/adapters/2"]
    assert store.latest_checkpoint(run.id, "critic") is None
    assert [c.id for c in store.checkpoints(run.id, role="student")] == made
    assert len(store.checkpoints(run.id)) == 4
    with pytest.raises(StoreError):
        store.register_checkpoint(run.id, "student", 3, "b", "/p", parent_id=9999)


def test_ledger_usage_totals_per_role_and_model(store: Store) -> None:
    run = store.create_run("socratic", {})
    other = store.create_run("socratic", {})
    for _ in range(3):
        store.record_call(
            "teacher-model",
            run_id=run.id,
            role="teacher",
            requests=2,
            samples=4,
            cached_samples=1,
            prompt_tokens=10,
            completion_tokens=20,
            latency_s=0.5,
        )
    store.record_call("student-model", run_id=run.id, role="student", samples=1)
    store.record_call("teacher-model", run_id=other.id, role="teacher", prompt_tokens=1000)
    store.record_call("teacher-model", prompt_tokens=1000)  # outside any run

    usage = store.usage(run.id)
    assert set(usage) == {("teacher", "teacher-model"), ("student", "student-model")}
    teacher = usage[("teacher", "teacher-model")]
    assert (teacher.calls, teacher.requests, teacher.samples, teacher.cached_samples) == (
        3,
        6,
        12,
        3,
    )
    assert (teacher.prompt_tokens, teacher.completion_tokens, teacher.tokens) == (30, 60, 90)
    assert teacher.latency_s == pytest.approx(1.5)
    assert usage[("student", "student-model")].calls == 1


def test_cache_put_get_many_keys_in_chunks(store: Store) -> None:
    entries = {
        f"{i:064x}": ("model-a", {"text": f"answer {i}", "cached": False}) for i in range(2500)
    }
    store.cache_put_many(entries)
    keys = list(entries) + ["f" * 64]
    found = store.cache_get_many(keys)
    assert len(found) == 2500
    assert found[f"{1234:064x}"] == {"text": "answer 1234", "cached": False}
    assert "f" * 64 not in found


def test_cache_put_ignores_duplicate_keys(store: Store) -> None:
    store.cache_put_many({"k1": ("m", {"text": "first"})})
    store.cache_put_many({"k1": ("m", {"text": "second"}), "k2": ("m", {"text": "new"})})
    assert store.cache_get_many(["k1", "k2", "k1"]) == {
        "k1": {"text": "first"},
        "k2": {"text": "new"},
    }
    store.cache_put_many({})


def test_two_stores_write_concurrently_from_threads(store: Store) -> None:
    stores = [store, Store(store.url)]
    run = stores[0].create_run("socratic", {})
    errors: list[Exception] = []

    def work(worker: int) -> None:
        store = stores[worker % 2]
        try:
            for i in range(25):
                store.start_stage(run.id, i % 3, "generate")  # read-then-write, contended
                store.add_trajectories(
                    [Trajectory(run_id=run.id, role=f"w{worker}", messages=TOOL_CONVERSATION)]
                )
                store.record_call("m", run_id=run.id, role=f"w{worker}", samples=1)
                # Overlapping keys between workers exercise insert-or-ignore under contention.
                store.cache_put_many({f"key-{(worker + i) % 20}": ("m", {"text": str(i)})})
                store.set_run_status(run.id, "running")
        except Exception as error:  # collected so the main thread can assert on it
            errors.append(error)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert len(stores[1].trajectories(run.id)) == 6 * 25
    assert sum(u.calls for u in stores[0].usage(run.id).values()) == 6 * 25
    assert len(stores[1].stages(run.id)) == 3
    assert len(stores[0].cache_get_many([f"key-{i}" for i in range(20)])) == 20


def test_open_with_explicit_sqlite_url_wins_over_workspace(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'elsewhere' / 'custom.db'}"
    workspace = Workspace(tmp_path / "ws")
    store = Store.open(workspace, url=url)
    run = store.create_run("socratic", {})
    assert (tmp_path / "elsewhere" / "custom.db").exists()
    assert not workspace.db_path.exists()
    assert Store(url).get_run(run.id).id == run.id


def test_in_memory_store_is_one_database_across_threads() -> None:
    store = Store("sqlite://")
    run = store.create_run("socratic", {})
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(store.get_run(run.id).id))
    thread.start()
    thread.join()
    assert seen == [run.id]


def test_session_is_a_unit_of_work_that_commits_or_rolls_back(store: Store) -> None:
    run = store.create_run("socratic", {})
    with store.session(write=True) as session:
        session.add(Trajectory(run_id=run.id, role="student", stage="solve"))
    with pytest.raises(RuntimeError), store.session(write=True) as session:
        session.add(Trajectory(run_id=run.id, role="student", stage="utility"))
        session.flush()
        raise RuntimeError("abandoned")
    with store.session() as session:
        session.add(Trajectory(run_id=run.id, role="student", stage="read-only"))
    assert [t.stage for t in store.trajectories(run.id)] == ["solve"]
    assert [t.role for t in store.trajectories(run.id, stage="solve")] == ["student"]
    assert store.trajectories(run.id, stage="utility") == []

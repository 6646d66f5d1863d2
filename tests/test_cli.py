"""The ``agents`` command end to end on the tiny model: run, eval, export, runs; and user errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from agents.cli import EXIT_USER_ERROR, main
from agents.export import AgentCard, load_agent
from agents.store import Store, Workspace

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _store(workspace: Path) -> Store:
    return Store.open(Workspace.resolve(workspace))


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One SFT run through the CLI, shared by the export tests."""
    workspace = tmp_path_factory.mktemp("ws")
    code = main(
        [
            "run", "sft", "--workspace", str(workspace), "--base", str(tiny_model_dir),
            "--data", str(EXAMPLES / "sft_tiny.jsonl"), "--max-steps", "2", "--quiet",
            "--set", "training.max_length=256", "--set", "system_prompt=Solve it.",
        ]
    )  # fmt: skip
    assert code == 0
    run = _store(workspace).list_runs()[0]
    return workspace, run.id


def test_run_sft_stores_a_finished_run_with_a_registered_adapter(trained: tuple[Path, str]) -> None:
    workspace, run_id = trained
    store = _store(workspace)
    run = store.get_run(run_id)
    assert run.status == "finished"
    assert run.config["training"]["max_steps"] == 2  # the flag overrode configs/sft.yaml
    (checkpoint,) = store.checkpoints(run_id)
    assert checkpoint.role == "student"
    assert (Path(checkpoint.adapter_path) / "adapter_config.json").exists()
    assert Path(checkpoint.adapter_path).is_relative_to(workspace)
    (stage,) = store.stages(run_id)
    assert stage.status == "finished" and stage.metrics["examples"] == 16


def test_export_writes_merged_weights_card_and_readme_that_load_back(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    workspace, run_id = trained
    out = tmp_path / "agent"
    assert main(["export", run_id, "--workspace", str(workspace), "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "tokenizer.json").exists()
    assert (out / "README.md").read_text().startswith("# ")
    card = AgentCard.read(out)
    assert card.run_id == run_id and card.scheme == "sft"
    assert card.system_prompt == "Solve it."
    assert [t["function"]["name"] for t in card.tools] == ["python_exec"]
    assert card.training_data == {"student round 0": 16}
    assert len(card.adapter_lineage) == 1
    agent = load_agent(out)
    assert isinstance(agent.ask("What is 2 + 2?", max_tokens=8), str)
    assert agent.engine.fingerprint.split("@")[0] == str(out)  # "@bfloat16" on such CPUs


def test_export_refuses_a_non_empty_directory_and_keeps_it(
    trained: tuple[Path, str], tmp_path: Path
) -> None:
    workspace, run_id = trained
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    code = main(["export", run_id, "--workspace", str(workspace), "--out", str(out)])
    assert code == EXIT_USER_ERROR
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".taken-")]  # no staging left


def test_export_of_an_unknown_run_is_a_user_error(
    trained: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, _ = trained
    code = main(
        ["export", "no-such-run", "--workspace", str(workspace), "--out", str(tmp_path / "x")]
    )
    assert code == EXIT_USER_ERROR
    assert "no-such-run" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_runs_list_and_show(trained: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    workspace, run_id = trained
    assert main(["runs", "list", "--workspace", str(workspace)]) == 0
    assert run_id in capsys.readouterr().out
    assert main(["runs", "show", run_id, "--workspace", str(workspace)]) == 0
    shown = capsys.readouterr().out
    assert "train" in shown and "checkpoint student round 0" in shown


def test_eval_stores_verdicts_and_a_rerun_is_served_from_the_cache(
    tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "eval", "--workspace", str(tmp_path), "--model", str(tiny_model_dir),
        "--data", str(EXAMPLES / "arith_eval.jsonl"), "--limit", "3", "--samples", "2",
        "--max-tokens", "8", "--temperature", "0.7", "--quiet",
    ]  # fmt: skip
    assert main(args) == 0 and main(args) == 0
    out = capsys.readouterr().out
    assert "finished" in out and "items (2 samples each)" in out  # the eval scheme's summary
    store = _store(tmp_path)
    second, first = store.list_runs()
    assert len(store.trajectories(first.id)) == 6
    assert {t.verdict for t in store.trajectories(first.id)} <= {"correct", "incorrect"}
    (use,) = store.usage(second.id).values()
    assert use.samples == 6 and use.cached_samples == 6 and use.completion_tokens == 0


def test_missing_training_data_exits_2_and_stores_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", "sft", "--workspace", str(tmp_path), "--data", str(tmp_path / "no.jsonl")])
    assert code == EXIT_USER_ERROR
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "no.jsonl" in err and len(err.splitlines()) == 1
    assert _store(tmp_path).list_runs() == []


def test_malformed_rows_are_reported_with_their_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"messages": []}) + "\n")
    code = main(["run", "sft", "--workspace", str(tmp_path), "--data", str(data)])
    assert code == EXIT_USER_ERROR
    assert "row 1 lacks messages" in capsys.readouterr().err
    assert _store(tmp_path).list_runs() == []


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["run", "nope"], "no scheme named 'nope'"),
        (["run", "sft", "--set", "training.learning_rate=fast"], "training.learning_rate"),
        (["run", "sft", "--set", "lora.rank=4"], "lora.rank"),
        (["run", "sft", "--base", "builtin:nope"], "unknown built-in model"),
        (["run", "sft", "--base", "/no/such/dir"], "unknown model"),
        (["eval", "--set", "engine.bogus=1"], "unknown engine option 'bogus'"),
        (["-v", "eval", "--data", "/no/eval.jsonl"], "/no/eval.jsonl does not exist"),
        (["run", "socratic", "--resume", "20990101-0000-abcd"], "No run '20990101-0000-abcd'"),
        (["run", "socratic", "--resume", "x", "--seeds", "3"], "keeps its stored settings"),
        (["run", "sft", "--resume", "20990101-0000-abcd"], "No run '20990101-0000-abcd'"),
        (["run", "socratic", "--seed-data", "/no/seeds.jsonl"], "/no/seeds.jsonl does not exist"),
        (["run", "socratic", "--solver", "openai:gpt-4o-mini"], "the solver is trained"),
        (["run", "socratic", "--rounds", "0"], "rounds: Input should be greater than"),
    ],
)
def test_user_errors_are_one_sentence_and_exit_2(
    argv: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*argv, "--workspace", str(tmp_path)]) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1
    assert _store(tmp_path).list_runs() == []


def test_bad_config_file_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text("training: [unclosed\n")
    code = main(["run", "sft", "--config", str(config), "--workspace", str(tmp_path)])
    assert code == EXIT_USER_ERROR
    assert "not valid YAML" in capsys.readouterr().err


def test_unreachable_endpoint_is_a_user_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "eval", "--workspace", str(tmp_path), "--model", "openai:m@http://127.0.0.1:9/v1",
            "--data", str(EXAMPLES / "arith_eval.jsonl"), "--limit", "1", "--quiet",
            "--set", "engine.max_retries=0",
        ]
    )  # fmt: skip
    assert code == EXIT_USER_ERROR
    assert "could not reach http://127.0.0.1:9/v1" in capsys.readouterr().err
    assert _store(tmp_path).list_runs() == []  # checked before a run row exists


def test_run_dpo_trains_and_registers(tiny_model_dir: Path, tmp_path: Path) -> None:
    code = main(
        [
            "run", "dpo", "--workspace", str(tmp_path), "--base", str(tiny_model_dir),
            "--data", str(EXAMPLES / "pairs_tiny.jsonl"), "--max-steps", "2", "--quiet",
            "--set", "training.max_length=256",
        ]
    )  # fmt: skip
    assert code == 0
    store = _store(tmp_path)
    (run,) = store.list_runs()
    (checkpoint,) = store.checkpoints(run.id)
    assert run.status == "finished" and checkpoint.metrics["examples"] == 12


def test_models_list_names_the_builtins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "builtin:smollm2-135m" in out and "builtin:qwen2.5-coder-0.5b" in out


def test_export_of_a_bare_model_copies_it(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "bare"
    assert main(["export", "--base", str(tiny_model_dir), "--out", str(out)]) == 0
    assert AgentCard.read(out).adapter_lineage == []
    shutil.rmtree(out)

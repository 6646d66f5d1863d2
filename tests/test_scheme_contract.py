"""A new scheme is one folder plus one line in the list of schemes.

``tests/toy_scheme/`` defines a scheme through the same contract as the built-in ones; here it is
added to :data:`agents.jobs.SCHEMES` (the one line) and driven through the command line: flags
from its config, a run interrupted after its first stage and resumed, its report section and
figure, and an export of the trained student. No shared module knows it exists.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import toy_scheme

from agents import jobs
from agents.cli import main
from agents.export import AgentCard
from agents.store import Store, Workspace

ROOT = Path(__file__).resolve().parent.parent
SHARED = ("agents", "tools", "strategies", "sandbox")


@pytest.fixture
def with_toy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs, "SCHEMES", [*jobs.SCHEMES, toy_scheme.SCHEME])


def test_the_toy_scheme_names_itself_only_through_its_folder() -> None:
    """No module of the framework mentions the toy scheme: adding it edited nothing shared."""
    for package in SHARED:
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "toy_scheme" not in text and "toy-distill" not in text, path


def test_the_toy_scheme_uses_public_names_only() -> None:
    """It imports the framework's public API, never a private name."""
    for path in Path(toy_scheme.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(SHARED):
                assert not any(alias.name.startswith("_") for alias in node.names), path


def test_flags_of_a_new_scheme_come_from_its_config(
    with_toy: None, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "toy-distill", "--help"])
    help_text = capsys.readouterr().out
    assert "--questions QUESTIONS" in help_text and "questions the teacher answers" in help_text
    assert "--steps STEPS" in help_text  # its FLAGS: a short flag for training.max_steps
    assert "Optimizer steps" in help_text  # the help of a dataclass setting


def test_a_new_scheme_runs_resumes_reports_and_exports(
    with_toy: None, tiny_model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workspace, marker = tmp_path / "ws", tmp_path / "pause"
    marker.touch()
    model = str(tiny_model_dir)
    argv = [
        "run", "toy-distill", "--workspace", str(workspace), "--teacher", model,
        "--student", model, "--questions", "2", "--steps", "1", "--quiet",
        "--set", f"pause_marker={marker}",
    ]  # fmt: skip
    assert main(argv) == 130  # interrupted once `answer` was committed
    store = Store.open(Workspace.resolve(workspace))
    (run,) = store.list_runs()
    assert run.scheme == "toy-distill" and run.status == "paused"
    assert [s.name for s in store.stages(run.id) if s.status == "finished"] == ["answer"]
    assert len(store.trajectories(run.id, role="teacher")) == 2

    assert main(["run", "toy-distill", "--resume", run.id, "--workspace", str(workspace)]) == 0
    assert f"run {run.id} finished" in capsys.readouterr().out
    assert store.get_run(run.id).status == "finished"
    assert len(store.trajectories(run.id, role="teacher")) == 2  # `answer` was not redone
    (checkpoint,) = store.checkpoints(run.id)
    assert checkpoint.role == "student" and checkpoint.metrics["examples"] == 2

    report = workspace / "reports" / run.id
    markdown = (report / "report.md").read_text()
    assert "## Toy distillation" in markdown and "| toy | 2 | 2 |" in markdown
    assert "`answer`" not in markdown.split("## Stage metrics")[-1].split("## Model usage")[0]
    assert (report / "report.png").read_bytes().startswith(b"\x89PNG")

    out = tmp_path / "exported"
    assert main(["export", run.id, "--workspace", str(workspace), "--out", str(out)]) == 0
    card = AgentCard.read(out)
    assert card.scheme == "toy-distill" and card.base_model == model
    assert card.system_prompt == "Answer in one short sentence."
    assert json.loads((out / "agent_card.json").read_text())["run_id"] == run.id


def test_shared_modules_name_no_scheme() -> None:
    """The command line, the config loader, the report and the export read the records only."""
    names = [scheme.name for scheme in jobs.SCHEMES]
    for module in ("config.py", "report.py", "reporting.py", "export.py", "cli.py"):
        text = (ROOT / "agents" / module).read_text()
        if module == "cli.py":  # `agents eval` is a command of its own, an alias of `run eval`
            text = text.replace('== "eval"', "").replace('"eval", help=', "")
        for name in names:
            assert f'"{name}"' not in text and f"'{name}'" not in text, (module, name)


def test_export_refuses_a_run_whose_export_roles_were_never_trained(tmp_path: Path) -> None:
    """An agent-distill run whose student was never trained (only the CoT baseline was): the
    export asks for a role instead of exporting the baseline as if it were the agent."""
    from agents.export import ExportError, card_for_run

    store = Store.open(Workspace.resolve(tmp_path))
    run = store.create_run("agent-distill", {})
    store.register_checkpoint(run.id, "student_cot", 0, base_model="m", adapter_path="/a")
    with pytest.raises(ExportError, match=r"\(student\); roles with adapters: student_cot"):
        card_for_run(store, run.id)
    _, adapter = card_for_run(store, run.id, role="student_cot")
    assert adapter == "/a"

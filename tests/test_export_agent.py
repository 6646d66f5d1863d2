"""An exported agent run as a tool-using agent: scripted engine, real sandbox, no real model."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from agents.episodes.agent_loop import AGENT_SYSTEM_PROMPT, DEMONSTRATIONS
from agents.export import CARD_FILE, AgentCard, ExportedAgent, ExportError, _readme, card_for_run
from agents.models.base import ChatRequest, ChatResult, Completion, Engine
from agents.store import Store
from tools import DEFAULT_TOOLS, Document, tool_schemas

SYSTEM = "You are a tiny agent. Call one tool per step."
_CODE = re.compile(r"Compute (.+?)\.")


def _call(name: str, arguments: dict[str, Any]) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}"


class ScriptedAgent(Engine):
    """Runs ``Compute EXPR.`` in python_exec, ``Look up X.`` with retrieve, then answers.

    The answer is the last line of the observation (the printed value) or the first retrieved
    title, so a right answer shows the tool really ran. Every request is recorded.
    """

    spec = "scripted:agent"

    def __init__(self) -> None:
        self.requests: list[ChatRequest] = []

    def _reply(self, messages: list[dict[str, Any]]) -> str:
        last = messages[-1]
        if last["role"] == "tool":
            content = str(last["content"])
            title = re.search(r"^\[1\] (.+)$", content, re.M)
            answer = title.group(1) if title else content.strip().splitlines()[-1]
            return f"Thought: the tool says {answer}.\n{_call('final_answer', {'answer': answer})}"
        question = str(last["content"])
        if code := _CODE.search(question):
            expression = code.group(1)
            return (
                f"Thought: I compute it.\n{_call('python_exec', {'code': f'print({expression})'})}"
            )
        return f"Thought: I look it up.\n{_call('retrieve', {'query': question})}"

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        self.requests.extend(requests)
        return [
            ChatResult(
                completions=[
                    Completion(text=self._reply(r.messages), finish_reason="stop")
                    for _ in range(r.n)
                ],
                model=self.spec,
            )
            for r in requests
        ]


class FakeCorpus:
    """Stands in for the Chroma corpus: every search finds one article."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def search(self, query: str, k: int = 3) -> list[Document]:
        self.queries.append(query)
        return [Document(id="Bergen", title="Bergen", text="A city in Norway.", distance=0.1)]


def _card(tools: list[str] | None = None, **extra: Any) -> AgentCard:
    chosen = [t for t in DEFAULT_TOOLS if tools is None or t.name in tools]
    return AgentCard(
        name="agent-distill-student-r1",
        base_model="builtin:smollm2-135m",
        system_prompt=SYSTEM,
        tools=tool_schemas(chosen),
        demonstrations=[dict(m) for m in DEMONSTRATIONS],
        run_id="r1",
        scheme="agent-distill",
        **extra,
    )


def _agent(card: AgentCard, tmp_path: Path) -> tuple[ExportedAgent, ScriptedAgent]:
    engine = ScriptedAgent()
    return ExportedAgent(engine=engine, card=card, path=tmp_path), engine


@pytest.fixture
def isolated() -> None:
    from sandbox import executor

    if executor.isolation_backend() == "none":
        pytest.skip("no sandbox isolation backend (bwrap, unshare) on this machine")


@pytest.mark.usefixtures("isolated")
def test_run_answers_with_python_in_the_sandbox_and_the_cards_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tools.retrieval

    def build(*_: Any, **__: Any) -> None:
        raise AssertionError("an agent without retrieve opened the corpus")

    monkeypatch.setattr(tools.retrieval, "build_default_corpus", build)
    agent, engine = _agent(_card(["python_exec", "final_answer"]), tmp_path)
    episode = agent.run("Compute 6 * 7 + 2**10.")
    assert episode.status == "answered" and episode.answer == "1066"
    assert episode.steps == 2 and episode.parse_errors == 0 and episode.exec_errors == 0
    # the card's system prompt, then its worked examples, then the task
    assert episode.messages[0] == {"role": "system", "content": SYSTEM}
    assert episode.messages[1 : 1 + len(DEMONSTRATIONS)] == DEMONSTRATIONS
    assert episode.messages[1 + len(DEMONSTRATIONS)]["content"] == "Compute 6 * 7 + 2**10."
    observation = next(
        m for m in episode.messages[1 + len(DEMONSTRATIONS) :] if m["role"] == "tool"
    )
    assert observation["name"] == "python_exec" and "1066" in observation["content"]
    # the model is offered exactly the card's tools
    names = [t["function"]["name"] for t in engine.requests[0].tools or []]
    assert names == ["python_exec", "final_answer"]

    batch = agent.run(["Compute 3 * 3.", "Compute 10 - 4."], max_steps=3)
    assert [e.answer for e in batch] == ["9", "6"]


def test_retrieve_uses_the_given_corpus_and_the_step_limit_holds(tmp_path: Path) -> None:
    agent, _ = _agent(_card(["retrieve", "final_answer"]), tmp_path)
    corpus = FakeCorpus()
    episode = agent.run("Look up the birthplace of Edvard Grieg.", corpus=corpus)  # type: ignore[arg-type]
    assert episode.answer == "Bergen" and corpus.queries
    stopped = agent.run("Look up Grieg.", corpus=corpus, max_steps=1)  # type: ignore[arg-type]
    assert stopped.status == "step_limit" and stopped.answer is None


@pytest.mark.usefixtures("isolated")
def test_default_corpus_is_opened_lazily_once_in_the_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tools.retrieval

    opened: list[Path] = []
    fake = FakeCorpus()

    def build(directory: Path, **_: Any) -> FakeCorpus:
        opened.append(Path(directory))
        return fake

    monkeypatch.setenv("AGENTS_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setattr(tools.retrieval, "build_default_corpus", build)
    agent, _ = _agent(_card(), tmp_path)
    assert not opened  # loading the agent does not touch the corpus
    assert agent.run("Compute 6 * 7.").answer == "42"
    assert not opened  # nor does a run that never calls retrieve
    assert agent.run("Look up Grieg.").answer == "Bergen"
    assert agent.run("Look up Bergen.").answer == "Bergen"
    assert opened == [tmp_path / "ws" / "chroma"]


def test_unknown_tools_and_settings_are_export_errors(tmp_path: Path) -> None:
    card = _card(["python_exec", "final_answer"])
    card.tools.append({"type": "function", "function": {"name": "web_search"}})
    card.tools.append({"type": "function", "function": {"name": "calendar"}})
    agent, engine = _agent(card, tmp_path)
    with pytest.raises(ExportError, match="unknown tools: web_search, calendar"):
        agent.run("Compute 1 + 1.")
    assert not engine.requests

    agent, engine = _agent(_card(["python_exec", "final_answer"]), tmp_path)
    with pytest.raises(ExportError, match="unknown agent settings: beam_width"):
        agent.run("Compute 1 + 1.", beam_width=4)

    # final_answer is how an episode ends: offered even when the card lacks it
    only_python, _ = _agent(_card(["python_exec"]), tmp_path)
    assert [t.name for t in only_python.tools()] == ["python_exec", "final_answer"]

    plain, _ = _agent(AgentCard(name="solver", base_model="builtin:smollm2-135m"), tmp_path)
    with pytest.raises(ExportError, match="not trained with tools"):
        plain.run("What is 1 + 1?")
    assert not engine.requests


def test_card_round_trip_keeps_demonstrations(tmp_path: Path) -> None:
    card = _card()
    card.write(tmp_path)
    again = AgentCard.read(tmp_path)
    assert again == card
    assert again.demonstrations == DEMONSTRATIONS
    assert again.tool_names == ["python_exec", "retrieve", "final_answer"]


def test_old_card_without_demonstrations_reads_and_runs_without_examples(tmp_path: Path) -> None:
    old = {
        "name": "old",
        "base_model": "builtin:smollm2-135m",
        "tools": tool_schemas([t for t in DEFAULT_TOOLS if t.name != "python_exec"]),
        "created_at": "2025-01-01T00:00:00+00:00",
        "format_version": 1,
        "written_by_a_newer_version": True,
    }
    (tmp_path / CARD_FILE).write_text(json.dumps(old))
    card = AgentCard.read(tmp_path)
    assert card.demonstrations is None and card.system_prompt is None
    agent, _ = _agent(card, tmp_path)
    episode = agent.run("Look up Grieg.", corpus=FakeCorpus())  # type: ignore[arg-type]
    # no system prompt on the card: the loop's own; no worked examples
    assert episode.messages[0]["content"] == AGENT_SYSTEM_PROMPT
    assert episode.messages[1] == {"role": "user", "content": "Look up Grieg."}


def test_unreadable_cards_are_export_errors(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="not an exported agent"):
        AgentCard.read(tmp_path)
    (tmp_path / CARD_FILE).write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        AgentCard.read(tmp_path)
    (tmp_path / CARD_FILE).write_text(json.dumps({"name": "x"}))
    with pytest.raises(ExportError, match="lacks base_model"):
        AgentCard.read(tmp_path)


def test_readme_of_a_tool_agent_shows_run_and_the_tools(tmp_path: Path) -> None:
    text = _readme(_card(), tmp_path / "agent")
    assert 'episode = agent.run("' in text and "print(episode.answer)" in text
    for tool in DEFAULT_TOOLS:
        assert f"- `{tool.name}`: {tool.description.splitlines()[0]}" in text
    assert "2 worked examples" in text and "embeds its 10,033 summaries" in text
    snippet = text.split("```python\n", 1)[1].split("```", 1)[0]
    compile(snippet, "README.md", "exec")
    plain = _readme(AgentCard(name="solver", base_model="builtin:smollm2-135m"), tmp_path)
    assert "agent.ask(" in plain and "agent.run(" not in plain


def test_card_for_an_agent_distill_run_has_tools_prompt_and_demonstrations(
    tmp_path: Path,
) -> None:
    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    try:
        run = store.create_run("agent-distill", {})
        schemas = tool_schemas()
        store.register_checkpoint(
            run.id,
            "student",
            0,
            "builtin:smollm2-135m",
            tmp_path / "adapter",
            metrics={"examples": 12, "system_prompt": AGENT_SYSTEM_PROMPT, "tools": schemas},
        )
        card, adapter = card_for_run(store, run.id)
        assert adapter == str(tmp_path / "adapter")
        assert card.system_prompt == AGENT_SYSTEM_PROMPT and card.tools == schemas
        assert card.demonstrations == DEMONSTRATIONS
        assert card.demonstrations is not DEMONSTRATIONS
        assert card.training_data == {"student round 0": 12}

        sft = store.create_run("sft", {})
        store.register_checkpoint(sft.id, "student", 0, "builtin:smollm2-135m", tmp_path / "a2")
        assert card_for_run(store, sft.id)[0].demonstrations is None
    finally:
        store.close()

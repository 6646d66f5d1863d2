"""The code-action agent on scripted engines: Python blocks run in the sandbox, ``retrieve`` and
``final_answer`` called from inside the code over the sandbox's channel, parse and execution
errors, the step limit, and self-consistency over execution outputs."""

from __future__ import annotations

import pytest
from scripted_engine import ScriptedEngine

from agents.episodes.agent_loop import LoopSettings
from agents.episodes.code_agent import parse_code_action, run_code_agent
from agents.models.base import ChatRequest, ChatResult, Completion
from tools.retrieval import Document

pytestmark = pytest.mark.usefixtures("sandbox_backend")


class Script(ScriptedEngine):
    """Replies by question and step: ``script[question][step]`` is a list of candidates."""

    def __init__(self, script: dict[str, list[list[str]]]) -> None:
        super().__init__("agent")
        self.script = script
        self.batches = 0

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        self.batches += 1
        results = []
        for request in requests:
            self.requests.append(("step", request))
            question = next(
                m["content"] for m in reversed(request.messages) if m["content"] in self.script
            )
            at = request.messages.index(
                next(m for m in request.messages if m["content"] == question)
            )
            step = sum(m["role"] == "assistant" for m in request.messages[at:])
            texts = self.script[question][step][: request.n]
            results.append(ChatResult([Completion(text=t, finish_reason="stop") for t in texts]))
        return results


class Shelf:
    """A stand-in corpus: one passage, and a record of the searches."""

    def __init__(self) -> None:
        self.searches: list[tuple[str, int]] = []

    def search(self, query: str, k: int = 3) -> list[Document]:
        self.searches.append((query, k))
        text = "Tromsø is a city in northern Norway with about 77,000 inhabitants."
        return [Document(id="1", title="Tromsø", text=text)]


def block(code: str, thought: str = "Thought: I compute it.") -> str:
    return f"{thought}\n```python\n{code}\n```"


def test_exact_arithmetic_in_one_step() -> None:
    q = "What is 48271 * 9173?"
    engine = Script({q: [[block("x = 48271 * 9173\nprint(x)\nfinal_answer(x)")]]})
    (episode,) = run_code_agent(engine, [q], demonstrations=[])
    assert (episode.status, episode.answer, episode.steps) == ("answered", "442789883", 1)
    assert episode.messages[-1]["content"].endswith("final_answer(x)\n```")
    assert episode.clean


def test_retrieve_inside_the_code_reaches_the_corpus_through_the_channel() -> None:
    q = "How many people live in Tromsø?"
    engine = Script(
        {
            q: [
                [block("print(retrieve('Tromsø population', k=1))", "Thought: look it up.")],
                [block("final_answer('about 77,000')", "Thought: the passage says so.")],
            ]
        }
    )
    shelf = Shelf()
    (episode,) = run_code_agent(engine, [q], corpus=shelf, demonstrations=[])  # type: ignore[arg-type]
    assert shelf.searches == [("Tromsø population", 1)]
    observation = episode.messages[-2]["content"]
    assert observation.startswith("Observation:") and "77,000 inhabitants" in observation
    assert (episode.status, episode.answer, episode.steps) == ("answered", "about 77,000", 2)
    # Both blocks ran as python; one retrieve call crossed the channel.
    assert episode.tool_uses == {"python_exec": 2, "retrieve": 1}


def test_bad_retrieve_arguments_and_errors_are_observations() -> None:
    q = "Q?"
    engine = Script(
        {
            q: [
                [block("retrieve('x', k=50)")],
                [block("1 / 0")],
                [block("final_answer(7)")],
            ]
        }
    )
    (episode,) = run_code_agent(engine, [q], corpus=Shelf(), demonstrations=[])  # type: ignore[arg-type]
    observations = [m["content"] for m in episode.messages if m["role"] == "user"][1:]
    assert "k must be an integer from 1 to 10" in observations[0]
    assert "ZeroDivisionError" in observations[1]
    assert (episode.exec_errors, episode.answer) == (2, "7")


def test_a_reply_without_code_is_a_parse_error_and_the_episode_goes_on() -> None:
    q = "Q?"
    engine = Script({q: [["I think it is 7."], ["Thought: right.\nfinal_answer(7)"]]})
    (episode,) = run_code_agent(engine, [q], demonstrations=[])
    assert episode.parse_errors == 1 and not episode.clean
    assert "no Python code block found" in episode.messages[3]["content"]
    assert episode.answer == "7"  # a bare final_answer(...) line is code too


def test_the_step_limit_ends_an_episode() -> None:
    q = "Q?"
    engine = Script({q: [[block("print(1)")]] * 3})
    (episode,) = run_code_agent(engine, [q], settings=LoopSettings(max_steps=3), demonstrations=[])
    assert (episode.status, episode.steps, episode.answer) == ("step_limit", 3, None)


def test_a_final_answer_in_failing_code_does_not_count() -> None:
    q = "Q?"
    engine = Script({q: [[block("final_answer(3)\n1 / 0")], [block("final_answer(4)")]]})
    (episode,) = run_code_agent(engine, [q], demonstrations=[])
    assert episode.answer == "4" and episode.exec_errors == 1


def test_self_consistency_votes_over_execution_outcomes_after_replaying_earlier_code() -> None:
    q = "Q?"
    engine = Script(
        {
            q: [
                [block("base = 40")],
                [
                    block("final_answer(base + 1)"),  # 41
                    block("final_answer(base + 2)"),  # 42
                    block("final_answer(base * 1 + 2)"),  # 42: the majority
                    block("final_answer(undefined)"),  # an error: not valid
                ],
            ]
        }
    )
    settings = LoopSettings(candidates=4)
    (episode,) = run_code_agent(engine, [q], settings=settings, demonstrations=[])
    assert episode.answer == "42"
    assert episode.candidates[-1] == {"step": 1, "valid": 3, "chosen": 1}


def test_parsing() -> None:
    assert parse_code_action("T\n```py\nprint(1)\n```\ntrailing").code == "print(1)"
    assert parse_code_action("T\n```python\nprint(1)").code == "print(1)"  # cut by a stop
    assert parse_code_action("no code").error == "no Python code block found"


def test_episodes_run_in_lockstep_batches() -> None:
    questions = [f"Q{i}?" for i in range(3)]
    engine = Script({q: [[block(f"final_answer({i})")]] for i, q in enumerate(questions)})
    episodes = run_code_agent(engine, questions, demonstrations=[])
    assert [e.answer for e in episodes] == ["0", "1", "2"]
    assert (engine.batches, len(engine.requests)) == (1, 3)  # one batch of three requests

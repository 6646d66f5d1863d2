"""The tool-using agent loop: reply parsing, the self-consistent choice, and whole episodes.

Episodes run the scripted agent of ``agent_world`` (no model) against the real sandbox, which is
fast; they are skipped where bubblewrap is missing, as the sandbox tests are.
"""

from __future__ import annotations

import json
import shutil

import pytest
from agent_world import FORCED, FakeCorpus, ScriptedAgent

from agents.episodes.agent_loop import (
    AGENT_SYSTEM_PROMPT,
    DEMONSTRATIONS,
    STOP,
    Episode,
    LoopSettings,
    choose_action,
    parse_action,
    run_agent,
)

needs_sandbox = pytest.mark.skipif(
    shutil.which("bwrap") is None, reason="bubblewrap is not installed"
)


def arguments(call: dict) -> dict:
    return json.loads(call["function"]["arguments"])


# ---------------------------------------------------------------------------- parse_action


def test_tool_call_block_gives_the_call_and_the_thought() -> None:
    text = (
        "Thought: I add them in Python.\n"
        '<tool_call>{"name": "python_exec", "arguments": {"code": "print(2 + 3)"}}</tool_call>'
    )
    action = parse_action(text, "call_7")
    assert action.error is None
    assert action.thought == "Thought: I add them in Python."
    assert action.call == {
        "id": "call_7",
        "type": "function",
        "function": {"name": "python_exec", "arguments": '{"code": "print(2 + 3)"}'},
    }
    assert not action.is_final and action.text == text


def test_missing_closing_tag_is_fine() -> None:
    # "</tool_call>" is a stop string, so engines never return it.
    action = parse_action(
        'Thought: done.\n<tool_call>{"name": "final_answer", "arguments": {"answer": "5"}}'
    )
    assert action.error is None and action.is_final
    assert arguments(action.call) == {"answer": "5"}
    assert action.thought == "Thought: done."


def test_raw_newlines_inside_code_strings_are_accepted() -> None:
    text = '<tool_call>{"name": "python_exec", "arguments": {"code": "x = 2\nprint(x * 3)"}}'
    action = parse_action(text)
    assert action.error is None
    assert arguments(action.call) == {"code": "x = 2\nprint(x * 3)"}
    assert action.thought == ""


def test_bare_call_object_without_tags() -> None:
    action = parse_action(
        'Thought: look it up.\n{"name": "retrieve", "arguments": {"query": "Edvard Grieg"}}'
    )
    assert action.error is None
    assert action.call["function"]["name"] == "retrieve"
    assert arguments(action.call) == {"query": "Edvard Grieg"}
    assert action.thought == "Thought: look it up."


def test_arguments_given_as_a_json_string_are_decoded() -> None:
    action = parse_action(
        '<tool_call>{"name": "final_answer", "arguments": "{\\"answer\\": \\"Bergen\\"}"}'
    )
    assert action.error is None and arguments(action.call) == {"answer": "Bergen"}


@pytest.mark.parametrize("fence", ["```python", "```py", "```"])
def test_fenced_python_block_is_a_python_exec_call(fence: str) -> None:
    action = parse_action(f"Thought: compute.\n{fence}\nx = 6 * 7\nprint(x)\n```\nDone.")
    assert action.error is None
    assert action.call["function"]["name"] == "python_exec"
    assert arguments(action.call) == {"code": "x = 6 * 7\nprint(x)"}
    assert action.thought == "Thought: compute."


def test_unclosed_fence_is_read_to_the_end() -> None:
    action = parse_action("```python\nprint(1)\n")
    assert arguments(action.call) == {"code": "print(1)"}


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('<tool_call>{"name": "python_exec", "arguments": {"code": }}', "not valid JSON"),
        ("<tool_call>not json at all", "not valid JSON"),
        ('<tool_call>{"arguments": {"code": "1"}}', 'needs a "name" string'),
        ("<tool_call>[1, 2]", 'needs a "name" string'),
        ('<tool_call>{"name": "python_exec", "arguments": [1]}', "not a JSON object"),
        ('<tool_call>{"name": "python_exec", "arguments": "{oops"}', "not a JSON object"),
    ],
)
def test_malformed_call_is_an_error_without_a_call(text: str, error: str) -> None:
    action = parse_action(f"Thought: try.\n{text}")
    assert action.call is None and not action.is_final
    assert error in action.error
    assert action.thought == "Thought: try."


def test_reply_without_any_call_is_an_error() -> None:
    action = parse_action("  Thought: I think the answer is 42.  ")
    assert action.call is None
    assert action.error == "no tool call found"
    assert action.thought == "Thought: I think the answer is 42."


def test_only_the_first_of_two_calls_is_taken() -> None:
    text = (
        "Thought: two at once.\n"
        '<tool_call>{"name": "python_exec", "arguments": {"code": "print(1)"}}</tool_call>\n'
        '<tool_call>{"name": "final_answer", "arguments": {"answer": "1"}}</tool_call>'
    )
    action = parse_action(text)
    assert action.call["function"]["name"] == "python_exec"
    assert arguments(action.call) == {"code": "print(1)"}
    assert not action.is_final


def test_tool_call_tag_wins_over_an_earlier_fence() -> None:
    text = (
        "Thought: an example first.\n```python\nprint('not run')\n```\n"
        '<tool_call>{"name": "final_answer", "arguments": {"answer": "7"}}'
    )
    action = parse_action(text)
    assert action.is_final and arguments(action.call) == {"answer": "7"}
    assert action.thought.startswith("Thought: an example first.")


# ---------------------------------------------------------------------------- choose_action


@pytest.mark.parametrize(
    ("outcomes", "chosen"),
    [
        ([(True, "6"), (True, "5"), (True, "5")], 1),  # most common output, first index of it
        ([(False, "x"), (True, "6"), (True, "5"), (True, "5"), (True, "6"), (True, "5")], 2),
        ([(True, "a"), (True, "b"), (True, "b"), (True, "a")], 0),  # a tie: the first of them
        ([(False, "e"), (True, "a"), (True, "b")], 1),  # all valid outputs differ: first valid
        ([(False, "a"), (False, "a"), (True, "b")], 2),  # invalid outputs never count
        ([(False, "e1"), (False, "e2")], 0),  # none valid
        ([], 0),
    ],
)
def test_choose_action(outcomes: list[tuple[bool, str]], chosen: int) -> None:
    assert choose_action(outcomes) == chosen


# ---------------------------------------------------------------------------- episodes


def run_one(
    question: str, engine: ScriptedAgent | None = None, **settings: object
) -> tuple[Episode, ScriptedAgent]:
    engine = engine or ScriptedAgent()
    options = {"max_steps": 4, "sandbox_timeout": 5.0, **settings}
    (episode,) = run_agent(
        engine, [question], settings=LoopSettings(**options), corpus=FakeCorpus()
    )
    return episode, engine


def turns(episode: Episode) -> list[dict]:
    """The turns after the task (the system prompt and demonstrations left out)."""
    return episode.messages[2 + len(DEMONSTRATIONS) :]


@needs_sandbox
def test_math_episode_answers_with_openai_tool_messages() -> None:
    episode, engine = run_one("What is 2 + 3?")
    assert (episode.status, episode.answer, episode.steps) == ("answered", "5", 2)
    assert (episode.parse_errors, episode.exec_errors, episode.forced_calls) == (0, 0, 0)
    assert episode.clean
    assert episode.tool_uses == {"python_exec": 1}  # final_answer ends it; it is not a tool use
    assert episode.summary()["tool_uses"] == {"python_exec": 1}
    assert episode.messages[0] == {"role": "system", "content": AGENT_SYSTEM_PROMPT}
    assert episode.messages[1 : 1 + len(DEMONSTRATIONS)] == DEMONSTRATIONS
    assert episode.messages[1 + len(DEMONSTRATIONS)] == {
        "role": "user",
        "content": "What is 2 + 3?",
    }
    run, observation, final = turns(episode)
    assert run == {
        "role": "assistant",
        "content": "Thought: I compute 2 + 3 in Python.",
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "python_exec", "arguments": '{"code": "print(2 + 3)"}'},
            }
        ],
    }
    assert observation == {
        "role": "tool",
        "tool_call_id": "call_0",
        "name": "python_exec",
        "content": "stdout:\n5\n",
    }
    assert final["role"] == "assistant" and final["tool_calls"][0]["id"] == "call_1"
    assert final["tool_calls"][0]["function"]["name"] == "final_answer"
    assert arguments(final["tool_calls"][0]) == {"answer": "5"}
    # Every reply was asked with the tools, the stop strings and a seed per step.
    asked = engine.requests_of("agent")
    assert [r.seed for r in asked] == [0, 1]
    assert all(r.stop == STOP and r.n == 1 and r.temperature == 0.0 for r in asked)
    assert [t["function"]["name"] for t in asked[0].tools] == [
        "python_exec",
        "retrieve",
        "final_answer",
    ]


@needs_sandbox
def test_factual_episode_retrieves_then_answers() -> None:
    corpus = FakeCorpus()
    engine = ScriptedAgent()
    (episode,) = run_agent(
        engine, ["What is the capital of Freedonia?"], settings=LoopSettings(), corpus=corpus
    )
    assert (episode.status, episode.answer, episode.exec_errors) == ("answered", "Fredville", 0)
    assert corpus.queries == ["capital of Freedonia"]
    assert episode.tool_uses == {"retrieve": 1}
    observation = turns(episode)[1]
    assert observation["name"] == "retrieve"
    assert observation["content"].startswith("[1] Freedonia\n")
    assert "The capital of Freedonia is Fredville." in observation["content"]


@needs_sandbox
def test_retrieve_without_a_corpus_is_an_execution_error() -> None:
    (episode,) = run_agent(
        ScriptedAgent(), ["What is the capital of Freedonia?"], settings=LoopSettings(max_steps=2)
    )
    assert episode.status == "step_limit" and episode.answer is None
    assert episode.exec_errors == 2 and episode.parse_errors == 0
    for observation in turns(episode)[1::2]:
        assert observation["content"].startswith("Error: retrieve: no document collection")


@needs_sandbox
def test_step_limit_stops_an_agent_that_never_answers() -> None:
    episode, engine = run_one("What is 8 + 9? #loop", max_steps=3)
    assert (episode.status, episode.answer, episode.steps) == ("step_limit", None, 3)
    assert not episode.clean
    assert [m["role"] for m in turns(episode)] == ["assistant", "tool"] * 3
    assert all(m["content"] == "stdout:\n17\n" for m in turns(episode)[1::2])
    assert len(engine.requests_of("agent")) == 3


@needs_sandbox
def test_parse_error_gets_an_error_observation_and_the_agent_recovers() -> None:
    episode, _ = run_one("What is 10 + 11? #parse1")
    assert (episode.status, episode.answer) == ("answered", "21")
    assert episode.parse_errors == 1 and not episode.clean
    first, error = turns(episode)[:2]
    assert first == {
        "role": "assistant",
        "content": "I think it is 42.\n<tool_call>\nI cannot decide what to do.",
    }
    assert error["role"] == "user" and error["content"].startswith("Error: ")
    assert "not valid JSON" in error["content"] and "<tool_call>" in error["content"]
    assert turns(episode)[2]["tool_calls"][0]["id"] == "call_1"


@needs_sandbox
def test_replies_without_calls_are_counted_until_the_step_limit() -> None:
    episode, _ = run_one("What is 1 + 2? #noparse", max_steps=3)
    assert (episode.status, episode.parse_errors, episode.exec_errors) == ("step_limit", 3, 0)
    assert [m["role"] for m in turns(episode)] == ["assistant", "user"] * 3
    assert all(m["content"].startswith("Error:") for m in turns(episode)[1::2])


@needs_sandbox
def test_execution_error_is_the_observation_and_the_episode_goes_on() -> None:
    episode, _ = run_one("What is 4 + 5? #crash")
    assert (episode.status, episode.answer, episode.steps) == ("answered", "9", 3)
    assert (episode.exec_errors, episode.parse_errors) == (1, 0)
    assert episode.clean  # execution errors are allowed in a clean trajectory
    crashed = turns(episode)[1]
    assert crashed["role"] == "tool" and crashed["name"] == "python_exec"
    assert "ZeroDivisionError: division by zero" in crashed["content"]
    assert turns(episode)[3]["content"] == "stdout:\n9\n"


@needs_sandbox
def test_a_call_killed_after_printing_is_an_execution_error() -> None:
    episode, _ = run_one("What is 2 + 2? #hang", sandbox_timeout=1.0)
    killed = turns(episode)[1]["content"]
    assert killed.startswith("stdout:\nstarted") and "killed (timeout)" in killed
    assert (episode.status, episode.answer) == ("answered", "4")
    assert episode.exec_errors == 1


@needs_sandbox
def test_python_state_persists_across_steps() -> None:
    episode, _ = run_one("What is 3 + 3? #state")
    assert (episode.status, episode.answer, episode.exec_errors) == ("answered", "6", 0)
    store, show = turns(episode)[1], turns(episode)[3]
    assert store["content"] == "(no output)"
    assert arguments(turns(episode)[2]["tool_calls"][0]) == {"code": "print(x)"}
    assert show["content"] == "stdout:\n6\n"


@needs_sandbox
def test_prefix_is_forced_on_the_first_reply_only() -> None:
    prefix = "Thought: I add 2 and 3, which is easy with Python."
    engine = ScriptedAgent()
    (episode,) = run_agent(
        engine, ["What is 2 + 3?"], settings=LoopSettings(), prefixes=[prefix], corpus=None
    )
    assert (episode.status, episode.answer, episode.prefix) == ("answered", "5", prefix)
    assert [r.prefix for r in engine.requests_of("agent")] == [prefix, None]
    first = turns(episode)[0]
    assert first["content"].startswith(prefix)
    assert first["tool_calls"][0]["function"]["name"] == "python_exec"
    assert episode.summary()["prefix"] == prefix


def test_prefixes_must_match_the_questions() -> None:
    with pytest.raises(ValueError, match="2 questions but 1 prefixes"):
        run_agent(ScriptedAgent(), ["a", "b"], prefixes=["Thought: x"])


def test_no_questions_no_episodes() -> None:
    engine = ScriptedAgent()
    assert run_agent(engine, []) == [] and engine.requests == []


@needs_sandbox
def test_a_reply_that_stops_before_its_call_is_completed_after_an_opened_tag() -> None:
    episode, engine = run_one("What is 3 + 4? #stop")
    asked = engine.requests_of("agent")
    assert len(asked) == 3  # step 0, its completion, step 1
    completion = asked[1]
    assert completion.prefix.endswith(FORCED)
    assert completion.prefix == f"Thought: I add the numbers with Python.\n{FORCED}"
    assert completion.n == 1 and completion.messages == asked[0].messages
    assert (episode.forced_calls, episode.parse_errors) == (1, 0)
    assert (episode.status, episode.answer) == ("answered", "7")
    first = turns(episode)[0]
    assert first["content"] == "Thought: I add the numbers with Python."
    assert arguments(first["tool_calls"][0]) == {"code": "print(3 + 4)"}


@needs_sandbox
def test_call_completion_can_be_turned_off() -> None:
    episode, engine = run_one("What is 3 + 4? #stop", complete_calls=False)
    assert all(r.prefix is None for r in engine.requests_of("agent"))
    assert (episode.forced_calls, episode.parse_errors) == (0, 1)
    assert turns(episode)[1]["content"].startswith("Error: no tool call found")
    assert (episode.status, episode.answer) == ("answered", "7")


@needs_sandbox
def test_a_reply_cut_by_max_tokens_is_not_completed() -> None:
    episode, engine = run_one("What is 3 + 5? #cut")
    assert all(r.prefix is None for r in engine.requests_of("agent"))
    assert (episode.forced_calls, episode.parse_errors) == (0, 1)
    assert (episode.status, episode.answer) == ("answered", "8")


@needs_sandbox
def test_self_consistency_runs_the_candidates_and_keeps_the_majority_output() -> None:
    # Step 0: candidates print 6, 5, 5 (as "3 + 2") and a syntax error: 3 valid, the first
    # candidate of the majority output is chosen. Step 1: four identical final answers.
    episode, engine = run_one("What is 2 + 3? #sc", candidates=4, candidate_temperature=0.4)
    assert episode.candidates == [
        {"step": 0, "valid": 3, "chosen": 1},
        {"step": 1, "valid": 4, "chosen": 0},
    ]
    assert (episode.status, episode.answer, episode.exec_errors) == ("answered", "5", 0)
    assert arguments(turns(episode)[0]["tool_calls"][0]) == {"code": "print(2 + 3)"}
    assert turns(episode)[1]["content"] == "stdout:\n5\n"
    asked = engine.requests_of("agent")
    assert [(r.n, r.temperature) for r in asked] == [(4, 0.4), (4, 0.4)]
    assert episode.summary()["candidates"] == episode.candidates


@needs_sandbox
def test_self_consistency_with_all_outputs_different_keeps_the_first_valid() -> None:
    episode, _ = run_one("What is 2 + 3? #sc", candidates=2)
    assert episode.candidates[0] == {"step": 0, "valid": 2, "chosen": 0}
    assert arguments(turns(episode)[0]["tool_calls"][0]) == {"code": "print(2 + 3 + 1)"}
    assert episode.answer == "6"


@needs_sandbox
def test_candidates_replay_the_episode_code_before_they_run() -> None:
    # Step 1 of "#state" prints x, which only exists if the scratch sandbox of each candidate
    # first replays step 0's "x = 3 + 3".
    episode, _ = run_one("What is 3 + 3? #state", candidates=3)
    assert [c["valid"] for c in episode.candidates] == [3, 3, 3]
    assert (episode.status, episode.answer, episode.exec_errors) == ("answered", "6", 0)


@needs_sandbox
def test_episodes_run_in_lockstep_batches() -> None:
    engine = ScriptedAgent()
    questions = ["What is 2 + 3?", "What is 4 + 5? #crash", "What is the capital of Genovia?"]
    episodes = run_agent(engine, questions, settings=LoopSettings(), corpus=FakeCorpus())
    assert [e.answer for e in episodes] == ["5", "9", "Pyrus"]
    assert [e.steps for e in episodes] == [2, 3, 2]
    # One engine call per step for every running episode: 3, 3, then only the crashed one.
    assert engine.batches == [3, 3, 1]

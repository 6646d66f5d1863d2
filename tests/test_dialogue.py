"""Simulated customer-service dialogues with scripted agents and customers on the retail domain."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from scripted_engine import ScriptedEngine

from agents.episodes.dialogue import (
    CUSTOMER_STOP,
    GREETING,
    GUIDANCE_HEADER,
    DialogueSettings,
    agent_system_prompt,
    conversation_text,
    customer_message,
    customer_messages,
    next_replies,
    read_reply,
    reply_text,
    run_dialogues,
)
from agents.models.base import ChatRequest, ChatResult, Completion
from tools.service import load_domain

EMAIL = "noah.brown7922@example.com"  # a real retail user: noah_brown_6181


class RuleEngine(ScriptedEngine):
    """Answers every request with ``rule(request)``."""

    def __init__(self, role: str, rule: Callable[[ChatRequest], str]) -> None:
        super().__init__(role)
        self.rule = rule

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        out = []
        for request in requests:
            self.requests.append(("any", request))
            out.append(ChatResult(completions=[Completion(text=self.rule(request))]))
        return out


def call(name: str, **arguments: object) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {json.dumps(arguments)}}}'


def customer(script: list[str]) -> RuleEngine:
    """A customer saying ``script`` in order (its own earlier messages are the assistant turns)."""

    def rule(request: ChatRequest) -> str:
        said = request.messages[-1]["content"].count("YOU (customer):")
        return script[min(said, len(script) - 1)]

    return RuleEngine("customer", rule)


@pytest.fixture(scope="module")
def retail():
    return load_domain("retail")


def test_agent_looks_up_then_answers_until_the_customer_stops(retail) -> None:
    def agent(request: ChatRequest) -> str:
        last = request.messages[-1]
        if last["role"] == "user" and "email" in last["content"]:
            return call("find_user_id_by_email", email=EMAIL)
        if last["role"] == "tool":
            return "Thanks, I found your account. What can I do for you?"
        return "Please tell me your email."

    task = retail.split("train")[0]
    script = [f"Hi, my email is {EMAIL}.", "That's all.", CUSTOMER_STOP]
    [d] = run_dialogues(RuleEngine("agent", agent), customer(script), retail, [task])
    assert d.ended == "customer_stop"
    assert d.messages[0] == {"role": "assistant", "content": GREETING}
    tool = next(m for m in d.messages if m["role"] == "tool")
    assert "noah_brown_6181" in tool["content"]
    # every turn starts right after a customer message
    assert d.turns and all(d.messages[i - 1]["role"] == "user" for i in d.turns)
    assert d.summary()["tool_calls"] == 1 and d.tool_errors == 0


def test_tool_limit_transfer_and_max_turns_end_dialogues(retail) -> None:
    tasks = retail.split("train")[:3]

    def agent(request: ChatRequest) -> str:
        brief = next(m["content"] for m in request.messages if m["role"] == "user")
        if "loop" in brief:
            return call("get_user_details", user_id="noah_brown_6181")
        if "human" in brief:
            return call("transfer_to_human_agents", summary="wants a human")
        return "Anything else?"

    def talk(request: ChatRequest) -> str:
        system = request.messages[0]["content"]
        for task, opener in zip(tasks, ["loop please", "a human please", "chat"], strict=True):
            if task.customer_brief() in system:
                return opener
        return "more"

    settings = DialogueSettings(max_turns=2, max_tool_calls=2)
    dialogues = run_dialogues(
        RuleEngine("agent", agent), RuleEngine("customer", talk), retail, tasks, settings=settings
    )
    assert [d.ended for d in dialogues] == ["tool_limit", "transfer", "max_turns"]
    assert sum(bool(m.get("tool_calls")) for m in dialogues[0].messages) == 2
    assert len(dialogues[2].turns) == 2


def test_a_conversation_that_fills_the_agents_context_ends_the_dialogue(retail) -> None:
    class Full(RuleEngine):  # an engine that finds no room left after the second customer turn
        def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
            out = super()._generate(requests, progress=progress)
            for request, result in zip(requests, out, strict=True):
                if sum(m["role"] == "user" for m in request.messages) >= 2:
                    result.completions = [Completion(text="", finish_reason="length")]
            return out

    task = retail.split("train")[0]
    agent = Full("agent", lambda request: "What else?")
    [d] = run_dialogues(agent, customer(["Hi, a question.", "Another."]), retail, [task])
    assert d.ended == "context"
    assert [m["role"] for m in d.messages] == ["assistant", "user", "assistant", "user"]
    assert not Completion(text="", finish_reason="length", completion_tokens=3).context_full


def test_each_dialogue_gets_a_fresh_database(retail) -> None:
    db = retail.fresh_db()
    pending = next(o for o in db["orders"].values() if o["status"] == "pending")
    order = pending["order_id"]

    def agent(request: ChatRequest) -> str:
        if request.messages[-1]["role"] == "tool":
            return "Done."
        return call("cancel_pending_order", order_id=order, reason="no longer needed")

    tasks = retail.split("train")[:2]
    dialogues = run_dialogues(
        RuleEngine("agent", agent), customer(["cancel it", CUSTOMER_STOP]), retail, tasks
    )
    for d in dialogues:  # both cancel successfully: the first did not change the second's db
        tool = next(m for m in d.messages if m["role"] == "tool")
        assert not tool["content"].startswith("Error"), tool["content"]
    assert retail.fresh_db()["orders"][order]["status"] == "pending"


def test_guidance_reaches_the_prompt_and_is_recorded(retail) -> None:
    seen: list[str] = []

    def guide(messages):
        seen.append(messages[-1]["content"])
        return [(7, "Ask for the email first.")]

    engine = RuleEngine("agent", lambda r: "Could I have your email?")
    [d] = run_dialogues(
        engine, customer(["help me", CUSTOMER_STOP]), retail, retail.split("test")[:1], guide=guide
    )
    system = engine.requests[0][1].messages[0]["content"]
    assert GUIDANCE_HEADER in system and "- Ask for the email first." in system
    assert d.guidance == [[7]] and seen == ["Hi, help me"]  # the opening is started for it
    assert GUIDANCE_HEADER not in agent_system_prompt(retail)


def test_read_reply_forms() -> None:
    names = {"get_order_details"}
    msg, failed = read_reply(
        '{"name": "get_order_details", "arguments": {"order_id": "#W1"}}', names, "c"
    )
    assert msg["tool_calls"][0]["function"]["name"] == "get_order_details" and not failed
    msg, failed = read_reply('<tool_call>{"name": "launch_rocket", "arguments": {}}', names, "c")
    assert "tool_calls" not in msg and failed
    msg, failed = read_reply("Let me check that for you.", names, "c")
    assert msg == {"role": "assistant", "content": "Let me check that for you."} and not failed
    msg, _ = read_reply(
        'Checking.\n<tool_call>{"name": "get_order_details", "arguments": {"order_id": "#W1"}}',
        names,
        "c",
    )
    assert msg["content"] == "Checking." and reply_text(msg).startswith(
        "Checking. [calls get_order_details"
    )


def test_customer_sees_only_what_the_agent_writes(retail) -> None:
    task = retail.split("train")[0]
    messages = [
        {"role": "assistant", "content": GREETING},
        {"role": "user", "content": "hello"},
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "x", "arguments": "{}"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "name": "x", "content": "secret"},
        {"role": "assistant", "content": "Found it."},
    ]
    view = customer_messages(task, messages)
    assert [m["role"] for m in view] == ["system", "user"]
    assert task.reason[:30] in view[0]["content"] and "secret" not in json.dumps(view)
    transcript = view[1]["content"]
    assert f"AGENT: {GREETING}\nYOU (customer): hello\nAGENT: Found it." in transcript
    opening = customer_messages(task, messages[:1])[1]["content"]
    assert "first message" in opening
    text = conversation_text(messages)
    assert "CUSTOMER: hello" in text and "TOOL RESULT (x): secret" in text


def test_next_replies_runs_no_tool(retail) -> None:
    engine = RuleEngine("agent", lambda r: call("cancel_pending_order", order_id="#W1", reason="x"))
    prefix = [{"role": "assistant", "content": GREETING}, {"role": "user", "content": "cancel"}]
    [reply] = next_replies(engine, retail, [prefix])
    assert reply["tool_calls"][0]["function"]["name"] == "cancel_pending_order"
    assert engine.requests[0][1].tools  # the tool schemas are offered


def test_structured_tool_calls_from_an_endpoint_win() -> None:
    structured = [
        {
            "id": "x",
            "type": "function",
            "function": {"name": "get_order_details", "arguments": "{}"},
        }
    ]
    msg, failed = read_reply("", {"get_order_details"}, "call_3", structured)
    assert msg["tool_calls"][0]["id"] == "call_3" and not failed


def test_the_customer_is_told_its_goal_persona_and_how_to_end(retail) -> None:
    task = retail.split("train")[0]  # retail briefs put the persona under "How you behave"
    system, user = customer_messages(task, [{"role": "assistant", "content": GREETING}])
    assert task.reason.strip()[:40] in system["content"]
    assert f"How you behave: {task.instructions.strip()[:40]}" in system["content"]
    assert task.known_info.strip()[:30] in system["content"]
    assert CUSTOMER_STOP in system["content"] and "never the agent" in system["content"]
    assert CUSTOMER_STOP not in user["content"]  # the opening cannot end the chat
    later = customer_messages(task, [*_opened("hi"), {"role": "assistant", "content": "Sure."}])
    assert CUSTOMER_STOP in later[1]["content"]


def _opened(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": GREETING}, {"role": "user", "content": text}]


@pytest.mark.parametrize(
    ("raw", "prefix", "said"),
    [
        ("I want to return my shoes.", "Hi, ", "Hi, I want to return my shoes."),
        ("YOU (customer): my email is a@b.com", None, "my email is a@b.com"),
        ('"Yes, go ahead."\nAGENT: Done!', None, "Yes, go ahead."),
        ("Thanks, that is all. ###STOP###", None, CUSTOMER_STOP),
        ("### STOP ###", None, CUSTOMER_STOP),
        # speaking as the agent: those sentences go, the customer's stay
        (
            "How can I help you today? I need to cancel an order.",
            None,
            "I need to cancel an order.",
        ),
        ("I want a refund. Agent: Sure, let me check.", None, "I want a refund."),
        # nothing of the customer left: asked again
        ("how can I help you today?", "Hi, ", None),
        ("Thank you for contacting us! Is there anything else I can do?", None, None),
        ("###STOP###", "Hi, ", None),  # the opening cannot end the chat
        # repeating its instructions is not speaking as the customer
        (
            "The customer asked you something: answer it as the customer, from your brief.",
            None,
            None,
        ),
        ("Write your next message to the agent as the customer. Yes.", None, "Yes."),
    ],
)
def test_customer_message_keeps_only_the_customer(raw, prefix, said) -> None:
    assert customer_message(raw, prefix) == said


def test_a_customer_speaking_as_the_agent_is_asked_again_or_ends_the_dialogue(retail) -> None:
    """The first try answers as the agent; the sampled retry is the customer. A simulator that
    never stays in role ends its dialogue as ``customer_failed`` instead of putting the agent's
    words in the customer's mouth."""
    tries: list[float] = []

    def confused(request: ChatRequest) -> str:
        tries.append(request.temperature)
        if request.temperature == 0:
            return "how can I assist you today?"
        return (
            "I'd like to cancel my order."
            if "first message" in request.messages[-1]["content"]
            else CUSTOMER_STOP
        )

    agent = RuleEngine("agent", lambda r: "Sure, what is your email?")
    [d] = run_dialogues(agent, RuleEngine("customer", confused), retail, retail.split("test")[:1])
    assert d.messages[1] == {"role": "user", "content": "Hi, I'd like to cancel my order."}
    assert d.ended == "customer_stop" and tries[:2] == [0.0, 0.7]

    lost = RuleEngine("customer", lambda r: "How may I help you today?")
    settings = DialogueSettings(customer_retries=1)
    [d] = run_dialogues(agent, lost, retail, retail.split("test")[:1], settings=settings)
    assert d.ended == "customer_failed" and len(d.messages) == 1  # the greeting only
    assert len(lost.requests) == 2


def test_a_customer_does_not_hang_up_on_a_question(retail) -> None:
    """``###STOP###`` right after the agent asked something is asked again as an answer; a stop
    after a plain statement ends the dialogue at once."""

    def hasty(request: ChatRequest) -> str:
        ask = request.messages[-1]["content"]
        if "first message" in ask:
            return "I want to return a lamp."
        return "My email is a@b.com." if "asked you something" in ask else CUSTOMER_STOP

    def agent(request: ChatRequest) -> str:
        said = [m for m in request.messages if m["role"] == "user"]
        return "Could you give me your email?" if len(said) == 1 else "Your return is noted."

    [d] = run_dialogues(
        RuleEngine("agent", agent), RuleEngine("customer", hasty), retail, retail.split("test")[:1]
    )
    customer = [m["content"] for m in d.messages if m["role"] == "user"]
    assert customer == ["Hi, I want to return a lamp.", "My email is a@b.com."]
    assert d.ended == "customer_stop" and len(d.turns) == 2  # stopped after the statement

    stubborn = RuleEngine(
        "customer",
        lambda r: "Hi" if "first message" in r.messages[-1]["content"] else CUSTOMER_STOP,
    )
    [d] = run_dialogues(RuleEngine("agent", agent), stubborn, retail, retail.split("test")[:1])
    assert d.ended == "customer_stop" and len(d.turns) == 1  # every retry stopped: it stands
    assert len(stubborn.requests) == 1 + 3  # the opening, then a stop and two re-asks

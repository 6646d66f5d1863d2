"""A scripted world for strategy-teaching tests: every role answers by rule.

* The **customer** opens with :data:`OPENING`, answers ``yes`` to the agent's next message, and
  then writes ``###STOP###``.
* The **teacher** (as an agent) always asks the customer to identify themselves
  (:data:`GOOD_REPLY`). As a scenario writer it writes :data:`WRITTEN_SCENARIO`; as a strategy
  writer it writes :data:`STRATEGY` (or edits the first strategy it was shown when ``edit=True``);
  asked for generic strategies it writes numbered copies of :data:`GENERIC`.
* The **student** replies :data:`BAD_REPLY` unless a strategy in its prompt mentions
  "identify"; then it replies like the teacher. A ``stubborn`` student never learns; with an
  adapter loaded (the fine-tuned baseline) it replies like the teacher.
* The **judge** picks the reply that asks for identification (A when both or neither do).
"""

from __future__ import annotations

import re

from scripted_engine import ScriptedEngine

from agents.episodes.dialogue import CUSTOMER_STOP, GUIDANCE_HEADER
from agents.models.base import ChatRequest, ChatResult, Completion

OPENING = "Hi, I want to cancel my order #W0000000, I no longer need it."
GOOD_REPLY = "Before I can help, please give me your email or your name and zip code."
BAD_REPLY = "Sure, your order is cancelled!"
WRITTEN_SCENARIO = "Hello, I would like to return the shoes I bought last week."
STRATEGY = "When a customer asks for a change, ask them to identify themselves (email) first."
SITUATION = "When a customer asks for a change"
EDITED = "Before any order change, ask the customer to identify themselves by email."
GENERIC = "When a customer writes, thank them politely and answer clearly."


def prompt_kind(request: ChatRequest) -> str:
    system = str(request.messages[0]["content"])
    if system.startswith("You are a customer talking"):
        return "customer"
    if system.startswith("You are a customer service agent"):
        return "agent"
    if system.startswith("You compare two possible"):
        return "compare"
    if system.startswith("You teach a junior"):
        return "generic" if "conversations with customers" in system else "writer"
    if system.startswith("You write realistic customer messages"):
        return "scenario"
    return "other"


def _good(text: str) -> bool:
    return "identify" in text or "email" in text


class ServiceEngine(ScriptedEngine):
    """One scripted model; what it does depends on the prompt it gets and its role."""

    def __init__(self, role: str = "teacher", *, stubborn: bool = False, edit: bool = False):
        super().__init__(role)
        self.stubborn = stubborn
        self.edit = edit

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        results = []
        for request in requests:
            kind = prompt_kind(request)
            self.requests.append((kind, request))
            self.asked[kind] += request.n
            texts = [self._answer(kind, request) for _ in range(request.n)]
            results.append(
                ChatResult(
                    completions=[Completion(text=t, finish_reason="stop") for t in texts],
                    prompt_tokens=10,
                    completion_tokens=10,
                    model=self.spec,
                )
            )
        return results

    def _answer(self, kind: str, request: ChatRequest) -> str:
        system = str(request.messages[0]["content"])
        user = str(request.messages[-1]["content"])
        if kind == "customer":
            said = user.count("YOU (customer):")
            return [OPENING, "yes", CUSTOMER_STOP][min(said, 2)]
        if kind == "agent":
            if self.role in ("teacher", "transfer_student") or self.adapter:
                return GOOD_REPLY
            guided = GUIDANCE_HEADER in system and "identify" in system.split(GUIDANCE_HEADER)[1]
            return GOOD_REPLY if guided and not self.stubborn else BAD_REPLY
        if kind == "compare":
            a = user.split("Reply A:")[1].split("Reply B:")[0]
            b = user.split("Reply B:")[1]
            return "B" if _good(b) and not _good(a) else "A"
        if kind == "writer":
            shown = re.findall(r"^\[(\d+)\] ", user, re.M)
            if self.edit and shown:
                return f"EDIT {shown[0]}: {EDITED}"
            return f"Here is what I suggest.\nNEW: {STRATEGY}"
        if kind == "scenario":
            return WRITTEN_SCENARIO
        if kind == "generic":
            count = int(re.search(r"Write (\d+) short strategies", system).group(1))
            return "\n".join(f"NEW: {GENERIC[:-1]} ({k + 1})." for k in range(count))
        return ""

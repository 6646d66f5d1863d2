"""A scripted world for agent-loop and agent-distillation tests: agents answer by rule.

Tasks are ``"What is A + B?"`` (math) or ``"What is the capital of X?"`` (factual, over the
fictional countries of :data:`CAPITALS`, which :class:`FakeCorpus` holds). A well-behaved scripted
agent writes ``Thought: ...`` and one ``<tool_call>``: ``python_exec`` with ``print(A + B)`` (or
``retrieve``), then ``final_answer`` with what the observation showed.

Markers after ``#`` in a question steer the agent:

* ``#noparse``: no reply ever holds a usable tool call (a forced call is not JSON either).
* ``#parse1``: the first reply has no usable tool call; the agent recovers afterwards.
* ``#loop``: it runs Python forever and never calls ``final_answer`` (the step limit stops it).
* ``#wrong``: its final answer is off by one.
* ``#crash``: its first code raises ``ZeroDivisionError``; it then reruns correct code.
* ``#state``: step 1 sets ``x = A + B`` without printing, step 2 prints ``x``.
* ``#stop``: the first reply ends after its Thought (finish ``stop``), with no call; asked to
  continue after an opened ``<tool_call>`` it writes the call.
* ``#cut``: like ``#stop`` but the first reply is cut by ``max_tokens`` (finish ``length``).
* ``#hang``: its first code prints a line, then loops until the sandbox kills it.
* ``#sc``: with ``n > 1``, at the first step candidate ``j`` runs ``print(A + B + 1)`` when
  ``j % 4 == 0``, ``print(B + A)`` when ``j % 4 == 2`` (another text, the same output), invalid
  Python when ``j % 4 == 3``, else ``print(A + B)``.
* ``#alias``: its factual answer is a paraphrase the normalised match rejects; the scripted
  judge calls it correct.

In code mode (``CODE_SYSTEM_PROMPT``) the same agent writes one fenced Python block per step
instead: ``print(A + B)`` (or ``print(retrieve(...))``), then ``final_answer(...)`` with what the
observation showed; the markers above mean the same there (``#sc`` candidates call
``final_answer`` with the values above directly). Asked to write a question about an
encyclopedia article (the ``fact_writer`` prompt), it asks which word follows another in the
article; every second draft breaks a check (a long answer, then one not in the article), and
:data:`FACTS` records the questions it wrote with their answers, which a trained code agent
"looks up" with ``retrieve`` and then answers.

The same engine answers chain-of-thought requests (``COT_SYSTEM_PROMPT``: a first paragraph,
then ``\\boxed{answer}``) and judge requests (``{"correct": ...}``). A ``student`` with no
adapter loaded has learnt nothing: it never calls a tool.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from scripted_engine import ScriptedEngine

from agents.episodes.agent_loop import AGENT_SYSTEM_PROMPT
from agents.episodes.code_agent import CODE_SYSTEM_PROMPT
from agents.models.base import ChatRequest, ChatResult, Completion, Message
from agents.models.chat_format import TOOL_CALL_CLOSE, TOOL_CALL_OPEN
from agents.schemes.agent_distill.graph import COT_SYSTEM_PROMPT
from tools.retrieval import Document

#: The fictional countries the corpus knows.
CAPITALS = {
    "Freedonia": "Fredville",
    "Sylvania": "Marsh Harbor",
    "Atlantis": "Poseidonia",
    "Genovia": "Pyrus",
}

_SUM = re.compile(r"What is (\d+) \+ (\d+)\?")
_CAPITAL = re.compile(r"What is the capital of (\w+)\?")
_STDOUT = re.compile(r"^stdout:\n([^\n]*)\n*$")  # one printed line and nothing else
_DOC = re.compile(r"The capital of (\w+) is ([^.]+)\.")
FORCED = f"{TOOL_CALL_OPEN}\n"
_ARTICLE = re.compile(r'Encyclopedia article "(?P<title>[^"]+)":\n(?P<text>.*?)\n\nWrite one', re.S)
_FACT_Q = re.compile(r'Which word follows "[^"]+" in the article about (?P<title>.+)\?$')
#: Questions the scripted writer wrote → their answers (the trained code agent "reads" them).
FACTS: dict[str, str] = {}


def true_answer(question: str) -> str | None:
    """The reference answer of a scripted task."""
    if match := _SUM.search(question):
        return str(int(match.group(1)) + int(match.group(2)))
    if match := _CAPITAL.search(question):
        return CAPITALS[match.group(1)]
    return None


def alias_of(country: str) -> str:
    """The paraphrase ``#alias`` answers with (no word of the reference in it)."""
    return f"the seat of government of {country}"


def call_text(name: str, arguments: dict) -> str:
    return json.dumps({"name": name, "arguments": arguments})


class FakeCorpus:
    """A corpus of one article per fictional country; ``search`` records its queries."""

    def __init__(self) -> None:
        self.queries: list[str] = []

    def search(self, query: str, k: int = 3) -> list[Document]:
        self.queries.append(query)
        hits = [c for c in CAPITALS if c.lower() in query.lower()] or list(CAPITALS)
        return [
            Document(id=c, title=c, text=f"{c} is a small country. The capital of {c} is {v}.")
            for c, v in ((c, CAPITALS[c]) for c in hits[:k])
        ]


def request_kind(request: ChatRequest) -> str:
    """``cot``, ``judge`` or ``agent``."""
    first = request.messages[0]
    if first["role"] == "system" and first["content"] == COT_SYSTEM_PROMPT:
        return "cot"
    if first["role"] == "user" and "Reference answer:" in first["content"]:
        return "judge"
    if first["role"] == "system" and first["content"] == AGENT_SYSTEM_PROMPT:
        return "agent"
    if first["role"] == "system" and first["content"] == CODE_SYSTEM_PROMPT:
        return "code"
    if first["role"] == "user" and first["content"].startswith("Encyclopedia article"):
        return "fact"
    raise AssertionError(f"unexpected request: {first['content'][:60]!r}")


def task_of(messages: tuple[Message, ...]) -> tuple[str, list[Message]]:
    """The task (the last user turn that is not an error observation) and the turns after it."""
    for index in range(len(messages) - 1, -1, -1):
        message = messages[index]
        if message["role"] == "user" and not message["content"].startswith(
            ("Error:", "Observation:")
        ):
            return message["content"], list(messages[index + 1 :])
    raise AssertionError("no task in the conversation")


class ScriptedAgent(ScriptedEngine):
    """The scripted teacher or student; records every request that reaches it.

    Args:
        role: ``teacher`` or ``student`` (part of the spec).
        crash_on: Request kinds (``cot``, ``agent``, ``judge``) that raise ``RuntimeError`` the
            first time they are asked, as a process dying mid-stage.
    """

    def __init__(self, role: str = "teacher", *, crash_on: set[str] | None = None) -> None:
        super().__init__(role)
        self.crash_on = set(crash_on or ())
        self.batches: list[int] = []  # requests per generate call that reached us

    @property
    def trained(self) -> bool:
        return self.role != "student" or self.adapter is not None

    # ------------------------------------------------------------------ generation

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        self.batches.append(len(requests))
        results = []
        for request in requests:
            kind = request_kind(request)
            if kind in self.crash_on:
                self.crash_on.discard(kind)
                raise RuntimeError(f"scripted {self.role} crashed on {kind}")
            self.requests.append((kind, request))
            completions = [self._sample(kind, request, j) for j in range(request.n)]
            results.append(
                ChatResult(
                    completions=completions,
                    prompt_tokens=10,
                    completion_tokens=20 * request.n,
                    model=self.spec,
                )
            )
        return results

    def _sample(self, kind: str, request: ChatRequest, j: int) -> Completion:
        self.asked[kind] += 1
        if kind == "cot":
            return Completion(self._cot(request.messages[-1]["content"]), "stop")
        if kind == "judge":
            correct = "#alias" in request.messages[0]["content"]
            return Completion(json.dumps({"correct": correct}), "stop")
        if kind == "fact":
            draft = self._fact(request.messages[0]["content"])
            return Completion(draft.removeprefix(request.prefix or ""), "stop")
        if kind == "code":
            return Completion(_cut_at_stop(self._code(request, j), request.stop), "stop")
        text, finish = self._agent(request, j)
        return Completion(_cut_at_stop(text, request.stop), finish)

    def _fact(self, prompt: str) -> str:
        found = _ARTICLE.search(prompt)
        assert found, prompt[:80]
        title, words = found.group("title"), found.group("text").split()
        self.drafts = getattr(self, "drafts", 0) + 1
        at = min(3, len(words) - 2)
        first, answer = words[at].strip(".,;:"), words[at + 1].strip(".,;:")
        if self.drafts % 4 == 2:
            answer = " ".join(words[at + 1 : at + 12])  # too long
        elif self.drafts % 4 == 0:
            answer = "Zzyzx Quorble"  # not in the article
        question = f'Which word follows "{first}" in the article about {title}?'
        if self.drafts % 2:
            FACTS[question] = answer
        return f"Question: {question}\nAnswer: {answer}"

    def _code(self, request: ChatRequest, j: int) -> str:
        """A code agent's reply: a Thought and one Python block (or no block at all)."""
        question, after = task_of(request.messages)
        step = sum(m["role"] == "assistant" for m in after)
        if not self.trained or "#noparse" in question or ("#parse1" in question and step == 0):
            return "I think it is 42."
        seen = [m["content"].removeprefix("Observation:\n") for m in after if m["role"] == "user"]
        if (match := _FACT_Q.search(question)) is not None:
            if step == 0:
                return _block(f"print(retrieve({match.group('title')!r}))", "I look it up.")
            return _block(f"final_answer({FACTS.get(question, 'unknown')!r})", "It says so.")
        if (match := _CAPITAL.search(question)) is not None:
            country = match.group(1)
            found = [_DOC.search(text) for text in seen]
            found = [f for f in found if f and f.group(1) == country]
            if not found:
                return _block(f"print(retrieve('capital of {country}'))", f"I look up {country}.")
            answer = alias_of(country) if "#alias" in question else found[-1].group(2)
            return _block(f"final_answer({answer!r})", "The article names it.")
        a, b = (int(x) for x in _SUM.search(question).groups())  # type: ignore[union-attr]
        printed = _STDOUT.match(seen[-1]) if seen else None
        if "#sc" in question and request.n > 1 and step == 0:
            value = {0: a + b + 1, 3: "oops"}.get(j % 4, a + b)
            code = f"final_answer({value})" if value != "oops" else f"print({a} + )"
            return _block(code, "I answer.")
        if "#loop" in question or printed is None:
            code = f"print({a} + {b})"
            if "#crash" in question and step == 0:
                code = f"total = {a} + {b}\nprint(total / 0)"
            return _block(code, f"I compute {a} + {b} in Python.")
        value = int(printed.group(1).strip()) + ("#wrong" in question)
        return _block(f"final_answer({value})", f"Python printed {printed.group(1).strip()}.")

    def _cot(self, question: str) -> str:
        if (match := _SUM.search(question)) is not None:
            a, b = match.groups()
            return f"I add {a} and {b}.\n\nSo the answer is \\boxed{{{int(a) + int(b)}}}."
        if (match := _CAPITAL.search(question)) is not None:
            country = match.group(1)
            return f"I recall the capital of {country}.\n\nIt is \\boxed{{{CAPITALS[country]}}}."
        return "I do not know."

    def _agent(self, request: ChatRequest, j: int) -> tuple[str, str]:
        """The reply's text (continuation of ``request.prefix``) and its finish reason."""
        question, after = task_of(request.messages)
        prefix = request.prefix or ""
        forced = prefix.endswith(FORCED)
        step = sum(m["role"] == "assistant" for m in after)
        if not self.trained or "#noparse" in question or ("#parse1" in question and step == 0):
            return ("I cannot decide what to do." if forced else "I think it is 42."), "stop"
        if step == 0 and ("#stop" in question or "#cut" in question) and not forced:
            finish = "length" if "#cut" in question else "stop"
            return "Thought: I add the numbers with Python.", finish
        thought, call = self._policy(question, after, request.n, j)
        if forced:
            return call, "stop"
        reply = f"{thought}\n{TOOL_CALL_OPEN}{call}{TOOL_CALL_CLOSE}"
        if prefix:
            # Continue the forced first thought: the call comes on the next line.
            return f"\n{TOOL_CALL_OPEN}{call}{TOOL_CALL_CLOSE}", "stop"
        return reply, "stop"

    def _policy(self, question: str, after: list[Message], n: int, j: int) -> tuple[str, str]:
        """Thought and tool call (JSON text) of the next step."""
        tools = [m for m in after if m["role"] == "tool"]
        if (match := _CAPITAL.search(question)) is not None:
            country = match.group(1)
            found = [_DOC.search(m["content"]) for m in tools if m.get("name") == "retrieve"]
            found = [f for f in found if f and f.group(1) == country]
            if not found:
                return (
                    f"Thought: I look up {country} in the encyclopedia.",
                    call_text("retrieve", {"query": f"capital of {country}"}),
                )
            answer = alias_of(country) if "#alias" in question else found[-1].group(2)
            return "Thought: The article names it.", call_text("final_answer", {"answer": answer})
        a, b = (int(x) for x in _SUM.search(question).groups())  # type: ignore[union-attr]
        runs = [m for m in tools if m.get("name") == "python_exec"]
        printed = _STDOUT.match(runs[-1]["content"]) if runs else None
        if "#state" in question:
            if not runs:
                return "Thought: I store the sum in x.", call_text(
                    "python_exec", {"code": f"x = {a} + {b}"}
                )
            if printed is None:
                return "Thought: I print x.", call_text("python_exec", {"code": "print(x)"})
        elif "#loop" in question or printed is None:
            code = f"print({a} + {b})"
            if "#crash" in question and not runs:
                code = f"total = {a} + {b}\nprint(total / 0)"
            elif "#sc" in question and n > 1 and not runs:
                code = {
                    0: f"print({a} + {b} + 1)",
                    2: f"print({b} + {a})",
                    3: f"print({a} + )",
                }.get(j % 4, code)
            elif "#hang" in question and not runs:
                code = "print('started', flush=True)\nwhile True:\n    pass"
            return f"Thought: I compute {a} + {b} in Python.", call_text(
                "python_exec", {"code": code}
            )
        value = printed.group(1).strip()
        if "#wrong" in question:
            value = str(int(value) + 1)
        return f"Thought: Python printed {value}.", call_text("final_answer", {"answer": value})


def _block(code: str, thought: str) -> str:
    return f"Thought: {thought}\n```python\n{code}\n```"


def _cut_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """The text up to its first stop string, which is not returned (as engines do)."""
    cut = len(text)
    for s in stop:
        at = text.find(s)
        if at >= 0:
            cut = min(cut, at)
    return text[:cut]


def write_tasks(path: Path, questions: list[str]) -> str:
    """A JSONL task file of scripted questions, each with its domain and true answer."""
    rows = [
        {
            "question": q,
            "answer": true_answer(q),
            "domain": "factual" if _CAPITAL.search(q) else "math",
        }
        for q in questions
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)

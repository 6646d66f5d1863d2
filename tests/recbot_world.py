"""Scripted engines for RecBot's orchestration tests: a simulator that says its cues plainly, and
a RecBot model whose Parser reads those plain cues back and whose Planner calls the tools the
preferences ask for. Each can be told to misbehave (a malformed parse, no aggregate call, a
simulator that answers as the app)."""

from __future__ import annotations

import json
import re
from typing import Any

from scripted_engine import ScriptedEngine

from agents.models.base import ChatRequest, ChatResult, Completion, Engine

_NOTES = re.compile(r"Wishes: (.*)\.\nRequest:", re.S)


class PlainSimulator(Engine):
    """Says the cues it is given: "I want films from 1990 or later; would like: funny".

    ``as_app``: the first ``as_app`` requests are answered as the app would ("Here are ...").
    """

    spec = "scripted:simulator"

    def __init__(self, as_app: int = 0) -> None:
        self.as_app = as_app
        self.requests: list[ChatRequest] = []

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        results = []
        for request in requests:
            self.requests.append(request)
            if self.as_app > 0:
                self.as_app -= 1
                text = "Here are some films you might like: 1. Heat 2. Casino"
            else:
                notes = _NOTES.search(str(request.messages[-1]["content"]))
                assert notes, request.messages[-1]["content"]
                cues = [c.strip().removeprefix("you ") for c in notes.group(1).split(";")]
                text = "I " + "; ".join(cues) + "."
            results.append(
                ChatResult(
                    completions=[Completion(text=text, finish_reason="stop")], model=self.spec
                )
            )
        return results


_RULES: list[tuple[re.Pattern[str], Any]] = [
    (re.compile(r"films from (\d+) or later"), lambda m: ("year", ">=", int(m.group(1)))),
    (re.compile(r"films from before (\d+)"), lambda m: ("year", "<", int(m.group(1)))),
    (re.compile(r"films shorter than (\d+) minutes"), lambda m: ("runtime", "<", int(m.group(1)))),
    (
        re.compile(r"(?<!no )(genre|language|director) ([^;.]+)"),
        lambda m: (m.group(1), "==", m.group(2).strip()),
    ),
]


def _constraints(text: str) -> list[dict[str, Any]]:
    found = []
    for pattern, make in _RULES:
        for match in pattern.finditer(text):
            attribute, operator, value = make(match)
            found.append({"attribute": attribute, "operator": operator, "value": value})
    return found


class ScriptedRecBot(ScriptedEngine):
    """Parser: reads the plain command back into preferences (a change of mind drops the old
    year). Planner: filter, match each soft phrase, aggregate.

    ``bad_parses``: the first ``bad_parses`` parser replies are not JSON.
    ``skip_aggregate``: the planner never calls ``aggregate_feed``.
    ``crash_after``: the batch after this many raises ``RuntimeError`` once (a dying process).
    A ``student`` without an adapter has learnt nothing: it answers every request in prose.
    """

    def __init__(
        self,
        role: str = "recbot",
        bad_parses: int = 0,
        skip_aggregate: bool = False,
        crash_after: int | None = None,
    ) -> None:
        super().__init__(role)
        self.bad_parses = bad_parses
        self.skip_aggregate = skip_aggregate
        self.crash_after = crash_after  # raise once when this many batches have been served
        self.batches = 0
        self.seen: list[ChatRequest] = []

    def _parser(self, request: ChatRequest) -> str:
        if self.bad_parses > 0:
            self.bad_parses -= 1
            return "You want a crime film, I think."
        prompt = str(request.messages[1]["content"])
        before = json.loads(re.search(r"Preferences so far: (.*)\n", prompt).group(1))
        command = prompt.split("Command:", 1)[1]
        hard = list(before["positive"]["hard"])
        soft = list(before["positive"]["soft"])
        for part in command.split(";"):  # one cue a part
            if "changed your mind" not in part:
                hard += _constraints(part)
                continue
            old, new = part.split(", but ", 1)
            for gone in _constraints(old):
                hard = [
                    c
                    for c in hard
                    if (c["attribute"], c["operator"]) != (gone["attribute"], gone["operator"])
                    or c["value"] != gone["value"]
                ]
            hard += _constraints(new)
        soft += [m.strip() for m in re.findall(r"would like: ([^;]+?)(?:;|\.\s*$)", command)]
        prefs = {"positive": {"hard": hard, "soft": soft}, "negative": {"hard": [], "soft": []}}
        # written the way the reply prefix is (spaced or compact), as a model continues it
        compact = request.prefix is not None and '": ' not in request.prefix
        return json.dumps(prefs, separators=(",", ":") if compact else None)

    def _planner(self, request: ChatRequest) -> str:
        prompt = str(request.messages[1]["content"])
        filters = json.loads(re.search(r"Filter by: (.*)\n", prompt).group(1))
        match = json.loads(re.search(r"Match: (.*)\n", prompt).group(1))
        calls = [{"name": "filter_items", "arguments": {"constraints": filters}}]
        calls += [{"name": "match_items", "arguments": {"preference": s}} for s in match]
        if not self.skip_aggregate:
            k = int(
                re.search(r"aggregate_feed with k=(\d+)", str(request.messages[0]["content"]))[1]
            )
            calls.append({"name": "aggregate_feed", "arguments": {"k": k}})
        return "\n".join(json.dumps(c) for c in calls)

    def _generate(self, requests: list[ChatRequest], *, progress: bool) -> list[ChatResult]:
        if self.crash_after is not None and self.batches == self.crash_after:
            self.crash_after = None
            raise RuntimeError(f"scripted {self.role} crashed")
        self.batches += 1
        results = []
        for request in requests:
            self.seen.append(request)
            system = str(request.messages[0]["content"])
            if self.role == "student" and self.adapter is None:
                text = "I would suggest a nice film."
            elif "Parser" in system:
                text = self._parser(request)
            else:
                text = self._planner(request)
            if request.prefix:  # like a real engine: the reply continues the prefix
                text = text.removeprefix(request.prefix)
            results.append(
                ChatResult(
                    completions=[Completion(text=text, finish_reason="stop")], model=self.spec
                )
            )
        return results

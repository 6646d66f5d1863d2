"""Training data out of the store, in TRL's dataset formats.

* SFT: conversational rows ``{"messages": [...], "tools": [...]?, "weight": float?}``; assistant
  tool calls stay in OpenAI format (``function.arguments`` a JSON string) and tool results stay
  ``tool`` messages.
* Preferences: conversational rows ``{"prompt": [...], "chosen": [...], "rejected": [...]}``.

Messages of one conversation have different keys (``tool_calls`` on some, ``tool_call_id`` on
others) and tool schemas are free-form JSON, which Arrow would otherwise force into one struct,
padding every message with ``None`` for the keys it lacks. :func:`to_hf_dataset` therefore stores
each message and each tool schema as a JSON value (``datasets.Json``), so rows come back exactly
as they went in.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Json, List, Value

from agents.models.base import Message
from agents.store import Store

logger = logging.getLogger(__name__)

Record = dict[str, Any]

#: Columns holding a list of chat messages.
MESSAGE_COLUMNS = ("messages", "prompt", "chosen", "rejected", "completion")


def _tool_call(call: dict[str, Any]) -> dict[str, Any]:
    call = dict(call)
    function = dict(call.get("function") or {})
    arguments = function.get("arguments")
    if arguments is not None and not isinstance(arguments, str):
        function["arguments"] = json.dumps(arguments, ensure_ascii=False)
    call["function"] = function
    return call


def normalize_messages(messages: Iterable[Message]) -> list[Message]:
    """Copies of ``messages`` in strict OpenAI format: tool call arguments as JSON strings."""
    normalized = []
    for message in messages:
        message = dict(message)
        if message.get("tool_calls"):
            message["tool_calls"] = [_tool_call(call) for call in message["tool_calls"]]
        normalized.append(message)
    return normalized


def _tools(tools: Any) -> list[dict[str, Any]] | None:
    if isinstance(tools, str):
        tools = json.loads(tools)
    return [dict(tool) for tool in tools] if tools else None


def sft_records(
    store: Store,
    run_id: str,
    role: str | None = None,
    round: int | None = None,
    verdict: str | None = "correct",
) -> list[Record]:
    """Conversational SFT rows from a run's trajectories.

    Args:
        store: The store to read.
        run_id: The run whose trajectories to export.
        role: Only trajectories of this role (e.g. ``"teacher"``); None for all roles.
        round: Only trajectories of this round; None for all rounds.
        verdict: Only trajectories with this verdict; None for all, judged or not.

    Returns:
        One ``{"messages": [...]}`` row per trajectory, plus ``"tools"`` when the trajectory
        offered tools and ``"weight"`` when its ``meta`` has one. Trajectories with no assistant
        turn are skipped: they hold nothing to learn.
    """
    records: list[Record] = []
    for trajectory in store.trajectories(run_id, role=role, round=round, verdict=verdict):
        messages = normalize_messages(trajectory.messages)
        if not any(m.get("role") == "assistant" for m in messages):
            logger.debug("trajectory %s has no assistant turn; skipped", trajectory.id)
            continue
        record: Record = {"messages": messages}
        tools = _tools(trajectory.tools)
        if tools:
            record["tools"] = tools
        weight = (trajectory.meta or {}).get("weight")
        if weight is not None:
            record["weight"] = float(weight)
        records.append(record)
    logger.info("exported %d SFT rows from run %s", len(records), run_id)
    return records


def preference_records(store: Store, run_id: str, round: int | None = None) -> list[Record]:
    """Conversational preference rows ``{"prompt", "chosen", "rejected"}`` for DPO.

    ``prompt`` is the shared conversation so far; ``chosen`` and ``rejected`` are the competing
    continuations (assistant turns, possibly with tool calls and tool results). A pair whose
    ``meta`` has ``"tools"`` carries them as a ``"tools"`` column.
    """
    records: list[Record] = []
    for pair in store.pairs(run_id, round=round):
        record: Record = {
            "prompt": normalize_messages(pair.prompt),
            "chosen": normalize_messages(pair.chosen),
            "rejected": normalize_messages(pair.rejected),
        }
        tools = _tools((pair.meta or {}).get("tools"))
        if tools:
            record["tools"] = tools
        records.append(record)
    logger.info("exported %d preference rows from run %s", len(records), run_id)
    return records


def to_hf_dataset(records: Sequence[Record]) -> Dataset:
    """A ``datasets.Dataset`` of ``records`` whose rows read back exactly as given.

    Columns are the union of all records' keys (a record without one gets ``None``, and a
    missing ``weight`` gets 1.0). Message columns and ``tools`` hold JSON values, so
    heterogeneous messages and tool schemas keep their own keys; ``weight`` is float; any other
    column's type is inferred.
    """
    if not records:
        logger.warning("building a dataset from no records")
        return Dataset.from_dict({})
    columns = list(dict.fromkeys(key for record in records for key in record))
    data: dict[str, list[Any]] = {c: [record.get(c) for record in records] for c in columns}
    features: dict[str, Any] = {}
    for column in columns:
        if column in MESSAGE_COLUMNS:
            features[column] = List(Json())
        elif column == "tools":
            # Tool schemas given as a JSON string become a list like the others.
            data[column] = [json.loads(t) if isinstance(t, str) else t for t in data[column]]
            features[column] = List(Json())
        elif column == "weight":
            data[column] = [1.0 if w is None else float(w) for w in data[column]]
            features[column] = Value("float64")
        else:
            inferred = Dataset.from_dict({column: data[column]}, on_mixed_types="use_json")
            features[column] = inferred.features[column]
    return Dataset.from_dict(data, features=Features(features))


def write_jsonl(records: Iterable[Record], path: str | Path) -> int:
    """Write one JSON object per line (parent directories created); returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    logger.info("wrote %d rows to %s", count, path)
    return count


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSONL file, read lazily.

    Raises:
        ValueError: A line is not JSON; the message names ``file:line``.
    """
    path = Path(path)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not valid JSON: {error.msg}.") from error


def read_jsonl(path: str | Path) -> list[Record]:
    """The records of a JSONL file (blank lines ignored)."""
    return [record for _, record in iter_jsonl(path)]

"""Training data in TRL's dataset formats: the one place SFT, weighted-SFT and preference rows are
built, whether from the store (a run's trajectories and pairs) or from conversations a scheme
stage assembles.

* SFT: conversational rows ``{"messages": [...], "tools": [...]?, "weight": float?,
  "context_messages": int?}``; assistant tool calls stay in OpenAI format (``function.arguments``
  a JSON string) and tool results stay ``tool`` messages. ``weight`` (finite, >= 0) scales the
  example's loss; the first ``context_messages`` messages (e.g. worked examples in the prompt)
  carry no loss.
* Preferences: conversational rows ``{"prompt": [...], "chosen": [...], "rejected": [...],
  "tools": [...]?}``.

Every builder checks its input and normalises the messages, so a bad row fails here, naming what
is wrong, rather than deep inside tokenisation or training.

Messages of one conversation have different keys (``tool_calls`` on some, ``tool_call_id`` on
others) and tool schemas are free-form JSON, which Arrow would otherwise force into one struct,
padding every message with ``None`` for the keys it lacks. :func:`to_hf_dataset` therefore stores
each message and each tool schema as a JSON value (``datasets.Json``), so rows come back exactly
as they went in.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from datasets import Dataset, Features, Json, List, Value

from agents.models.base import Message
from agents.store import PreferencePair, Store, Trajectory

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
    """Tool schemas as a list of dicts (a JSON string is parsed first); None when there are none."""
    if isinstance(tools, str):
        tools = json.loads(tools)
    if not tools:
        return None
    if not isinstance(tools, Sequence) or not all(isinstance(t, Mapping) for t in tools):
        raise ValueError("tools must be a list of tool schemas (JSON objects)")
    return [dict(tool) for tool in tools]


def _conversation(messages: Any, what: str) -> list[Message]:
    """``messages`` checked to be a non-empty list of chat messages, then normalised."""
    if isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Sequence):
        raise ValueError(f"{what} must be a list of chat messages, got {type(messages).__name__}")
    if not messages:
        raise ValueError(f"{what} holds no message")
    for k, message in enumerate(messages):
        if not isinstance(message, Mapping) or not message.get("role"):
            raise ValueError(f"{what}[{k}] is not a chat message (a mapping with a 'role')")
    return normalize_messages(messages)


def check_weight(weight: Any) -> float:
    """An SFT example's loss weight as a float, checked to be finite and >= 0.

    A negative weight would push the model away from the example and a NaN or infinite one would
    poison every step it is in, so both are refused rather than trained on.

    Raises:
        ValueError: ``weight`` is not a number, or is negative, NaN or infinite.
    """
    # bool is an int subclass; a flag passed by mistake must not read as weight 1.0. Real covers
    # numpy scalars; a string (say, from a hand-written JSONL) is refused rather than parsed.
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
        raise ValueError(f"weight {weight!r} is not a number")
    value = float(weight)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"weight is {value}; weights must be finite and >= 0")
    return value


def _context(context_messages: Any) -> int:
    """``context_messages`` checked to be None (no context) or an integer >= 0."""
    if context_messages is None:
        return 0
    if isinstance(context_messages, bool) or not isinstance(context_messages, int):
        raise ValueError(f"context_messages must be an integer >= 0, got {context_messages!r}")
    if context_messages < 0:
        raise ValueError(f"context_messages must be an integer >= 0, got {context_messages}")
    return context_messages


def _has_reply(messages: Any, context: int) -> bool:
    """Whether an assistant turn follows the first ``context`` messages (something to learn)."""
    tail = list(messages or [])[context:]
    return any(isinstance(m, Mapping) and m.get("role") == "assistant" for m in tail)


def sft_record(
    messages: Sequence[Message],
    tools: Any = None,
    weight: float | None = None,
    context_messages: int | None = None,
) -> Record:
    """One checked SFT row in TRL's conversational format, as :func:`~agents.training.sft.train_sft`
    takes it.

    Args:
        messages: The conversation (OpenAI format); copies are normalised, so tool call arguments
            given as objects become JSON strings.
        tools: OpenAI tool schemas the conversation was offered: a list, its JSON string, or None.
        weight: The example's loss weight for weighted SFT; None for plain SFT.
        context_messages: The first this many messages are prompt only, assistant turns among
            them (worked examples) included: they carry no loss. None or 0: none are.

    Returns:
        ``{"messages": [...]}``, plus ``"tools"`` when there are any, ``"weight"`` when given and
        ``"context_messages"`` when positive.

    Raises:
        ValueError: ``messages`` is not a non-empty list of chat messages, no assistant turn
            follows the context (nothing to learn), ``context_messages`` is not a non-negative
            integer, the weight is not finite and >= 0, or ``tools`` is not a list of schemas.
    """
    normalized = _conversation(messages, "messages")
    context = _context(context_messages)
    if not _has_reply(normalized, context):
        where = f" after the first {context} messages" if context else ""
        raise ValueError(f"the conversation has no assistant turn{where} to learn from")
    record: Record = {"messages": normalized}
    schemas = _tools(tools)
    if schemas:
        record["tools"] = schemas
    if weight is not None:
        record["weight"] = check_weight(weight)
    if context:
        record["context_messages"] = context
    return record


def sft_records_from(
    trajectories: Iterable[Trajectory], context_messages: int | None = None
) -> list[Record]:
    """SFT rows of stored trajectories: each one's messages, the tools it was offered and, when
    its ``meta`` has one, its ``"weight"``.

    Args:
        trajectories: The trajectories to learn from, already selected by the caller.
        context_messages: Leading messages of every trajectory that are prompt only (see
            :func:`sft_record`).

    Returns:
        One row per trajectory, in order. A trajectory with no assistant turn past the context is
        skipped (logged): it holds nothing to learn.

    Raises:
        ValueError: A trajectory's messages, tools or weight fail :func:`sft_record`'s checks; the
            message names the trajectory.
    """
    context = _context(context_messages)
    records: list[Record] = []
    for trajectory in trajectories:
        if not _has_reply(trajectory.messages, context):
            logger.debug("trajectory %s has no assistant turn to learn; skipped", trajectory.id)
            continue
        try:
            record = sft_record(
                trajectory.messages,
                tools=trajectory.tools,
                weight=(trajectory.meta or {}).get("weight"),
                context_messages=context_messages,
            )
        except ValueError as error:
            raise ValueError(f"trajectory {trajectory.id}: {error}") from None
        records.append(record)
    return records


def weighted_records(
    conversations: Sequence[Sequence[Message]],
    weights: Sequence[float],
    tools: Sequence[Any] | None = None,
) -> list[Record]:
    """Rows for weighted SFT: each conversation with the weight of its loss.

    The Socratic Generator's loss is ``-E[U * log p(q' | q, y_fail)]``: the conversation is the
    refinement prompt and the Teacher's refined problem, the weight its utility ``U``.

    Args:
        conversations: One message list per example.
        weights: One finite, non-negative weight per example.
        tools: Optional tool schemas per example (None entries for none).

    Returns:
        Records ``{"messages": [...], "weight": w}`` (plus ``"tools"`` when given), see
        :func:`sft_record`.

    Raises:
        ValueError: The lengths differ, or an example fails :func:`sft_record`'s checks; the
            message names the example.
    """
    if len(conversations) != len(weights):
        raise ValueError(f"{len(conversations)} conversations but {len(weights)} weights")
    if tools is not None and len(tools) != len(conversations):
        raise ValueError(f"{len(conversations)} conversations but {len(tools)} tool lists")
    records: list[Record] = []
    for i, (messages, weight) in enumerate(zip(conversations, weights, strict=True)):
        try:
            records.append(
                sft_record(messages, tools=None if tools is None else tools[i], weight=weight)
            )
        except ValueError as error:
            raise ValueError(f"example {i}: {error}") from None
    return records


def _completion(value: Any, what: str) -> list[Message]:
    """A preference completion as messages (a string is one assistant reply), checked."""
    if isinstance(value, str):
        value = [{"role": "assistant", "content": value}]
    messages = _conversation(value, what)
    if not any(m["role"] == "assistant" for m in messages):
        raise ValueError(f"{what} has no assistant turn")
    return messages


def preference_record(
    prompt: Sequence[Message],
    chosen: Sequence[Message] | str,
    rejected: Sequence[Message] | str,
    tools: Any = None,
) -> Record:
    """One checked preference row in TRL's conversational format, as
    :func:`~agents.training.dpo.train_dpo` takes it.

    Args:
        prompt: The shared conversation so far.
        chosen: The preferred continuation: assistant turns (possibly with tool calls and tool
            results), or a string for a single assistant reply.
        rejected: The dispreferred continuation, in the same forms.
        tools: OpenAI tool schemas offered in the conversation: a list, its JSON string, or None.

    Returns:
        ``{"prompt", "chosen", "rejected"}`` as normalised message lists, plus ``"tools"`` when
        there are any.

    Raises:
        ValueError: A part is not a non-empty list of chat messages, a completion has no
            assistant turn, or ``tools`` is not a list of schemas.
    """
    record: Record = {
        "prompt": _conversation(prompt, "prompt"),
        "chosen": _completion(chosen, "chosen"),
        "rejected": _completion(rejected, "rejected"),
    }
    schemas = _tools(tools)
    if schemas:
        record["tools"] = schemas
    return record


def preference_records_from(pairs: Iterable[PreferencePair]) -> list[Record]:
    """Preference rows of stored pairs; a pair whose ``meta`` has ``"tools"`` carries them.

    Raises:
        ValueError: A pair fails :func:`preference_record`'s checks; the message names the pair.
    """
    records: list[Record] = []
    for pair in pairs:
        try:
            record = preference_record(
                pair.prompt, pair.chosen, pair.rejected, tools=(pair.meta or {}).get("tools")
            )
        except ValueError as error:
            raise ValueError(f"preference pair {pair.id}: {error}") from None
        records.append(record)
    return records


def _row_field(row: Mapping[str, Any], key: str, number: int) -> Any:
    """``row[key]``, or a ValueError naming row ``number`` when the row or the key is missing."""
    if not isinstance(row, Mapping):
        raise ValueError(f"row {number} is not a JSON object")
    if row.get(key) is None:
        raise ValueError(f"row {number} lacks {key!r}")
    return row[key]


def sft_records_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Checked SFT records from rows already in the SFT format (e.g. a JSONL file's).

    Each row's ``messages``, ``tools``, ``weight`` and ``context_messages`` go through
    :func:`sft_record`; other keys are left out.

    Raises:
        ValueError: A row lacks ``messages`` or fails :func:`sft_record`'s checks; the message
            names the row (counted from 1).
    """
    records: list[Record] = []
    for number, row in enumerate(rows, start=1):
        messages = _row_field(row, "messages", number)
        try:
            record = sft_record(
                messages,
                tools=row.get("tools"),
                weight=row.get("weight"),
                context_messages=row.get("context_messages"),
            )
        except ValueError as error:
            raise ValueError(f"row {number}: {error}") from None
        records.append(record)
    return records


def preference_records_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[Record]:
    """Checked preference records from rows already in the preference format (e.g. a JSONL
    file's); each row's ``prompt``, ``chosen``, ``rejected`` and ``tools`` go through
    :func:`preference_record`, other keys are left out.

    Raises:
        ValueError: A row lacks a part or fails :func:`preference_record`'s checks; the message
            names the row (counted from 1).
    """
    records: list[Record] = []
    for number, row in enumerate(rows, start=1):
        parts = [_row_field(row, key, number) for key in ("prompt", "chosen", "rejected")]
        try:
            record = preference_record(*parts, tools=row.get("tools"))
        except ValueError as error:
            raise ValueError(f"row {number}: {error}") from None
        records.append(record)
    return records


def sft_records(
    store: Store,
    run_id: str,
    role: str | None = None,
    round: int | None = None,
    verdict: str | None = "correct",
    stage: str | None = None,
) -> list[Record]:
    """Conversational SFT rows from a run's trajectories (see :func:`sft_records_from`).

    Args:
        store: The store to read.
        run_id: The run whose trajectories to export.
        role: Only trajectories of this role (e.g. ``"teacher"``); None for all roles.
        round: Only trajectories of this round; None for all rounds.
        verdict: Only trajectories with this verdict; None for all, judged or not.
        stage: Only trajectories written by this stage (e.g. agent distillation's ``"agent"``);
            None for all stages.

    Returns:
        One ``{"messages": [...]}`` row per trajectory, plus ``"tools"`` when the trajectory
        offered tools and ``"weight"`` when its ``meta`` has one. Trajectories with no assistant
        turn are skipped: they hold nothing to learn.
    """
    trajectories = store.trajectories(run_id, role=role, round=round, verdict=verdict, stage=stage)
    records = sft_records_from(trajectories)
    logger.info("exported %d SFT rows from run %s", len(records), run_id)
    return records


def preference_records(store: Store, run_id: str, round: int | None = None) -> list[Record]:
    """Conversational preference rows ``{"prompt", "chosen", "rejected"}`` of a run, for DPO.

    ``prompt`` is the shared conversation so far; ``chosen`` and ``rejected`` are the competing
    continuations (assistant turns, possibly with tool calls and tool results). A pair whose
    ``meta`` has ``"tools"`` carries them as a ``"tools"`` column.
    """
    records = preference_records_from(store.pairs(run_id, round=round))
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

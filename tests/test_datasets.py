"""Training records: TRL's SFT and preference formats, their checks, HF datasets and JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.datasets import (
    check_weight,
    normalize_messages,
    preference_record,
    preference_records,
    preference_records_from,
    preference_records_from_rows,
    read_jsonl,
    sft_record,
    sft_records,
    sft_records_from,
    sft_records_from_rows,
    to_hf_dataset,
    weighted_records,
    write_jsonl,
)
from agents.store import PreferencePair, Store, Trajectory, Workspace

TOOL_CALL = {
    "id": "call_0",
    "type": "function",
    "function": {"name": "python_exec", "arguments": '{"code": "print(6 * 7)"}'},
}
OTHER_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "retrieve", "arguments": '{"query": "lights", "k": 3}'},
}
TOOL_CONVERSATION = [
    {"role": "user", "content": "What is 6 * 7?"},
    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
    {"role": "tool", "tool_call_id": "call_0", "name": "python_exec", "content": "42\n"},
    {"role": "assistant", "content": "42"},
]
PLAIN_CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "4"},
]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "python_exec",
            "parameters": {"type": "object", "properties": {"code": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "retrieve",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string"}, "k": {"type": "integer"}},
            },
        },
    },
]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(Workspace(tmp_path / "ws"))


def _trajectory(run_id: str, messages: list[dict], **fields: object) -> Trajectory:
    return Trajectory(
        run_id=run_id, role=str(fields.pop("role", "teacher")), messages=messages, **fields
    )


def test_sft_export_keeps_only_matching_verdicts_and_carries_tool_calls(store: Store) -> None:
    run = store.create_run("agent_distill", {})
    store.add_trajectories(
        [
            _trajectory(run.id, TOOL_CONVERSATION, tools=TOOLS, verdict="correct"),
            _trajectory(run.id, PLAIN_CONVERSATION, verdict="incorrect"),
            _trajectory(run.id, PLAIN_CONVERSATION, verdict=None),
            _trajectory(run.id, PLAIN_CONVERSATION, verdict="correct", meta={"weight": 0.25}),
            _trajectory(run.id, PLAIN_CONVERSATION, role="student", verdict="correct"),
            _trajectory(run.id, PLAIN_CONVERSATION, round=1, verdict="correct"),
        ]
    )
    records = sft_records(store, run.id, role="teacher", round=0)
    assert records == [
        {"messages": TOOL_CONVERSATION, "tools": TOOLS},
        {"messages": PLAIN_CONVERSATION, "weight": 0.25},
    ]
    assert len(sft_records(store, run.id, verdict="incorrect")) == 1
    assert len(sft_records(store, run.id, verdict=None)) == 6


def test_sft_export_of_one_stage(store: Store) -> None:
    run = store.create_run("agent_distill", {})
    store.add_trajectories(
        [
            _trajectory(run.id, TOOL_CONVERSATION, tools=TOOLS, verdict="correct", stage="agent"),
            _trajectory(run.id, PLAIN_CONVERSATION, verdict="correct", stage="cot"),
        ]
    )
    assert sft_records(store, run.id, stage="cot") == [{"messages": PLAIN_CONVERSATION}]
    assert len(sft_records(store, run.id)) == 2


def test_sft_export_skips_trajectories_without_an_assistant_turn(store: Store) -> None:
    run = store.create_run("socratic", {})
    store.add_trajectories([_trajectory(run.id, PLAIN_CONVERSATION[:2], verdict="correct")])
    assert sft_records(store, run.id) == []


def test_tool_call_arguments_are_exported_as_json_strings() -> None:
    messages = [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"x": 1}}}],
        }
    ]
    normalized = normalize_messages(messages)
    arguments = normalized[0]["tool_calls"][0]["function"]["arguments"]
    assert isinstance(arguments, str) and json.loads(arguments) == {"x": 1}
    assert messages[0]["tool_calls"][0]["function"]["arguments"] == {"x": 1}  # input untouched


def test_preference_export_format(store: Store) -> None:
    run = store.create_run("socratic", {})
    prompt = TOOL_CONVERSATION[:1]
    store.add_pairs(
        [
            PreferencePair(
                run_id=run.id,
                prompt=prompt,
                chosen=TOOL_CONVERSATION[1:],
                rejected=[{"role": "assistant", "content": "41"}],
                meta={"tools": TOOLS},
            ),
            PreferencePair(
                run_id=run.id,
                round=1,
                prompt=prompt,
                chosen=[{"role": "assistant", "content": "42"}],
                rejected=[{"role": "assistant", "content": "I don't know"}],
            ),
        ]
    )
    first, second = preference_records(store, run.id)
    assert first == {
        "prompt": prompt,
        "chosen": TOOL_CONVERSATION[1:],
        "rejected": [{"role": "assistant", "content": "41"}],
        "tools": TOOLS,
    }
    assert set(second) == {"prompt", "chosen", "rejected"}
    assert preference_records(store, run.id, round=1) == [second]


def test_hf_dataset_round_trip_keeps_heterogeneous_tool_calls_exact() -> None:
    records = [
        {"messages": TOOL_CONVERSATION, "tools": TOOLS, "weight": 0.5},
        {
            "messages": [
                {"role": "user", "content": "Lights?"},
                {"role": "assistant", "content": None, "tool_calls": [OTHER_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": "[]"},
                {"role": "assistant", "content": "None found."},
            ],
            "tools": TOOLS[1:],
            "weight": 2.0,
        },
    ]
    dataset = to_hf_dataset(records)
    assert len(dataset) == 2
    assert dataset.to_list() == records  # no None-padded keys from a merged Arrow struct
    assert dataset[1]["messages"][1]["tool_calls"][0]["function"]["arguments"] == (
        '{"query": "lights", "k": 3}'
    )


def test_hf_dataset_fills_missing_columns() -> None:
    dataset = to_hf_dataset(
        [
            {"messages": PLAIN_CONVERSATION},
            {"messages": TOOL_CONVERSATION, "tools": TOOLS, "weight": 3},
        ]
    )
    assert dataset.column_names == ["messages", "tools", "weight"]
    assert dataset[0]["tools"] is None and dataset[0]["weight"] == 1.0
    assert dataset[0]["messages"] == PLAIN_CONVERSATION


def test_preference_records_become_a_dataset(store: Store) -> None:
    run = store.create_run("socratic", {})
    store.add_pairs(
        [
            PreferencePair(
                run_id=run.id,
                prompt=TOOL_CONVERSATION[:1],
                chosen=TOOL_CONVERSATION[1:],
                rejected=[{"role": "assistant", "content": "41"}],
            )
        ]
    )
    records = preference_records(store, run.id)
    assert to_hf_dataset(records).to_list() == records


def test_jsonl_round_trip_then_hf_dataset(store: Store, tmp_path: Path) -> None:
    run = store.create_run("agent_distill", {})
    store.add_trajectories(
        [
            _trajectory(run.id, TOOL_CONVERSATION, tools=TOOLS, verdict="correct"),
            _trajectory(run.id, PLAIN_CONVERSATION, verdict="correct"),
        ]
    )
    records = sft_records(store, run.id)
    path = tmp_path / "exports" / "sft.jsonl"
    assert write_jsonl(records, path) == 2
    loaded = read_jsonl(path)
    assert loaded == records
    dataset = to_hf_dataset(loaded)
    assert dataset[0] == {"messages": TOOL_CONVERSATION, "tools": TOOLS}
    assert dataset[1] == {"messages": PLAIN_CONVERSATION, "tools": None}


def test_read_jsonl_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('{"messages": []}\n\n{oops\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:3"):
        read_jsonl(path)


# --- record builders ------------------------------------------------------------------------------

#: An assistant turn whose tool call arguments are an object, as a model or a hand-written row
#: may give them; TRL and the chat templates want them as a JSON string.
DICT_ARGS_CONVERSATION = [
    {"role": "user", "content": "What is 6 * 7?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_0",
                "type": "function",
                "function": {"name": "python_exec", "arguments": {"code": "print(6 * 7)"}},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_0", "name": "python_exec", "content": "42\n"},
    {"role": "assistant", "content": "42"},
]


def test_sft_record_normalises_tool_call_arguments_and_copies() -> None:
    record = sft_record(DICT_ARGS_CONVERSATION, tools=json.dumps(TOOLS), weight=2)
    assert record == {"messages": TOOL_CONVERSATION, "tools": TOOLS, "weight": 2.0}
    assert isinstance(record["weight"], float)
    assert DICT_ARGS_CONVERSATION[1]["tool_calls"][0]["function"]["arguments"] == {
        "code": "print(6 * 7)"
    }  # the caller's messages are untouched
    assert sft_record(PLAIN_CONVERSATION, tools=[]) == {"messages": PLAIN_CONVERSATION}


def test_sft_record_keeps_context_messages_and_needs_a_reply_after_them() -> None:
    record = sft_record(TOOL_CONVERSATION, context_messages=3)
    assert record == {"messages": TOOL_CONVERSATION, "context_messages": 3}
    assert "context_messages" not in sft_record(TOOL_CONVERSATION, context_messages=0)
    with pytest.raises(ValueError, match="no assistant turn after the first 4 messages"):
        sft_record(TOOL_CONVERSATION, context_messages=4)
    with pytest.raises(ValueError, match="no assistant turn"):
        sft_record(PLAIN_CONVERSATION[:2])
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="context_messages must be an integer"):
            sft_record(TOOL_CONVERSATION, context_messages=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "messages",
    [[], "4", {"role": "assistant", "content": "4"}, [{"content": "4"}], ["4"], None],
)
def test_sft_record_rejects_what_is_not_a_conversation(messages: object) -> None:
    with pytest.raises(ValueError, match="messages"):
        sft_record(messages)  # type: ignore[arg-type]


@pytest.mark.parametrize("weight", [-0.5, float("nan"), float("inf"), True, "0.5", None])
def test_bad_weights_are_rejected(weight: object) -> None:
    with pytest.raises(ValueError, match="weight"):
        check_weight(weight)
    if weight is not None:  # None means "no weight" to sft_record
        with pytest.raises(ValueError, match="weight"):
            sft_record(PLAIN_CONVERSATION, weight=weight)  # type: ignore[arg-type]


def test_good_weights_become_floats() -> None:
    import numpy as np

    assert [check_weight(w) for w in (0, 0.0, 3, np.float32(0.25))] == [0.0, 0.0, 3.0, 0.25]


def test_weighted_records_name_the_bad_example() -> None:
    conversations = [PLAIN_CONVERSATION, TOOL_CONVERSATION]
    records = weighted_records(conversations, [0.5, 0.0], tools=[None, TOOLS])
    assert records == [
        {"messages": PLAIN_CONVERSATION, "weight": 0.5},
        {"messages": TOOL_CONVERSATION, "tools": TOOLS, "weight": 0.0},
    ]
    with pytest.raises(ValueError, match=r"example 1: weight is -1\.0; weights must be finite"):
        weighted_records(conversations, [1.0, -1.0])
    with pytest.raises(ValueError, match="2 conversations but 1 weights"):
        weighted_records(conversations, [1.0])
    with pytest.raises(ValueError, match="2 conversations but 1 tool lists"):
        weighted_records(conversations, [1.0, 1.0], tools=[TOOLS])


def test_sft_records_from_trajectories_as_a_training_stage_has_them() -> None:
    """Stored agent trajectories (worked examples in the prompt) become rows with a context."""
    demo = [
        {"role": "system", "content": "Use tools."},
        {"role": "user", "content": "Example: 1 + 1?"},
        {"role": "assistant", "content": "2"},
    ]
    kept = [
        Trajectory(
            id=7, run_id="r", role="teacher", messages=demo + DICT_ARGS_CONVERSATION, tools=TOOLS
        ),
        Trajectory(id=8, run_id="r", role="teacher", messages=demo, tools=TOOLS),  # no reply
        Trajectory(
            id=9, run_id="r", role="teacher", messages=PLAIN_CONVERSATION * 2, meta={"weight": 0.5}
        ),
    ]
    records = sft_records_from(kept, context_messages=len(demo))
    assert records == [
        {"messages": demo + TOOL_CONVERSATION, "tools": TOOLS, "context_messages": 3},
        {"messages": PLAIN_CONVERSATION * 2, "weight": 0.5, "context_messages": 3},
    ]
    bad = Trajectory(
        id=5, run_id="r", role="teacher", messages=PLAIN_CONVERSATION, meta={"weight": -1}
    )
    with pytest.raises(ValueError, match="trajectory 5: weight is -1.0"):
        sft_records_from([bad])


def test_preference_record_checks_and_normalises() -> None:
    record = preference_record(TOOL_CONVERSATION[:1], DICT_ARGS_CONVERSATION[1:], "41", tools=TOOLS)
    assert record == {
        "prompt": TOOL_CONVERSATION[:1],
        "chosen": TOOL_CONVERSATION[1:],
        "rejected": [{"role": "assistant", "content": "41"}],
        "tools": TOOLS,
    }
    with pytest.raises(ValueError, match="prompt holds no message"):
        preference_record([], "42", "41")
    with pytest.raises(ValueError, match="rejected has no assistant turn"):
        preference_record(TOOL_CONVERSATION[:1], "42", [{"role": "user", "content": "41"}])
    with pytest.raises(ValueError, match="tools must be a list"):
        preference_record(TOOL_CONVERSATION[:1], "42", "41", tools={"name": "f"})


def test_preference_records_from_pairs_name_the_bad_pair() -> None:
    pair = PreferencePair(
        id=3,
        run_id="r",
        prompt=TOOL_CONVERSATION[:1],
        chosen=DICT_ARGS_CONVERSATION[1:],
        rejected=[{"role": "assistant", "content": "41"}],
        meta={"kind": "sample"},
    )
    (record,) = preference_records_from([pair])
    assert record["chosen"] == TOOL_CONVERSATION[1:] and "tools" not in record
    empty = PreferencePair(id=4, run_id="r", prompt=TOOL_CONVERSATION[:1], chosen=[], rejected=[])
    with pytest.raises(ValueError, match="preference pair 4: chosen holds no message"):
        preference_records_from([pair, empty])


def test_rows_of_a_file_are_checked_and_named(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    write_jsonl(
        [
            {"messages": DICT_ARGS_CONVERSATION, "tools": TOOLS, "weight": 1, "id": "a"},
            {"messages": PLAIN_CONVERSATION, "context_messages": 1},
        ],
        path,
    )
    assert sft_records_from_rows(read_jsonl(path)) == [
        {"messages": TOOL_CONVERSATION, "tools": TOOLS, "weight": 1.0},
        {"messages": PLAIN_CONVERSATION, "context_messages": 1},
    ]
    with pytest.raises(ValueError, match="row 2 lacks 'messages'"):
        sft_records_from_rows([{"messages": PLAIN_CONVERSATION}, {"prompt": []}])
    with pytest.raises(ValueError, match="row 1: weight is -2.0"):
        sft_records_from_rows([{"messages": PLAIN_CONVERSATION, "weight": -2}])

    pairs = [{"prompt": TOOL_CONVERSATION[:1], "chosen": "42", "rejected": "41", "source": "x"}]
    assert preference_records_from_rows(pairs) == [
        {
            "prompt": TOOL_CONVERSATION[:1],
            "chosen": [{"role": "assistant", "content": "42"}],
            "rejected": [{"role": "assistant", "content": "41"}],
        }
    ]
    with pytest.raises(ValueError, match="row 1 lacks 'rejected'"):
        preference_records_from_rows([{"prompt": TOOL_CONVERSATION[:1], "chosen": "42"}])

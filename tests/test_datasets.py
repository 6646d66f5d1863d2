"""Dataset export: TRL's conversational SFT and preference formats, HF datasets and JSONL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents.datasets import (
    normalize_messages,
    preference_records,
    read_jsonl,
    sft_records,
    to_hf_dataset,
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

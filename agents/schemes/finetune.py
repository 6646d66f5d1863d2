"""One-stage fine-tuning schemes (``sft``, ``dpo``): a JSONL dataset in, a registered adapter out.

They run on the same lifecycle as the many-stage schemes (:class:`SchemeRun`): a run row, one
``train`` stage committed atomically with its checkpoint, a report, ``--resume`` after a crash.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

from langgraph.graph import END, START, StateGraph
from pydantic import Field

from agents.config import TRAINING_FLAGS, ConfigError, StrictModel
from agents.datasets import preference_records_from_rows, read_jsonl, sft_records_from_rows
from agents.schemes.base import RoleContext, SchemeRun, StageOutput, add_stage_chain, train_role
from agents.training.lora import LoraSettings


class FinetuneJob(StrictModel):
    """LoRA fine-tuning of a base model on a JSONL dataset in TRL's conversational format."""

    base: str = Field("builtin:smollm2-135m", description="model spec of the base model")
    data: Path | None = Field(None, description="JSONL file: TRL conversational rows")
    role: str = Field("student", description="role the adapter is registered under")
    name: str | None = Field(None, description="human-readable run name")
    system_prompt: str | None = Field(None, description="recorded in the agent card on export")
    lora: LoraSettings = Field(default_factory=LoraSettings)

    FLAGS: ClassVar[dict[str, str]] = TRAINING_FLAGS


def read_records(path: Path | None, method: Literal["sft", "dpo"]) -> list[dict[str, Any]]:
    """The training records of a JSONL dataset, checked before anything is stored.

    Rows go through :mod:`agents.datasets` like every scheme's training data: conversations are
    normalised (tool-call arguments as JSON strings), weights and turns are checked.

    Raises:
        ConfigError: a missing, empty or malformed file, naming the row at fault.
    """
    if path is None:
        raise ConfigError(
            "no training data given; pass --data FILE.jsonl or set data: in the config"
        )
    if not Path(path).is_file():
        raise ConfigError(f"training data {path} does not exist")
    try:
        rows = read_jsonl(Path(path))
    except ValueError as err:
        raise ConfigError(f"{path} is not valid JSONL: {err}") from None
    if not rows:
        raise ConfigError(f"{path} holds no rows")
    required = ("messages",) if method == "sft" else ("prompt", "chosen", "rejected")
    for number, row in enumerate(rows, start=1):
        missing = [key for key in required if not row.get(key)]
        if missing:
            raise ConfigError(f"{path} row {number} lacks {', '.join(missing)}")
    build = sft_records_from_rows if method == "sft" else preference_records_from_rows
    try:
        return build(rows)
    except ValueError as err:
        raise ConfigError(f"{path}: {err}") from None


def _tools_of(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every distinct tool schema the rows offer, for the agent card."""
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        for tool in row.get("tools") or []:
            seen.setdefault(tool.get("function", {}).get("name", str(tool)), tool)
    return list(seen.values())


class FinetuneRun(SchemeRun):
    """A one-stage fine-tuning run; subclasses name the method and the fields a row needs."""

    method: ClassVar[Literal["sft", "dpo"]]

    def _build(
        self, *, progress: bool = True, loader: Callable[[str], Any] | None = None
    ) -> tuple[RoleContext, StateGraph, int]:
        context = RoleContext(self.config, self.store, self.workspace, self.run_id, progress)
        graph = StateGraph(dict)
        add_stage_chain(graph, START, [("train", self._train)], END)
        return context, graph, 1

    @classmethod
    def check(cls, config: Any) -> None:
        read_records(config.data, cls.method)

    @classmethod
    def trained(cls, config: Any) -> dict[str, str]:
        return {config.role: config.base}  # the adapter is registered under the configured role

    def _train(self, state: dict[str, Any], ctx: RoleContext, rnd: int) -> StageOutput:
        """Fine-tune the base model on the dataset and register the adapter."""
        rows = read_records(self.config.data, self.method)
        out = train_role(
            ctx,
            self.config.role,
            rnd,
            rows,
            base=self.config.base,
            method=self.method,
            settings=self.config.training,
            lora=self.config.lora,
            previous=None,
            system_prompt=self.config.system_prompt,
        )
        checkpoint = out.add[0]
        checkpoint.metrics = {**checkpoint.metrics, "tools": _tools_of(rows)}  # type: ignore[attr-defined]
        return out

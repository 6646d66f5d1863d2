"""Run configuration: YAML files validated by pydantic, with command-line overrides on top.

Every job reads ``configs/<job>.yaml`` (or ``--config``), then applies overrides given as dotted
keys (``training.learning_rate=1e-4``); the merged result is validated once and stored with
the run, so a run records exactly what it was asked to do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agents.training.dpo import DPOSettings
from agents.training.lora import LoraSettings
from agents.training.sft import SFTSettings

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration a user must fix; the message is one sentence naming the problem."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FinetuneJob(StrictModel):
    """LoRA fine-tuning of a base model on a JSONL dataset in TRL's conversational format."""

    base: str = Field("builtin:smollm2-135m", description="model spec of the base model")
    data: Path | None = Field(None, description="JSONL file: TRL conversational rows")
    role: str = Field("student", description="role the adapter is registered under")
    name: str | None = Field(None, description="human-readable run name")
    system_prompt: str | None = Field(None, description="recorded in the agent card on export")
    lora: LoraSettings = Field(default_factory=LoraSettings)


class SFTJob(FinetuneJob):
    """SFT with loss on assistant turns only; rows with a ``weight`` train weighted SFT."""

    training: SFTSettings = Field(default_factory=SFTSettings)


class DPOJob(FinetuneJob):
    """DPO on preference rows {prompt, chosen, rejected}."""

    training: DPOSettings = Field(default_factory=DPOSettings)


class EvalJob(StrictModel):
    """Held-out evaluation of a model on JSONL {question, answer} items."""

    model: str = Field("builtin:smollm2-135m", description="model spec to evaluate")
    adapter: Path | None = Field(None, description="optional PEFT adapter for in-process models")
    engine: dict[str, Any] = Field(
        default_factory=dict,
        description="engine options (batch_size, device, max_concurrency, timeout_s, ...)",
    )
    data: Path | None = Field(None, description="JSONL with question and answer fields")
    samples: int = Field(1, ge=1, description="samples per question (accuracy = mean)")
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)
    limit: int | None = Field(None, ge=1, description="evaluate only the first N items")
    system_prompt: str = Field(
        "Solve the problem step by step. Put the final answer in \\boxed{}.",
        description="system message used for every question",
    )


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` inside nested dicts, creating levels as needed."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` → (key, YAML-parsed value), so numbers and booleans keep their types."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    return key.strip(), yaml.safe_load(raw) if raw.strip() else None


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level")
    return data


def load_config(
    model: type[T],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Read a YAML file (optional), apply dotted overrides (``None`` values are skipped), validate.

    Raises:
        ConfigError: unreadable file or invalid values, as one sentence.
    """
    data = read_yaml(Path(path)) if path else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            set_dotted(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        source = f"{path}: " if path else ""
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{source}{where}: {first['msg']}{more}") from None


def default_config_path(job: str) -> Path | None:
    """``configs/<job>.yaml`` shipped with the project, when present."""
    path = CONFIG_DIR / f"{job.replace('-', '_')}.yaml"
    return path if path.exists() else None

"""Settings of a toy run; every scalar field is a flag of ``agents run toy-distill``."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from agents.config import StrictModel
from agents.training.lora import LoraSettings
from agents.training.sft import SFTSettings


class ToyJob(StrictModel):
    """A teacher answers questions; a student learns its answers."""

    name: str | None = Field(None, description="human-readable run name")
    teacher: str = Field("builtin:smollm2-135m", description="teacher model spec")
    student: str = Field("builtin:smollm2-135m", description="student model spec (trained)")
    questions: int = Field(3, ge=1, description="questions the teacher answers")
    max_tokens: int = Field(8, ge=1, description="tokens per answer")
    pause_marker: Path | None = Field(
        None, description="a file whose presence interrupts the run after its first stage"
    )
    training: SFTSettings = Field(
        default_factory=lambda: SFTSettings(max_steps=2, batch_size=2, max_length=128)
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)

    FLAGS: ClassVar[dict[str, str]] = {"steps": "training.max_steps"}

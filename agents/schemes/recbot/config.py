"""Settings of a RecBot run (``configs/recbot.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from agents.config import TRAINING_FLAGS, StrictModel, with_section_defaults
from agents.schemes.recbot.episode import RecSettings
from agents.schemes.recbot.users import Scenario
from agents.training.lora import LoraSettings
from agents.training.sft import SFTSettings


class CatalogSettings(StrictModel):
    """Which catalog: MovieLens-100k with OMDb attributes, or your own files."""

    items: Path | None = Field(
        None, description="your items JSONL (id, title, year, runtime, genres, ...)"
    )
    interactions: Path | None = Field(None, description="your interactions CSV (user,item,rating)")
    factors: int = Field(32, ge=2, description="latent factors of the collaborative model (ALS)")

    @model_validator(mode="after")
    def _both_or_neither(self) -> CatalogSettings:
        if (self.items is None) != (self.interactions is None):
            raise ValueError("catalog.items and catalog.interactions go together")
        return self


class UserSettings(StrictModel):
    """Simulated users: how many, which scenarios, how long an episode may be."""

    train: int = Field(40, ge=1, description="training users (one goal each)")
    heldout: int = Field(30, ge=1, description="held-out users (one goal each; never trained on)")
    scenarios: list[Scenario] = Field(
        default_factory=lambda: ["single", "multi", "drift"],
        description="scenarios, assigned to the users in turn",
    )
    max_turns: int = Field(4, ge=2, description="turns a multi-round episode may take")
    min_history: int = Field(5, ge=1, description="ratings a user needs before the target")


class EpisodeSettings(StrictModel):
    """How episodes run (see :class:`agents.schemes.recbot.episode.RecSettings`)."""

    k: int = Field(10, ge=1, le=50, description="films in a feed; the K of Recall/NDCG/CSR@K")
    shown: int = Field(5, ge=1, description="films of the feed the simulator and parser read")
    parser_max_tokens: int = Field(256, ge=16)
    planner_max_tokens: int = Field(384, ge=16)
    planner_steps: int = Field(2, ge=1, description="planner replies per turn")
    parse_retries: int = Field(1, ge=0, description="times a malformed parse is asked again")
    simulator_max_tokens: int = Field(64, ge=8)

    def loop(self, seed: int) -> RecSettings:
        return RecSettings(**self.model_dump(), seed=seed)


def _recbot_sft() -> SFTSettings:
    return SFTSettings(learning_rate=2e-4, epochs=3, batch_size=1, grad_accum=4, max_length=1536)


class RecBotJob(StrictModel):
    """RecBot: a teacher's parser and planner turns, from simulated users, teach a student."""

    FLAGS: ClassVar[dict[str, str]] = {
        "users": "users.train",
        "heldout-users": "users.heldout",
        "k": "episode.k",
        **TRAINING_FLAGS,
    }

    name: str | None = Field(None, description="human-readable run name")
    teacher: str = Field("builtin:qwen2.5-coder-0.5b", description="teacher RecBot model spec")
    student: str = Field("builtin:smollm2-135m", description="student model spec (trained)")
    simulator: str | None = Field(
        None, description="the simulated user's model spec (default: the teacher's)"
    )
    engine: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="engine options per role (teacher, student, simulator)"
    )
    seed: int = Field(0, description="seed for users, goals, sampling and training")
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    users: UserSettings = Field(default_factory=UserSettings)
    episode: EpisodeSettings = Field(default_factory=EpisodeSettings)
    training: SFTSettings = Field(default_factory=_recbot_sft)
    lora: LoraSettings = Field(default_factory=lambda: LoraSettings(r=64, alpha=128, dropout=0.05))
    keep: Literal["verified", "successful"] = Field(
        "verified",
        description="teacher turns the student learns from: verified (exact parses, exact plans) "
        "or successful (every turn of the episodes that reached their target)",
    )
    baselines: bool = Field(
        True, description="also rank by popularity, collaborative score and command retrieval"
    )
    eval_teacher: bool = Field(True, description="also evaluate the teacher RecBot")

    @model_validator(mode="before")
    @classmethod
    def _partial_training(cls, data: Any) -> Any:
        """``training={"max_steps": 2}`` keeps this scheme's other training defaults."""
        return with_section_defaults(cls, data, "training")

    @property
    def simulator_spec(self) -> str:
        return self.simulator or self.teacher

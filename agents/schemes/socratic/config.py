"""Settings of a Socratic co-evolution run (``configs/socratic.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, model_validator

from agents.config import SampleSettings, StrictModel, with_section_defaults
from agents.task_families import Family, FamilySpec
from agents.training.dpo import DPOSettings
from agents.training.lora import LoraSettings
from agents.training.sft import SFTSettings


class SeedSettings(StrictModel):
    """Where seeds, the warm-up pool and the held-out sets come from (disjoint pools)."""

    source: str | None = Field(
        None,
        description="one family: 'gsm_symbolic', a reasoning-gym dataset or a .jsonl file "
        "(replaces families when set; default gsm_symbolic when neither is)",
    )
    families: list[Family] = Field(
        default_factory=list, description="a weighted mixture of families"
    )
    transfer: list[Family] = Field(
        default_factory=list,
        description="families only in the held-out set (never trained on), reported as transfer",
    )
    count: int = Field(100, ge=1, description="number of seed questions")
    heldout: int = Field(50, ge=1, description="held-out evaluation questions")
    transfer_heldout: int = Field(
        0, ge=0, description="held-out questions of the transfer families"
    )
    warmup_pool: int = Field(
        32, ge=0, description="warm-up questions, disjoint from seeds and held-out"
    )
    heldout_data: Path | None = Field(
        None, description="JSONL of held-out {question, answer}; default: drawn from the source"
    )
    heldout_share: float = Field(
        0.25, gt=0, lt=1, description="share of gsm_symbolic templates reserved for held-out"
    )

    def mixture(self) -> list[FamilySpec]:
        """The families to draw from: ``source`` alone when set (``--seed-data`` overrides a
        config's mixture), else ``families``, else gsm_symbolic."""
        if self.source is not None:
            return [FamilySpec(self.source)]
        if self.families:
            return [f.spec() for f in self.families]
        return [FamilySpec("gsm_symbolic")]


class CalibrateSettings(SampleSettings):
    """The paper's seed filter: keep candidates the base Solver solves within a band of k tries."""

    enabled: bool = Field(True, description="filter seed candidates by the base Solver")
    candidates: int | None = Field(
        None, ge=1, description="candidates sampled before filtering (default: 3 × seeds)"
    )
    samples: int = Field(8, ge=1)
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    min_success: float = Field(0.1, ge=0, le=1, description="lowest kept success rate")
    max_success: float = Field(0.7, ge=0, le=1, description="highest kept success rate")

    @model_validator(mode="after")
    def _band(self) -> CalibrateSettings:
        if self.min_success > self.max_success:
            raise ValueError("calibrate.min_success must not exceed calibrate.max_success")
        return self


class SolveSettings(SampleSettings):
    """The Solver's k samples per question (paper: T 0.8-0.9)."""

    samples: int = Field(8, ge=1)
    temperature: float = Field(0.8, ge=0.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)


class HeldoutSettings(SampleSettings):
    """Held-out scoring of the Solver, mean over samples (paper: T 0.7, top-p 0.9)."""

    samples: int = Field(4, ge=1)
    temperature: float = Field(0.7, ge=0.0)
    top_p: float = Field(0.9, gt=0.0, le=1.0)


class VerifySettings(StrictModel):
    """Rule first; the Teacher judges only what the rule cannot decide."""

    judge: bool = Field(True, description="ask the Teacher when the rule is inconclusive")
    temperature: float = Field(0.1, ge=0.0)
    max_tokens: int = Field(128, ge=1)
    retries: int = Field(2, ge=0, description="re-asks after malformed judge output")


class RefineSettings(StrictModel):
    """New problems from mastered and learning questions."""

    use_generator: bool = Field(
        False, description="the trained Generator writes new problems instead of the Teacher"
    )
    temperature: float = Field(0.7, ge=0.0)
    max_tokens: int = Field(384, ge=1)
    retries: int = Field(1, ge=0, description="re-asks after malformed Teacher output")
    max_problems: int | None = Field(None, ge=1, description="cap on new problems per round")


class QualitySettings(StrictModel):
    """The Teacher re-solves each new problem; irreproducible or ambiguous ones are dropped."""

    samples: int = Field(1, ge=1, description="Teacher re-solves (2+ with --use-generator)")
    temperature: float = Field(0.1, ge=0.0)
    max_tokens: int = Field(384, ge=1)
    min_chars: int = Field(30, ge=1, description="shorter questions are dropped as malformed")


class UtilitySettings(StrictModel):
    """U = exp(-(s - center)^2 / (2 sigma^2)) of the updated Solver's success rate s."""

    samples: int = Field(4, ge=1)
    center: float = Field(0.5, ge=0, le=1)
    sigma: float = Field(0.2, gt=0)


class SocraticJob(StrictModel):
    """Socratic co-evolution of a Teacher, a Solver (DPO) and a Generator (weighted SFT)."""

    FLAGS: ClassVar[dict[str, str]] = {
        "seeds": "seeds.count",
        "seed-data": "seeds.source",
        "heldout": "seeds.heldout",
        "samples": "solve.samples",
        "use-generator": "refine.use_generator",
    }

    name: str | None = Field(None, description="human-readable run name")
    teacher: str = Field("builtin:qwen2.5-coder-0.5b", description="Teacher model spec")
    solver: str = Field("builtin:smollm2-135m", description="Solver model spec (trained)")
    generator: str = Field("builtin:smollm2-135m", description="Generator model spec (trained)")
    engine: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="engine options per role, e.g. {teacher: {max_concurrency: 8}}",
    )
    rounds: int = Field(3, ge=1, description="co-evolution rounds")
    seed: int = Field(0, description="seed for data splits, sampling and training")
    seeds: SeedSettings = Field(default_factory=SeedSettings)
    calibrate: CalibrateSettings = Field(default_factory=CalibrateSettings)
    calibrate_only: bool = Field(
        False, description="stop after the seed filter (choose a curriculum); --resume goes on"
    )
    questions_per_round: int | None = Field(
        None, ge=1, description="questions solved per round (default: the number of seeds)"
    )
    replay: float = Field(0.25, ge=0, lt=1, description="share of each round replaying old items")
    solve: SolveSettings = Field(default_factory=SolveSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    max_pairs_per_question: int = Field(16, ge=1)
    warmup: SFTSettings | None = Field(
        default_factory=lambda: SFTSettings(max_steps=30, learning_rate=2e-4, max_length=512),
        description="LoRA SFT of the Solver on the warm-up pool's solutions; null to skip",
    )
    solver_training: DPOSettings = Field(
        # LoRA on a small model needs larger steps than the paper's full fine-tuning of an 8B
        # model (lr 1e-6 to 5e-6), or a round of DPO barely moves it.
        default_factory=lambda: DPOSettings(
            beta=0.1, learning_rate=5e-5, epochs=1, batch_size=4, max_length=512
        )
    )
    solver_lora: LoraSettings = Field(default_factory=LoraSettings)
    refine: RefineSettings = Field(default_factory=RefineSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    utility: UtilitySettings = Field(default_factory=UtilitySettings)
    generator_training: SFTSettings | None = Field(
        default_factory=lambda: SFTSettings(epochs=2, learning_rate=1e-4, max_length=768),
        description="weighted SFT of the Generator each round; null to skip",
    )
    generator_lora: LoraSettings = Field(default_factory=LoraSettings)
    eval: HeldoutSettings = Field(default_factory=HeldoutSettings)
    eval_base: bool = Field(True, description="also evaluate the Solver before the warm-up")
    eval_teacher: bool = Field(
        False, description="also evaluate the Teacher on the held-out set (the reference)"
    )

    @model_validator(mode="before")
    @classmethod
    def _partial_training_sections(cls, data: Any) -> Any:
        """``warmup={"max_steps": 5}`` changes one value and keeps this scheme's other defaults."""
        return with_section_defaults(cls, data, "warmup", "solver_training", "generator_training")

"""Settings of a strategy-teaching run (``configs/strategy_teaching.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from agents.config import StrictModel, with_section_defaults
from agents.training.lora import LoraSettings
from agents.training.sft import SFTSettings


class ServiceTaskSettings(StrictModel):
    """Which customer-service tasks teach and which test (τ²-bench train / test splits)."""

    domain: Literal["retail", "airline"] = Field("retail", description="τ²-bench domain")
    data_dir: Path | None = Field(
        None,
        description="a directory holding <domain>/policy.txt, db.json.gz, tasks.json and "
        "split_tasks.json (default: the installed inspect-evals package's τ²-bench data)",
    )
    train: int = Field(8, ge=1, description="training tasks per round (train split)")
    heldout: int = Field(8, ge=1, description="held-out tasks (test split)")


class ServiceDialogueSettings(StrictModel):
    """Limits of a simulated dialogue between an agent and the customer simulator."""

    max_turns: int = Field(3, ge=1, description="agent messages to the customer per dialogue")
    max_tool_calls: int = Field(3, ge=1, description="tool calls in one turn before it is cut")
    max_tokens: int = Field(192, ge=1, description="tokens per agent reply")
    customer_max_tokens: int = Field(96, ge=1, description="tokens per customer message")
    temperature: float = Field(0.0, ge=0.0)
    observation_chars: int = Field(1200, ge=100, description="tool results are cut to this")


class ScenarioSettings(StrictModel):
    """Where scenarios come from: the student's weak turns and the teacher's imagination.

    A student turn is weak when the judge prefers the teacher's reply to the same conversation,
    or when the rules find a policy violation or a failed tool call in it.
    """

    max_per_round: int = Field(8, ge=1, description="scenarios refined per round (worst first)")
    teacher_scenarios: int = Field(
        2, ge=0, description="extra scenarios per round written by the teacher for coverage"
    )


class RefinementSettings(StrictModel):
    """The strategy-refinement loop run on every scenario."""

    max_iterations: int = Field(3, ge=1, description="student/teacher/judge rounds per scenario")
    top_k: int = Field(3, ge=1, description="strategies retrieved into the student's prompt")
    max_new: int = Field(2, ge=1, description="strategies the teacher may add per iteration")
    both_orders: bool = Field(
        True, description="the judge sees each pair both ways round (a position bias ties)"
    )
    judge_max_tokens: int = Field(4, ge=1, description="the judge answers A or B")
    writer_max_tokens: int = Field(256, ge=32)
    writer_temperature: float = Field(
        0.7, ge=0.0, description="the teacher samples its strategies: a retry is a new attempt"
    )


class EvaluationSettings(StrictModel):
    """The held-out evaluation: full dialogues, and the baselines the learned strategies face.

    Held-out dialogues run until the customer ends them (``###STOP###``), the agent transfers,
    or ``max_turns``: long enough to finish a τ²-bench task (look the customer up, read the
    order, confirm, act), unlike the short dialogues that find scenarios in training.
    """

    max_turns: int = Field(8, ge=1, description="agent messages per held-out dialogue")
    max_tool_calls: int = Field(4, ge=1, description="tool calls in one held-out turn")
    generic: bool = Field(
        True,
        description="baseline: the student with generic guidance, as many strategies as the "
        "library holds, written by the teacher from the policy alone (no scenarios)",
    )
    finetune: bool = Field(
        True,
        description="baseline: the student fine-tuned (LoRA SFT) on the teacher's replies to "
        "the run's scenarios",
    )


def _finetune_sft() -> SFTSettings:
    # An example holds the whole policy and the tool schemas (about 3,800 tokens of retail for
    # SmolLM2's tokenizer) and ends with the one reply learnt; a cut at max_length would drop that
    # reply, so the budget is generous. At that length one SmolLM2-135M pass keeps 10 GB of
    # activations; recomputing them in the backward pass holds it to 6 GB (56 s instead of 44 s
    # per example on 2 cores).
    return SFTSettings(
        epochs=2, batch_size=2, max_length=6144, learning_rate=2e-4, gradient_checkpointing=True
    )


class StrategyTeachingJob(StrictModel):
    """Strategy teaching: a teacher writes retrievable strategies that make a student act like it.

    No weights change: teacher, student, customer simulator and judge are any chat endpoints.
    """

    FLAGS: ClassVar[dict[str, str]] = {
        "domain": "tasks.domain",
        "train-tasks": "tasks.train",
        "heldout-tasks": "tasks.heldout",
        "iterations": "refine.max_iterations",
        "top-k": "refine.top_k",
        "turns": "dialogue.max_turns",
    }

    name: str | None = Field(None, description="human-readable run name")
    teacher: str = Field("builtin:qwen2.5-coder-0.5b", description="teacher model spec")
    student: str = Field("builtin:smollm2-135m", description="student model spec")
    customer: str | None = Field(None, description="customer simulator (default: the teacher)")
    judge: str | None = Field(
        "builtin:qwen2.5-coder-1.5b",
        description="judge model; not the teacher by default, which would grade its own replies "
        "(null: the teacher)",
    )
    transfer_student: str | None = Field(
        "builtin:qwen2.5-coder-1.5b",
        description="a second student, another model than the teacher, given the same library "
        "(null: no transfer evaluation)",
    )
    engine: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="engine options per role (teacher, student, customer, judge, transfer_student)",
    )
    seed: int = Field(0, description="seed for task choice and sampling")
    library: str | None = Field(None, description="strategy library name (default: the domain)")
    use_proposed: bool = Field(
        True,
        description="a training run: retrieval also uses proposed (not yet audited) strategies",
    )
    rounds: int = Field(
        2,
        ge=0,
        description="scenario generation + refinement rounds; 0 only evaluates the library "
        "(with use_proposed false: its audited strategies)",
    )
    tasks: ServiceTaskSettings = Field(default_factory=ServiceTaskSettings)
    dialogue: ServiceDialogueSettings = Field(default_factory=ServiceDialogueSettings)
    scenarios: ScenarioSettings = Field(default_factory=ScenarioSettings)
    refine: RefinementSettings = Field(default_factory=RefinementSettings)
    heldout_turns: int = Field(
        2, ge=1, description="judged scenarios per held-out dialogue (its first customer turns)"
    )
    eval_teacher: bool = Field(True, description="also run the teacher on the held-out tasks")
    evaluation: EvaluationSettings = Field(default_factory=EvaluationSettings)
    training: SFTSettings = Field(
        default_factory=_finetune_sft, description="the fine-tuned baseline's LoRA SFT"
    )
    lora: LoraSettings = Field(default_factory=LoraSettings)

    @model_validator(mode="before")
    @classmethod
    def _partial_training(cls, data: Any) -> Any:
        """``training={"max_steps": 2}`` keeps this scheme's other training defaults."""
        return with_section_defaults(cls, data, "training")

    @property
    def library_name(self) -> str:
        return self.library or self.tasks.domain

    def role_model(self, role: str) -> str:
        """The model spec of a role; customer and judge default to the teacher, the fine-tuned
        baseline is the student's base model."""
        if role == "student_finetuned":
            return self.student
        spec = getattr(self, role)
        return spec if spec is not None else self.teacher

    @property
    def judge_is_teacher(self) -> bool:
        """The teacher grades its own replies (self-preference): the report says so."""
        return self.role_model("judge") == self.teacher

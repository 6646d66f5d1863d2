"""Settings of an agent-distillation run (``configs/agent_distill.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from agents.config import TRAINING_FLAGS, SampleSettings, StrictModel, with_section_defaults
from agents.task_families import Family
from agents.training.lora import LoraSettings
from agents.training.sft import SFTSettings


class AgentTaskSettings(StrictModel):
    """Training and held-out tasks: math, fanoutqa questions and long-tail corpus facts."""

    math: int = Field(40, ge=0, description="training math problems (from `families`)")
    families: list[Family] = Field(
        default_factory=list,
        description="where math comes from: reasoning-gym datasets by name with their settings, "
        "gsm_symbolic or a .jsonl file, weighted (default: gsm_symbolic)",
    )
    factual: int = Field(20, ge=0, description="training factual questions (fanoutqa, covered)")
    corpus_facts: int = Field(
        0, ge=0, description="training questions the teacher writes about long-tail corpus facts"
    )
    heldout_math: int = Field(20, ge=0, description="held-out math problems (unseen templates)")
    heldout_factual: int = Field(10, ge=0, description="held-out factual questions")
    heldout_corpus_facts: int = Field(0, ge=0, description="held-out corpus-fact questions")
    data: Path | None = Field(
        None, description="JSONL of training tasks {question, answer, domain?}; replaces the above"
    )
    heldout_data: Path | None = Field(None, description="JSONL of held-out tasks")
    heldout_share: float = Field(
        0.25, gt=0, lt=1, description="share of gsm_symbolic templates reserved for held-out"
    )


class CorpusSettings(StrictModel):
    """The retrieval corpus: Wikipedia lead summaries embedded into Chroma in the workspace."""

    limit: int | None = Field(
        None, ge=1, description="embed only the first N articles (the tasks' own always included)"
    )


class FactSettings(StrictModel):
    """How corpus-fact questions are written: the teacher reads one article and asks about it."""

    articles: int = Field(
        4, ge=1, description="articles tried per question wanted (most drafts fail a check)"
    )
    max_answer_words: int = Field(5, ge=1, description="longest answer span kept")
    min_article_chars: int = Field(200, ge=50, description="shorter summaries are skipped")
    closed_book_filter: bool = Field(
        True, description="keep only questions the base student gets wrong without tools"
    )
    max_tokens: int = Field(96, ge=16, description="tokens of the teacher's question draft")


class AgentRunSettings(StrictModel):
    """How an agent runs its tool loop."""

    max_steps: int = Field(5, ge=1, description="replies per task before the step limit stops it")
    temperature: float = Field(0.0, ge=0.0)
    max_tokens: int = Field(384, ge=1, description="tokens per reply")
    observation_chars: int = Field(1500, ge=100, description="observations are cut to this")
    sandbox_timeout: float = Field(10.0, gt=0, description="seconds per python_exec call")


class SelfConsistencySettings(StrictModel):
    """Self-consistent action generation at test time (paper: 8 candidates at T 0.4)."""

    candidates: int = Field(8, ge=2)
    temperature: float = Field(0.4, ge=0.0)


def _agent_sft() -> SFTSettings:
    # Paper: lr 2e-4, effective batch 8, 2 epochs; trajectories are long, hence max_length.
    return SFTSettings(learning_rate=2e-4, epochs=2, batch_size=4, grad_accum=2, max_length=2048)


class AgentDistillJob(StrictModel):
    """Agent distillation: a teacher's tool-using trajectories teach a small student agent."""

    FLAGS: ClassVar[dict[str, str]] = {
        "math": "tasks.math",
        "factual": "tasks.factual",
        "heldout-math": "tasks.heldout_math",
        "heldout-factual": "tasks.heldout_factual",
        "task-data": "tasks.data",
        "heldout-data": "tasks.heldout_data",
        "agent-steps": "student_agent.max_steps",
        "candidates": "self_consistency.candidates",
        **TRAINING_FLAGS,
    }

    name: str | None = Field(None, description="human-readable run name")
    mode: Literal["tools", "code"] = Field(
        "tools",
        description="how agents act: one JSON tool call per step ('tools'), or one Python block "
        "per step run in the sandbox with retrieve() callable inside it ('code')",
    )
    teacher: str = Field("builtin:qwen2.5-coder-0.5b", description="teacher model spec")
    student: str = Field("builtin:smollm2-135m", description="student model spec (trained)")
    engine: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="engine options per role (teacher, student)"
    )
    seed: int = Field(0, description="seed for data splits, sampling and training")
    tasks: AgentTaskSettings = Field(default_factory=AgentTaskSettings)
    corpus: CorpusSettings = Field(default_factory=CorpusSettings)
    facts: FactSettings = Field(default_factory=FactSettings)
    first_thought: bool = Field(
        True, description="start the teacher's first Thought with its chain-of-thought opening"
    )
    cot: SampleSettings = Field(
        default_factory=lambda: SampleSettings(max_tokens=384),
        description="the teacher's chain-of-thought answers (prefix and CoT baseline data)",
    )
    teacher_agent: AgentRunSettings = Field(default_factory=AgentRunSettings)
    judge: bool = Field(
        True, description="the teacher judges factual answers the normalised match rejects"
    )
    student_agent: AgentRunSettings = Field(default_factory=AgentRunSettings)
    self_consistency: SelfConsistencySettings = Field(default_factory=SelfConsistencySettings)
    training: SFTSettings = Field(default_factory=_agent_sft)
    lora: LoraSettings = Field(
        default_factory=lambda: LoraSettings(r=64, alpha=128, dropout=0.05),
        description="paper: r 64, alpha 128, dropout 0.05, all linear layers",
    )
    cot_baseline: bool = Field(
        True, description="also fine-tune the student on the teacher's CoT answers (no tools)"
    )
    eval_teacher: bool = Field(True, description="also evaluate the teacher agent")
    closed_book: bool = Field(
        True,
        description="also evaluate student and teacher without tools on the held-out tasks "
        "(per task source: where tools are needed)",
    )

    @model_validator(mode="before")
    @classmethod
    def _partial_training(cls, data: Any) -> Any:
        """``training={"max_steps": 2}`` keeps this scheme's other training defaults."""
        return with_section_defaults(cls, data, "training")

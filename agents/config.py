"""Run configuration: YAML files validated by pydantic, with command-line overrides on top.

Every job reads ``configs/<job>.yaml`` (or ``--config``), then applies overrides given as dotted
keys (``training.learning_rate=1e-4``); the merged result is validated once and stored with
the run, so a run records exactly what it was asked to do.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


# ---------------------------------------------------------------------------- Socratic


class SeedSettings(StrictModel):
    """Where the seed questions and the held-out evaluation set come from."""

    source: str = Field(
        "gsm_symbolic",
        description="'gsm_symbolic' (reasoning-gym) or a JSONL file of {question, answer}",
    )
    count: int = Field(100, ge=1, description="number of seed questions")
    heldout: int = Field(50, ge=1, description="held-out evaluation questions")
    heldout_data: Path | None = Field(
        None, description="JSONL of held-out {question, answer}; default: drawn from the source"
    )
    heldout_share: float = Field(
        0.25, gt=0, lt=1, description="share of gsm_symbolic templates reserved for held-out"
    )


class SampleSettings(StrictModel):
    """How a role samples: count, temperature, nucleus mass and length."""

    samples: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)


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
    questions_per_round: int | None = Field(
        None, ge=1, description="questions solved per round (default: the number of seeds)"
    )
    replay: float = Field(0.25, ge=0, lt=1, description="share of each round replaying old items")
    solve: SolveSettings = Field(default_factory=SolveSettings)
    verify: VerifySettings = Field(default_factory=VerifySettings)
    max_pairs_per_question: int = Field(16, ge=1)
    warmup: SFTSettings | None = Field(
        default_factory=lambda: SFTSettings(max_steps=30, learning_rate=2e-4, max_length=512),
        description="LoRA SFT of the Solver on the seeds' reference solutions; null to skip",
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

    @model_validator(mode="before")
    @classmethod
    def _partial_training_sections(cls, data: Any) -> Any:
        """``warmup={"max_steps": 5}`` changes one value and keeps this scheme's other defaults
        (which differ from the plain SFT/DPO defaults), as a YAML file plus ``--set`` does."""
        if not isinstance(data, dict):
            return data
        merged = dict(data)
        for name in ("warmup", "solver_training", "generator_training"):
            factory = cls.model_fields[name].default_factory
            if isinstance(data.get(name), dict) and factory is not None:
                merged[name] = {**asdict(factory()), **data[name]}  # type: ignore[call-arg]
        return merged


# ---------------------------------------------------------------------------- agent distillation


class AgentTaskSettings(StrictModel):
    """Training and held-out tasks: math word problems and factual questions over the corpus."""

    math: int = Field(40, ge=0, description="training math problems (reasoning-gym gsm_symbolic)")
    factual: int = Field(20, ge=0, description="training factual questions (fanoutqa, covered)")
    heldout_math: int = Field(20, ge=0, description="held-out math problems (unseen templates)")
    heldout_factual: int = Field(10, ge=0, description="held-out factual questions")
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

    name: str | None = Field(None, description="human-readable run name")
    teacher: str = Field("builtin:qwen2.5-coder-0.5b", description="teacher model spec")
    student: str = Field("builtin:smollm2-135m", description="student model spec (trained)")
    engine: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="engine options per role (teacher, student)"
    )
    seed: int = Field(0, description="seed for data splits, sampling and training")
    tasks: AgentTaskSettings = Field(default_factory=AgentTaskSettings)
    corpus: CorpusSettings = Field(default_factory=CorpusSettings)
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

    @model_validator(mode="before")
    @classmethod
    def _partial_training(cls, data: Any) -> Any:
        """``training={"max_steps": 2}`` keeps this scheme's other training defaults."""
        if isinstance(data, dict) and isinstance(data.get("training"), dict):
            return {**data, "training": {**asdict(_agent_sft()), **data["training"]}}
        return data


# ---------------------------------------------------------------------------- strategy teaching


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


class StrategyTeachingJob(StrictModel):
    """Strategy teaching: a teacher writes retrievable strategies that make a student act like it.

    No weights change: teacher, student, customer simulator and judge are any chat endpoints.
    """

    name: str | None = Field(None, description="human-readable run name")
    teacher: str = Field("builtin:qwen2.5-coder-0.5b", description="teacher model spec")
    student: str = Field("builtin:smollm2-135m", description="student model spec")
    customer: str | None = Field(None, description="customer simulator (default: the teacher)")
    judge: str | None = Field(None, description="judge model (default: the teacher)")
    transfer_student: str | None = Field(
        "builtin:qwen2.5-coder-0.5b",
        description="a second student given the same library (null: no transfer evaluation)",
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

    @property
    def library_name(self) -> str:
        return self.library or self.tasks.domain

    def role_model(self, role: str) -> str:
        """The model spec of a role; customer and judge default to the teacher."""
        spec = getattr(self, role)
        return spec if spec is not None else self.teacher

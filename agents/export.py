"""Export a trained student as a small agent: merged weights, tokenizer, agent card, README.

The export directory is a plain HF model directory, so anything that loads models (transformers,
vLLM, ``load_engine(path)``) can serve it; ``agent_card.json`` says where it came from and how to
prompt it. Exports are written to a staging directory and renamed into place, so a failed export
leaves nothing half-written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agents.models import load_engine, resolve_local_model
from agents.models.base import Engine

CARD_FILE = "agent_card.json"


class ExportError(RuntimeError):
    """An export that cannot be done as asked; the message says why in one sentence."""


@dataclass
class AgentCard:
    """What a user needs to know to run and trust an exported agent."""

    name: str
    base_model: str
    adapter_lineage: list[dict[str, Any]] = field(default_factory=list)
    system_prompt: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    strategies: list[dict[str, Any]] | None = None
    training_data: dict[str, int] = field(default_factory=dict)
    eval_scores: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    scheme: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = 1

    @classmethod
    def read(cls, directory: Path) -> AgentCard:
        path = Path(directory) / CARD_FILE
        if not path.exists():
            raise ExportError(f"{directory} is not an exported agent (no {CARD_FILE})")
        return cls(**json.loads(path.read_text()))

    def write(self, directory: Path) -> None:
        (Path(directory) / CARD_FILE).write_text(json.dumps(asdict(self), indent=2) + "\n")


def _readme(card: AgentCard, directory: Path) -> str:
    lineage = (
        "\n".join(
            f"- round {step.get('round')}: {step.get('role')} adapter `{step.get('adapter_path')}`"
            for step in card.adapter_lineage
        )
        or "- none (base weights)"
    )
    tools = ", ".join(t.get("function", {}).get("name", "?") for t in card.tools) or "none"
    scores = ", ".join(f"{k} = {v:.3f}" for k, v in card.eval_scores.items()) or "not evaluated"
    data = ", ".join(f"{k}: {v}" for k, v in card.training_data.items()) or "none recorded"
    return f"""# {card.name}

A small agent exported from {card.scheme or "a fine-tuning"} run `{card.run_id or "-"}`.
Base model: `{card.base_model}`; LoRA adapters merged into the weights (safetensors).

## Load it

```python
from agents.export import load_agent

agent = load_agent("{directory}")
print(agent.ask("What is 12 * 7?"))
```

or as any other model spec: `agents eval --model {directory} ...`.

## Provenance
Adapter lineage:
{lineage}

Training data: {data}. Evaluation: {scores}. Tools: {tools}.
System prompt and tool schemas are in `{CARD_FILE}`.
"""


def export_agent(
    out_dir: str | Path,
    card: AgentCard,
    *,
    adapter: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Write merged weights (base + optional adapter), tokenizer, card and README to ``out_dir``."""
    from agents.training.merge import merge_adapter

    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} already exists and is not empty; pass --overwrite to replace it")
    if adapter is not None and not (Path(adapter) / "adapter_config.json").exists():
        raise ExportError(f"{adapter} is not a LoRA adapter directory")
    base_path = resolve_local_model(card.base_model)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}-"))
    try:
        if adapter is not None:
            merge_adapter(base_path, adapter, staging)
        else:
            _copy_base(base_path, staging)
        card.write(staging)
        (staging / "README.md").write_text(_readme(card, out))
        if out.exists():
            shutil.rmtree(out)
        staging.replace(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _copy_base(base_path: str, target: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(base_path).save_pretrained(target)
    AutoTokenizer.from_pretrained(base_path).save_pretrained(target)


#: The role a scheme's run exports by default (its student), when it trains several.
PRIMARY_ROLE = {"socratic": "solver", "agent-distill": "student"}


def card_for_run(
    store: Any, run_id: str, *, role: str | None = None, round: int | None = None
) -> tuple[AgentCard, str]:
    """The agent card and adapter path for a run's trained checkpoint (latest by default).

    Args:
        store: An ``agents.store.Store``.
        run_id: The run to export from.
        role: Which role's adapter (default: the scheme's student, see :data:`PRIMARY_ROLE`,
            else the most recent checkpoint's role).
        round: Which round (default: the latest of that role).
    """
    run = store.get_run(run_id)
    role = role or PRIMARY_ROLE.get(run.scheme)
    checkpoints = [
        c
        for c in store.checkpoints(run_id)
        if (role is None or c.role == role) and (round is None or c.round == round)
    ]
    if not checkpoints:
        roles = sorted({c.role for c in store.checkpoints(run_id)}) or ["none"]
        raise ExportError(
            f"run {run_id} has no trained adapter for role={role} round={round}; "
            f"roles with adapters: {', '.join(roles)}"
        )
    chosen = max(checkpoints, key=lambda c: (c.round, c.id))
    lineage = store.checkpoint_lineage(chosen.id)
    metrics = chosen.metrics or {}
    config = run.config or {}
    card = AgentCard(
        name=f"{run.scheme}-{chosen.role}-{run.id}",
        base_model=chosen.base_model,
        adapter_lineage=[
            {
                "run_id": c.run_id,
                "role": c.role,
                "round": c.round,
                "adapter_path": c.adapter_path,
                "metrics": {k: v for k, v in (c.metrics or {}).items() if k not in ("tools",)},
            }
            for c in lineage
        ],
        system_prompt=metrics.get("system_prompt") or config.get("system_prompt"),
        tools=metrics.get("tools") or [],
        strategies=metrics.get("strategies"),
        training_data={
            f"{c.role} round {c.round}": int((c.metrics or {}).get("examples", 0)) for c in lineage
        },
        eval_scores={
            f"{s.name} round {s.round}": float(s.metrics["accuracy"])
            for s in store.stages(run_id)
            if s.metrics and isinstance(s.metrics.get("accuracy"), int | float)
        },
        run_id=run.id,
        scheme=run.scheme,
    )
    return card, chosen.adapter_path


@dataclass
class ExportedAgent:
    """An exported agent loaded back: its engine and its card."""

    engine: Engine
    card: AgentCard
    path: Path

    def ask(self, question: str, **params: Any) -> str:
        """One user question answered with the card's system prompt."""
        messages = []
        if self.card.system_prompt:
            messages.append({"role": "system", "content": self.card.system_prompt})
        messages.append({"role": "user", "content": question})
        params.setdefault("max_tokens", 256)
        if self.card.tools:
            params.setdefault("tools", self.card.tools)
        return self.engine.chat(messages, **params)


def load_agent(path: str | Path, **engine_options: Any) -> ExportedAgent:
    """Load an export directory as an in-process engine plus its agent card."""
    path = Path(path)
    card = AgentCard.read(path)
    engine = load_engine(str(path), **engine_options)
    return ExportedAgent(engine=engine, card=card, path=path)

"""Export a trained student as a small agent: merged weights, tokenizer, agent card, README.

The export directory is a plain HF model directory, so anything that loads models (transformers,
vLLM, ``load_engine(path)``) can serve it; ``agent_card.json`` says where it came from and how to
prompt it. Exports are written to a staging directory and renamed into place, so a failed export
leaves nothing half-written.

A card that lists tools (a student trained to call them) is a tool-using agent:
``load_agent(dir).run("question")`` runs the same Thought → tool call → observation loop it was
trained in (:func:`agents.episodes.agent_loop.run_agent`), with the card's system prompt, worked
examples and tools.
"""

from __future__ import annotations

import copy
import json
import logging
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from agents.models import load_engine, resolve_local_model
from agents.models.base import Engine, Message, is_adapter_dir

if TYPE_CHECKING:
    from agents.episodes.agent_loop import Episode
    from tools import Tool
    from tools.retrieval import Corpus, Document

log = logging.getLogger(__name__)

#: Modes ``ExportedAgent.run`` runs itself; an agent of another mode (``recbot``) runs in its
#: scheme's own loop (``agents chat SCHEME --model DIR``).
AGENT_MODES = ("tools", "code")

CARD_FILE = "agent_card.json"


class ExportError(RuntimeError):
    """An export that cannot be done as asked; the message says why in one sentence."""


@dataclass
class AgentCard:
    """What a user needs to know to run and trust an exported agent.

    Attributes:
        name: The agent's name (scheme, role and run).
        base_model: The model spec the adapters were trained on.
        adapter_lineage: The merged adapters, oldest first, with their training metrics.
        system_prompt: The system message the agent was trained with.
        tools: OpenAI schemas of the tools it calls (empty for a plain chat model).
        demonstrations: The worked-example turns (OpenAI messages) put before every task when
            it was trained; None when the card does not record any.
        mode: How the agent acts, as it was trained: ``"tools"`` (one JSON tool call per step)
            or ``"code"`` (one Python block per step, run in the sandbox).
        strategies: Strategy records, for schemes that learn them (the audited ones, with
            their ids, versions, situations and texts).
        retrieval: How strategies reach a prompt, as in the run: ``top_k``, ``turns`` (the last
            messages the query is made of), ``header`` (the line above them in the system
            prompt) and ``embedding`` (the model embedding them).
        training_data: Training examples per adapter.
        eval_scores: Accuracy per evaluation stage of the run.
        run_id: The run it was exported from.
        scheme: That run's scheme.
        created_at: When the card was written (UTC, ISO 8601).
        format_version: Version of the card format.
    """

    name: str
    base_model: str
    adapter_lineage: list[dict[str, Any]] = field(default_factory=list)
    system_prompt: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    demonstrations: list[dict[str, Any]] | None = None
    mode: str = "tools"
    strategies: list[dict[str, Any]] | None = None
    retrieval: dict[str, Any] | None = None
    training_data: dict[str, int] = field(default_factory=dict)
    eval_scores: dict[str, float] = field(default_factory=dict)
    run_id: str | None = None
    scheme: str | None = None
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    format_version: int = 1

    @property
    def tool_names(self) -> list[str]:
        """The names of the card's tools, in card order."""
        return [str(t.get("function", {}).get("name", "?")) for t in self.tools]

    @classmethod
    def read(cls, directory: Path) -> AgentCard:
        """Read ``agent_card.json``; fields this version does not know are ignored (logged)."""
        path = Path(directory) / CARD_FILE
        if not path.exists():
            raise ExportError(f"{directory} is not an exported agent (no {CARD_FILE})")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ExportError(f"{path} is not valid JSON ({err.msg})") from None
        if not isinstance(data, dict):
            raise ExportError(f"{path} does not hold a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            log.info("%s: ignoring unknown card fields %s", path, ", ".join(unknown))
        missing = sorted(k for k in ("name", "base_model") if k not in data)
        if missing:
            raise ExportError(f"{path} lacks {', '.join(missing)}")
        return cls(**{k: v for k, v in data.items() if k in known})

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
    tools = ", ".join(card.tool_names) or "none"
    scores = ", ".join(f"{k} = {v:.3f}" for k, v in card.eval_scores.items()) or "not evaluated"
    data = ", ".join(f"{k}: {v}" for k, v in card.training_data.items()) or "none recorded"
    stored = "System prompt, worked examples and tool schemas"
    if not card.demonstrations:
        stored = "System prompt and tool schemas"
    if card.mode not in AGENT_MODES:
        usage = f"""An agent of the `{card.scheme}` scheme ({card.mode}): it runs in that scheme's
own loop, not in `run()`. Talk to it in the terminal (commands from stdin work too):

```bash
agents chat {card.scheme} --model {directory}
```"""
    elif card.tools:
        usage = _tool_usage(card, directory)
    else:
        usage = f"""```python
from agents.export import load_agent

agent = load_agent("{directory}")
print(agent.ask("What is 12 * 7?"))
```

or as any other model spec: `agents eval --model {directory} ...`."""
    return f"""# {card.name}

A small agent exported from {card.scheme or "a fine-tuning"} run `{card.run_id or "-"}`.
Base model: `{card.base_model}`; LoRA adapters merged into the weights (safetensors).

## Load it

{usage}

## Provenance
Adapter lineage:
{lineage}

Training data: {data}. Evaluation: {scores}. Tools: {tools}.
{stored} are in `{CARD_FILE}`.
"""


def _tool_usage(card: AgentCard, directory: Path) -> str:
    """The README's "Load it" text for a tool-using agent: a ``run`` snippet and the tools."""
    listed = []
    for schema in card.tools:
        function = schema.get("function", {})
        description = str(function.get("description") or "").strip().split("\n", 1)[0]
        listed.append(f"- `{function.get('name', '?')}`: {description or 'no description'}")
    demos = card.demonstrations or []
    turns = sum(m.get("role") == "user" for m in demos)
    shown = (
        f"{turns} worked example{'s' if turns != 1 else ''} ({len(demos)} turns) before every task"
        if demos
        else "no worked examples"
    )
    notes = ["`python_exec` runs the agent's code in the isolated sandbox, a session per task."]
    if "retrieve" in card.tool_names:
        notes.append(
            "`retrieve` searches `corpus=` if you pass one to `run`, else the Wikipedia-summaries "
            "corpus of the workspace (`$AGENTS_WORKSPACE`, default `./workspace`); the first use "
            "in a workspace embeds its 10,033 summaries (about 9 minutes on 2 CPU cores)."
        )
    notes.append("`agent.ask(question)` gives a single reply instead, without running any tool.")
    paragraphs = "\n\n".join(notes)
    if card.mode == "code":
        return f"""A code agent: each step it writes a Thought and one Python block, which runs in
the isolated sandbox (a session per task); what the code prints is the next observation. Inside
the code it calls `retrieve(query)` (searches the corpus through the sandbox's host channel; no
network) and `final_answer(answer)` (ends the task). `run` runs that loop with the system prompt
and {shown} it was trained with:

```python
from agents.export import load_agent

agent = load_agent("{directory}")
episode = agent.run("What is 48271 * 9173?")
print(episode.answer)  # the final answer; episode.messages holds every step
```

{paragraphs}"""
    return f"""A tool-using agent: each step it writes a Thought and calls one tool, then sees the
result. `run` runs that loop with the system prompt, {shown} and the tools it was trained with:

```python
from agents.export import load_agent

agent = load_agent("{directory}")
episode = agent.run("A shop sells 12 boxes of 18 pens. How many pens is that?")
print(episode.answer)  # the final answer; episode.messages holds every step
```

Tools:
{chr(10).join(listed)}

{paragraphs}"""


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
    if adapter is not None and not is_adapter_dir(adapter):
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


def card_for_run(
    store: Any, run_id: str, *, role: str | None = None, round: int | None = None
) -> tuple[AgentCard, str | None]:
    """The agent card and adapter path for a run's trained checkpoint (latest by default).

    Args:
        store: An ``agents.store.Store``.
        run_id: The run to export from.
        role: Which role's adapter (default: the first of the scheme's export roles that has
            one, else the most recent checkpoint's role).
        round: Which round (default: the latest of that role).
    """
    from agents.jobs import scheme_named

    run = store.get_run(run_id)
    scheme = scheme_named(run.scheme)
    if scheme is not None and scheme.export_roles == () and scheme.export_card is not None:
        # the base weights and what the run learnt
        return AgentCard(**scheme.export_card(store, run)), None
    if scheme is not None and scheme.export_roles == ():
        raise ExportError(
            f"run {run_id} is a {run.scheme} run, which trains no weights; there is no model "
            "to export"
        )
    if role is None and scheme is not None and scheme.export_roles is not None:
        trained = {c.role for c in store.checkpoints(run_id)}
        role = next((r for r in scheme.export_roles if r in trained), None)
        if role is None:
            raise ExportError(
                f"run {run_id} has trained none of the roles a {run.scheme} run exports "
                f"({', '.join(scheme.export_roles)}); roles with adapters: "
                f"{', '.join(sorted(trained)) or 'none'}; pick one with --role"
            )
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
                "metrics": {
                    k: v
                    for k, v in (c.metrics or {}).items()
                    if k not in ("tools", "demonstrations")
                },
            }
            for c in lineage
        ],
        system_prompt=metrics.get("system_prompt") or config.get("system_prompt"),
        tools=metrics.get("tools") or [],
        demonstrations=(
            copy.deepcopy(metrics["demonstrations"])
            if metrics.get("demonstrations")
            else copy.deepcopy([dict(m) for m in scheme.demonstrations()])
            if scheme is not None and scheme.demonstrations
            else None
        ),
        mode=str(metrics.get("agent_mode") or "tools"),
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
    """An exported agent loaded back: its engine and its card.

    ``ask`` gets one reply; ``run`` runs the tool loop (for a card with tools).
    """

    engine: Engine
    card: AgentCard
    path: Path
    _corpus: Corpus | None = field(default=None, init=False, repr=False)
    _embedder: Any = field(default=None, init=False, repr=False)
    _strategy_vectors: Any = field(default=None, init=False, repr=False)

    def tools(self) -> list[Tool]:
        """The card's tools as callable :class:`tools.Tool` objects (matched by name).

        ``final_answer`` is added when the card lacks it: it is how an episode ends.

        Raises:
            ExportError: The card lists no tools, or tools this version does not have.
        """
        from tools import DEFAULT_TOOLS, FINAL_ANSWER

        if not self.card.tools:
            raise ExportError(
                f"{self.card.name} was not trained with tools; use ask() for a plain reply"
            )
        known = {t.name: t for t in DEFAULT_TOOLS}
        unknown = [name for name in self.card.tool_names if name not in known]
        if unknown:
            raise ExportError(
                f"the agent card lists unknown tools: {', '.join(unknown)} "
                f"(known: {', '.join(known)})"
            )
        chosen = [known[name] for name in self.card.tool_names]
        if FINAL_ANSWER not in self.card.tool_names:  # the loop's only way to end an episode
            chosen.append(known[FINAL_ANSWER])
        return chosen

    def corpus(self) -> Corpus:
        """The default retrieval corpus, opened on first use and then kept.

        It lives under the workspace (``Workspace.resolve()``: ``$AGENTS_WORKSPACE`` or
        ``./workspace``); the first use there embeds the 10,033 Wikipedia summaries, which
        takes minutes (about 9 on 2 CPU cores); later uses open it in seconds.
        """
        if self._corpus is None:
            from agents.store import Workspace
            from tools.retrieval import build_default_corpus

            self._corpus = build_default_corpus(Workspace.resolve().chroma_dir)
        return self._corpus

    @overload
    def run(
        self,
        question: str,
        *,
        corpus: Corpus | None = ...,
        max_steps: int = ...,
        candidates: int = ...,
        **settings: Any,
    ) -> Episode: ...

    @overload
    def run(
        self,
        question: Sequence[str],
        *,
        corpus: Corpus | None = ...,
        max_steps: int = ...,
        candidates: int = ...,
        **settings: Any,
    ) -> list[Episode]: ...

    def run(
        self,
        question: str | Sequence[str],
        *,
        corpus: Corpus | None = None,
        max_steps: int = 5,
        candidates: int = 1,
        **settings: Any,
    ) -> Episode | list[Episode]:
        """Run the agent's tool loop on a question (or a batch, run in lockstep).

        Each step the model writes a Thought and calls one of the card's tools; ``python_exec``
        runs in a sandbox session per episode, ``retrieve`` searches ``corpus``; the episode
        ends at ``final_answer`` or after ``max_steps`` replies. An agent trained in code mode
        (``card.mode == "code"``) writes a Python block instead, run in its sandbox session,
        where ``retrieve(...)`` and ``final_answer(...)`` are callable. The card's system prompt
        and worked examples open every episode, as in training.

        Args:
            question: One task, or a list of tasks.
            corpus: What ``retrieve`` searches. Default: the Wikipedia-summaries corpus of
                the workspace (see :meth:`corpus`), opened when the model first calls
                ``retrieve``; the first use in a workspace embeds it, which takes minutes.
            max_steps: Replies per episode.
            candidates: Candidate actions per step; above 1, self-consistent action generation.
            **settings: Other :class:`agents.episodes.agent_loop.LoopSettings` fields
                (``temperature``, ``max_tokens``, ``sandbox_timeout``, ``seed``...).

        Returns:
            The finished :class:`agents.episodes.agent_loop.Episode` (``.answer``, ``.status``,
            ``.messages``), or a list of them for a list of questions.

        Raises:
            ExportError: The card has no tools or unknown ones, or a setting is unknown.
        """
        from agents.episodes.agent_loop import AGENT_SYSTEM_PROMPT, LoopSettings, run_agent
        from agents.episodes.code_agent import CODE_SYSTEM_PROMPT, run_code_agent

        if self.card.mode not in AGENT_MODES:
            raise ExportError(
                f"{self.card.name} is a {self.card.mode} agent, which runs in its scheme's own "
                f"loop: agents chat {self.card.scheme} --model {self.path}"
            )
        tools = self.tools()
        allowed = {f.name for f in fields(LoopSettings)} - {"max_steps", "candidates"}
        unknown = sorted(set(settings) - allowed)
        if unknown:
            known = ", ".join(sorted(allowed))
            raise ExportError(f"unknown agent settings: {', '.join(unknown)} (known: {known})")
        loop = LoopSettings(max_steps=max_steps, candidates=candidates, **settings)
        if corpus is None and any(t.name == "retrieve" for t in tools):
            corpus = _DefaultCorpus(self)  # type: ignore[assignment]
        single = isinstance(question, str)
        questions = [question] if isinstance(question, str) else list(question)
        if self.card.mode == "code":
            episodes = run_code_agent(
                self.engine,
                questions,
                settings=loop,
                corpus=corpus,
                system_prompt=self.card.system_prompt or CODE_SYSTEM_PROMPT,
                demonstrations=self.card.demonstrations or [],
            )
        else:
            episodes = run_agent(
                self.engine,
                questions,
                settings=loop,
                tools=tools,
                corpus=corpus,
                system_prompt=self.card.system_prompt or AGENT_SYSTEM_PROMPT,
                demonstrations=self.card.demonstrations or [],
            )
        return episodes[0] if single else episodes

    def strategies_for(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        """The card's strategies nearest to a conversation, best first, as the run retrieved
        them: the last ``turns`` user and assistant messages embedded and compared by cosine with
        each strategy's situation and text; the top ``top_k``. Empty for a card without any."""
        if not self.card.strategies:
            return []
        import numpy as np

        settings = self.card.retrieval or {}
        said = [
            str(m.get("content") or "")
            for m in messages
            if m["role"] in ("user", "assistant") and not m.get("tool_calls") and m.get("content")
        ]
        query = "\n".join(said[-int(settings.get("turns", 3)) :])[-1500:]
        if self._strategy_vectors is None:
            documents = [f"{s['situation']}\n{s['text']}" for s in self.card.strategies]
            self._strategy_vectors = _unit_rows(self._embedding()(documents))
        scores = self._strategy_vectors @ _unit_rows(self._embedding()([query]))[0]
        order = np.argsort(-scores, kind="stable")[: int(settings.get("top_k", 3))]
        return [self.card.strategies[int(n)] for n in order]

    def _embedding(self) -> Any:
        if self._embedder is None:
            from tools.retrieval import MiniLMEmbedding

            model = (self.card.retrieval or {}).get("embedding")
            self._embedder = MiniLMEmbedding(model=model) if model else MiniLMEmbedding()
        return self._embedder

    def prompt(self, messages: Sequence[Message]) -> tuple[list[Message], list[int]]:
        """``messages`` as the model is asked them: the card's system prompt first when they
        have none, with the strategies retrieved for them below it, as in the run; and the ids
        of those strategies."""
        messages = [dict(m) for m in messages]
        if self.card.system_prompt and (not messages or messages[0]["role"] != "system"):
            messages.insert(0, {"role": "system", "content": self.card.system_prompt})
        chosen = self.strategies_for(messages)
        if chosen and messages and messages[0]["role"] == "system":
            header = (self.card.retrieval or {}).get("header", "Strategies:")
            lines = "\n".join(f"- {s['text']}" for s in chosen)
            messages[0]["content"] = f"{messages[0]['content']}\n\n{header}\n{lines}"
        return messages, [int(s["id"]) for s in chosen]

    def ask(self, question: str, **params: Any) -> str:
        """One user question answered with the card's system prompt (and, for an agent that
        learnt strategies, the ones retrieved for the question)."""
        messages, _ = self.prompt([{"role": "user", "content": question}])
        params.setdefault("max_tokens", 256)
        if self.card.tools:
            params.setdefault("tools", self.card.tools)
        return self.engine.chat(messages, **params)


def _unit_rows(vectors: Any) -> Any:
    import numpy as np

    array = np.asarray(vectors, dtype=np.float64)
    return array / np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)


@dataclass
class _DefaultCorpus:
    """The agent's default corpus, opened at the first ``retrieve`` call, not before: a run
    whose model never looks anything up does not embed the Wikipedia summaries."""

    agent: ExportedAgent

    def search(self, query: str, k: int = 3) -> list[Document]:
        return self.agent.corpus().search(query, k)


def load_agent(path: str | Path, **engine_options: Any) -> ExportedAgent:
    """Load an export directory as an in-process engine plus its agent card."""
    path = Path(path)
    card = AgentCard.read(path)
    engine = load_engine(str(path), **engine_options)
    return ExportedAgent(engine=engine, card=card, path=path)

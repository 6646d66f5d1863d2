"""What the customer-service domains share: the records, the episode state, common tools, loading.

``tools.service.retail`` and ``tools.service.airline`` build on this module, and
``tools.service.registry`` maps domain names to them; nothing here imports a domain.

The data ships as plain files inside the ``inspect-evals`` PyPI package
(``inspect_evals/tau2/data/domains/<name>/``): ``policy.txt``, ``db.json.gz``, ``tasks.json`` and
``split_tasks.json``. Only the files are read; the package's Python modules are never imported
(they need ``inspect_ai``), and locating the directory with ``importlib.util.find_spec`` does not
run the package's ``__init__``.

A ``ServiceDomain`` bundles the policy the agent follows, the tools it may call, the tasks (one
simulated customer each, with the gold actions a correct agent takes) and the pristine database.
Each episode works on its own copy of the database, handed to the tools as the ``DomainState``
in their ``ToolContext``, so a write in one episode never leaks into the next.
"""

from __future__ import annotations

import ast
import gzip
import importlib.util
import json
import logging
import operator
import pickle
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from tools.base import Tool, ToolContext, ToolError, call_tool, tool

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install --no-deps inspect-evals==0.26.0"
SPLITS = ("train", "test")


class DomainUnavailable(RuntimeError):
    """Raised when a domain's data files cannot be found or read."""


@dataclass(frozen=True)
class GoldAction:
    """One tool call a correct agent makes for a task.

    τ² gold trajectories include calls that fail on purpose (a wrong email the customer gave, a
    refund to a payment method the policy refuses); such a call leaves the database unchanged, so
    an agent is not expected to make it succeed.

    Attributes:
        name: The tool's name.
        arguments: The call's arguments, as the tool receives them.
        succeeds: Whether the call succeeds when the task's gold actions are replayed in order
            on a fresh database.
    """

    name: str
    arguments: dict[str, Any]
    succeeds: bool = True


@dataclass(frozen=True)
class ServiceTask:
    """One simulated customer with a request, and what a correct agent does about it.

    Attributes:
        id: ``"<domain>/<τ² task id>"``, e.g. ``"retail/12"``.
        domain: ``"retail"`` or ``"airline"``.
        split: ``"train"`` or ``"test"``.
        reason: Why the customer calls.
        known_info: What the customer knows (name, zip code, order ids...).
        unknown_info: What the customer does not know.
        instructions: How the customer behaves during the conversation.
        persona: An optional personality description.
        actions: The gold tool calls, reads included, in the order a correct agent makes them.
        communicate_info: Facts the agent must tell the customer.
    """

    id: str
    domain: str
    split: str
    reason: str
    known_info: str
    unknown_info: str
    instructions: str
    persona: str | None
    actions: tuple[GoldAction, ...]
    communicate_info: tuple[str, ...]

    def customer_brief(self) -> str:
        """The text a customer simulator plays from: who it is, why it calls, how it behaves."""
        parts = [f"You are a customer contacting the {self.domain} customer service by chat."]
        if self.persona:
            parts.append(f"Your personality: {self.persona.strip()}")
        parts.append(f"Why you are contacting them: {self.reason.strip()}")
        if self.known_info.strip():
            parts.append(f"What you know: {self.known_info.strip()}")
        if self.unknown_info.strip():
            parts.append(f"What you do not know: {self.unknown_info.strip()}")
        behaviour = self.instructions.strip()
        if behaviour and behaviour != ".":  # some tasks carry a lone "." here
            parts.append(f"How you behave: {behaviour}")
        parts.append(
            "Reveal information only when the agent asks for it, never invent details you were "
            "not given, and end the chat once your request is handled or clearly cannot be."
        )
        return "\n\n".join(parts)

    def summary(self) -> str:
        """One line for reports and logs: the id and the start of the reason for calling."""
        reason = " ".join(self.reason.split())
        return f"{self.id}: {reason[:100]}{'...' if len(reason) > 100 else ''}"


@dataclass
class DomainState:
    """The database the tools of one episode read and change.

    Attributes:
        domain: The domain's name.
        db: The episode's database (``users``, ``orders``... keyed by id). Each episode gets its
            own copy, so its writes stay private.
    """

    domain: str
    db: dict[str, Any]


@dataclass
class ServiceDomain:
    """A customer-service world: policy, tools, tasks and the pristine database.

    Attributes:
        name: ``"retail"`` or ``"airline"``.
        policy: The policy text the agent must follow.
        tools: The tools the agent may call.
        write_tools: Names of the tools that change the database.
        auth_tools: Names of the tools whose success identifies the customer.
        tasks: Every task that belongs to the train or test split.
    """

    name: str
    policy: str
    tools: list[Tool]
    write_tools: frozenset[str]
    auth_tools: frozenset[str]
    tasks: list[ServiceTask]
    # The database pickled once: unpickling is the cheapest deep copy of a nested dict.
    _frozen_db: bytes = field(default=b"", repr=False, compare=False)
    _pristine: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def split(self, name: str) -> list[ServiceTask]:
        """The tasks of one split (``"train"`` or ``"test"``), in τ² id order.

        Raises:
            ValueError: For a split name other than ``train`` or ``test``.
        """
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; choose one of: {', '.join(SPLITS)}")
        return [t for t in self.tasks if t.split == name]

    def task(self, task_id: str) -> ServiceTask:
        """The task with id ``task_id`` (``"retail/12"``; the bare ``"12"`` also works).

        Raises:
            KeyError: If there is no such task.
        """
        wanted = task_id if "/" in task_id else f"{self.name}/{task_id}"
        for candidate in self.tasks:
            if candidate.id == wanted:
                return candidate
        raise KeyError(f"no task {task_id!r} in the {self.name} domain")

    def fresh_db(self) -> dict[str, Any]:
        """A private deep copy of the pristine database, free to change."""
        return pickle.loads(self._frozen_db)

    def pristine_db(self) -> dict[str, Any]:
        """The pristine database itself, shared: read it, never change it."""
        return self._pristine

    def tool_context(self) -> ToolContext:
        """A context for one episode, holding a ``DomainState`` with a fresh database copy."""
        return ToolContext([DomainState(self.name, self.fresh_db())])

    def schemas(self) -> list[dict[str, Any]]:
        """OpenAI-format schemas of the domain's tools."""
        return [t.schema for t in self.tools]


# --- tools both domains share ------------------------------------------------------------


def db_of(context: ToolContext) -> dict[str, Any]:
    """The episode database a tool works on.

    Raises:
        ToolError: If the context holds no ``DomainState`` (the episode was set up wrongly).
    """
    return context.require(DomainState).db


_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_UNARY: dict[type[ast.unaryop], Callable[[float], float]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
_MAX_EXPRESSION = 500  # characters; prices and totals never need more


def _evaluate(node: ast.AST) -> float:
    """Evaluate a parsed arithmetic expression; anything but numbers and + - * / is refused."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ToolError("Division by zero.")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))
    raise ToolError("Only numbers, + - * / and parentheses are allowed.")


@tool
def calculate(expression: str) -> str:
    """Compute an arithmetic expression with numbers, + - * / and parentheses.

    Args:
        expression: The expression, e.g. '(120.5 + 30) * 2'.
    """
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError(f"The expression is longer than {_MAX_EXPRESSION} characters.")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as exc:
        raise ToolError("The expression is not valid arithmetic.") from exc
    # No powers are allowed, so values stay small; the depth of nesting is bounded by the length.
    return str(round(_evaluate(tree.body), 2))


@tool
def transfer_to_human_agents(summary: str) -> str:
    """Hand the customer over to a human agent, when the request is outside your tools' scope.

    Args:
        summary: A short summary of the customer's issue.
    """
    if not summary.strip():
        raise ToolError("Give a summary of the customer's issue for the human agent.")
    return "Transfer successful"


# --- loading ---------------------------------------------------------------------------------


def package_data_dir() -> Path:
    """The ``domains`` directory inside the installed ``inspect-evals`` package.

    Raises:
        DomainUnavailable: If the package is not installed.
    """
    # find_spec on a top-level name locates the package without executing its __init__.
    spec = importlib.util.find_spec("inspect_evals")
    if spec is None or not spec.submodule_search_locations:
        raise DomainUnavailable(
            f"The customer-service data is missing; install it with `{INSTALL_HINT}`."
        )
    return Path(next(iter(spec.submodule_search_locations))) / "tau2" / "data" / "domains"


def _read_json(folder: Path, name: str) -> Any:
    path = folder / name
    if not path.exists() and name.endswith(".gz"):
        path = folder / name.removesuffix(".gz")  # hand-written fixtures may skip compression
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return json.load(handle)


def _id_order(task_id: str) -> tuple[int, int | str]:
    return (0, int(task_id)) if task_id.isdigit() else (1, task_id)


def _parse_task(domain: str, raw: dict[str, Any], split: str) -> ServiceTask:
    scenario = raw.get("user_scenario") or {}
    instructions = scenario.get("instructions") or {}
    if isinstance(instructions, str):  # older τ² files keep the instructions as one string
        instructions = {"task_instructions": instructions}
    criteria = raw.get("evaluation_criteria") or {}
    actions = tuple(
        GoldAction(name=a["name"], arguments=dict(a.get("arguments") or {}))
        for a in criteria.get("actions") or []
    )
    return ServiceTask(
        id=f"{domain}/{raw['id']}",
        domain=domain,
        split=split,
        reason=instructions.get("reason_for_call") or "",
        known_info=instructions.get("known_info") or "",
        unknown_info=instructions.get("unknown_info") or "",
        instructions=instructions.get("task_instructions") or "",
        persona=scenario.get("persona"),
        actions=actions,
        communicate_info=tuple(str(c) for c in criteria.get("communicate_info") or []),
    )


def _replayed(
    task: ServiceTask, tools: list[Tool], write_tools: frozenset[str], domain: ServiceDomain
) -> ServiceTask:
    """``task`` with each gold action marked by whether it succeeds when replayed in order."""
    if not task.actions:
        return task
    # Reads run on the shared pristine database; a private copy is made at the first write.
    state = DomainState(domain.name, domain.pristine_db())
    context = ToolContext([state])
    copied = False
    actions = []
    for n, action in enumerate(task.actions):
        if action.name in write_tools and not copied:
            state.db, copied = domain.fresh_db(), True
        call = {"id": str(n), "type": "function", "function": asdict(action)}
        del call["function"]["succeeds"]
        answer = call_tool(call, tools, context)["content"]
        actions.append(replace(action, succeeds=not answer.startswith("Error")))
    return replace(task, actions=tuple(actions))


def read_domain(
    name: str,
    folder: Path,
    tools: list[Tool],
    write_tools: frozenset[str],
    auth_tools: frozenset[str],
) -> ServiceDomain:
    """Read one domain's files from ``folder`` and mark each gold action by whether it succeeds.

    Args:
        name: The domain's name, ``"retail"`` or ``"airline"``.
        folder: The directory holding ``policy.txt``, ``db.json.gz`` (or ``db.json``),
            ``tasks.json`` and ``split_tasks.json``.
        tools: The tools the domain's agent may call.
        write_tools: Names of the tools that change the database.
        auth_tools: Names of the tools whose success identifies the customer.

    Raises:
        DomainUnavailable: If the files are missing or unreadable.
    """
    if not (folder / "tasks.json").is_file():
        raise DomainUnavailable(
            f"The {name} customer-service data is missing from {folder}; "
            f"install it with `{INSTALL_HINT}`."
        )
    try:
        policy = (folder / "policy.txt").read_text(encoding="utf-8")
        db = _read_json(folder, "db.json.gz")
        raw_tasks = _read_json(folder, "tasks.json")
        splits = _read_json(folder, "split_tasks.json")
    except (OSError, ValueError) as exc:
        raise DomainUnavailable(
            f"The {name} customer-service data in {folder} cannot be read ({exc}); "
            f"reinstall it with `{INSTALL_HINT}`."
        ) from exc
    split_of = {str(i): s for s in SPLITS for i in splits.get(s, [])}
    tasks = [
        _parse_task(name, raw, split_of[str(raw["id"])])
        for raw in sorted(raw_tasks, key=lambda r: _id_order(str(r["id"])))
        if str(raw["id"]) in split_of
    ]
    domain = ServiceDomain(
        name=name,
        policy=policy,
        tools=tools,
        write_tools=write_tools,
        auth_tools=auth_tools,
        tasks=tasks,
        _frozen_db=pickle.dumps(db, protocol=pickle.HIGHEST_PROTOCOL),
        _pristine=db,
    )
    domain.tasks = [_replayed(t, tools, write_tools, domain) for t in tasks]
    logger.info("loaded the %s domain: %d tasks from %s", name, len(tasks), folder)
    return domain

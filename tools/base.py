"""The ``@tool`` decorator, the per-episode ``ToolContext`` and ``call_tool``.

A tool is a plain typed function. Its signature and Google-style docstring give the OpenAI tool
schema: the summary becomes the description, the ``Args:`` section the parameter descriptions, type
hints the JSON types, and parameters with defaults are optional. A parameter annotated
``ToolContext`` is not part of the schema: ``call_tool`` injects the episode's context there, which
is how a tool reaches the episode's resources (a sandbox session, a corpus, a database) without
globals. The context finds resources by type, so this module needs to know none of them.

``call_tool`` never raises for anything a model can get wrong (bad JSON, an unknown tool, a missing
or mistyped argument, a tool that fails): each becomes an ``Error: ...`` observation, so the agent
sees what went wrong and can try again.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin

logger = logging.getLogger(__name__)

_JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}
_ARGS_HEADERS = ("Args:", "Arguments:", "Parameters:")
_SECTION_RE = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")
_ARG_LINE_RE = re.compile(r"^\s*(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class ToolError(Exception):
    """Raised by a tool for a failure the agent should read as an observation."""


R = TypeVar("R")
Resources = Iterable[object] | Mapping[type, object]


def _keyed(resources: Resources) -> list[tuple[type, object]]:
    """``(key, resource)`` pairs: a mapping's own keys, else each resource's class."""
    if isinstance(resources, Mapping):
        pairs = list(resources.items())
        for key, _ in pairs:
            if not isinstance(key, type):
                raise TypeError(f"resource keys must be types, got {key!r}")
        return pairs
    return [(type(resource), resource) for resource in resources]


class ToolContext:
    """The resources the tools of one episode share, each found by its type.

    A tool asks for what it needs by class, ``context.get(Corpus)`` or ``context.require(Corpus)``,
    so the context holds any kind of resource without depending on the modules defining them.
    A resource is filed under its own class; pass a mapping ``{Corpus: stand_in}`` to file an
    object under a type it does not inherit from (a test double, say). A lookup takes the resource
    filed under exactly that type, else the first one that is an instance of it.

    Args:
        resources: What the context lends but does not close, such as a corpus shared by every
            episode.
        owned: What the context closes in ``close()``, such as the sandbox session opened for
            this episode; looked up the same way.

    Raises:
        ValueError: If two resources are filed under the same type.
        TypeError: If a mapping key is not a type, or an owned resource cannot be closed.
    """

    def __init__(self, resources: Resources = (), *, owned: Resources = ()) -> None:
        self._resources: dict[type, object] = {}
        owned_pairs = _keyed(owned)
        for key, resource in [*_keyed(resources), *owned_pairs]:
            if key in self._resources:
                raise ValueError(f"two resources of type {key.__name__} in one tool context")
            self._resources[key] = resource
        for key, resource in owned_pairs:
            if not callable(getattr(resource, "close", None)):
                raise TypeError(f"owned resource {key.__name__} has no close() method")
        self._owned = [key for key, _ in owned_pairs]

    def get(self, kind: type[R]) -> R | None:
        """The resource of type ``kind``, or None when the episode has none."""
        if kind in self._resources:
            return cast(R, self._resources[kind])
        return next((r for r in self._resources.values() if isinstance(r, kind)), None)

    def require(self, kind: type[R]) -> R:
        """The resource of type ``kind``.

        Raises:
            ToolError: If the episode has none; the agent reads the message as an observation.
        """
        resource = self.get(kind)
        if resource is None:
            raise ToolError(f"no {kind.__name__} is available in this episode")
        return resource

    def close(self) -> None:
        """Close the owned resources, newest first, and forget them; safe to call twice.

        Every owned resource is closed even when one of them fails; the first failure is then
        raised.
        """
        failure: BaseException | None = None
        while self._owned:
            resource = self._resources.pop(self._owned.pop())
            try:
                resource.close()  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - the rest must still be closed
                failure = failure or exc
        if failure is not None:
            raise failure

    def __enter__(self) -> ToolContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kinds = ", ".join(key.__name__ for key in self._resources)
        return f"ToolContext({kinds})"


@dataclass
class Tool:
    """A function agents can call, with its OpenAI schema.

    Attributes:
        name: The name models call it by.
        description: What it does, shown to the model.
        parameters: JSON schema (``type: object``) of the model-supplied arguments.
        fn: The function itself.
        context_param: Name of the parameter that receives the ``ToolContext``, if any.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    fn: Callable[..., Any]
    context_param: str | None = None

    @property
    def schema(self) -> dict[str, Any]:
        """The tool in OpenAI format: ``{"type": "function", "function": {...}}``."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def _is_context(annotation: Any) -> bool:
    if annotation is ToolContext or annotation == "ToolContext":
        return True
    return any(_is_context(a) for a in get_args(annotation))


def _strip_none(annotation: Any) -> tuple[Any, bool]:
    """``X | None`` → ``(X, True)``; anything else → ``(annotation, False)``."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) < len(get_args(annotation)):
            return (args[0] if len(args) == 1 else Union[tuple(args)]), True  # noqa: UP007
    return annotation, False


def json_schema_for(annotation: Any) -> dict[str, Any]:
    """JSON schema of one type hint (str, int, float, bool, list[...], dict, Literal, X | None).

    Raises:
        TypeError: For a type with no JSON counterpart.
    """
    annotation, nullable = _strip_none(annotation)
    origin = get_origin(annotation)
    if annotation in _JSON_TYPES:
        schema: dict[str, Any] = {"type": _JSON_TYPES[annotation]}
    elif origin is Literal:
        values = list(get_args(annotation))
        kinds = {_JSON_TYPES[type(v)] for v in values}
        schema = {"type": kinds.pop() if len(kinds) == 1 else sorted(kinds), "enum": values}
    elif annotation is list or origin in (list, Sequence, tuple):
        schema = {"type": "array"}
        item_args = [a for a in get_args(annotation) if a is not Ellipsis]
        if item_args:
            schema["items"] = json_schema_for(item_args[0])
    elif annotation is dict or origin is dict:
        schema = {"type": "object"}
    elif annotation is Any:
        schema = {}
    else:
        raise TypeError(f"no JSON schema for type hint {annotation!r}")
    if nullable and "type" in schema:
        kind = schema["type"]
        schema["type"] = [*(kind if isinstance(kind, list) else [kind]), "null"]
    return schema


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """Split a Google-style docstring into (description, {arg name: description}).

    The description is everything before the first section header (``Args:``, ``Returns:``...).
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    args: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    arg_indent = 0
    for line in lines:
        stripped = line.strip()
        if _SECTION_RE.match(line) and not line.startswith(" "):
            section = stripped
            current = None
            continue
        if section is None:
            summary.append(line)
        elif section in _ARGS_HEADERS and stripped:
            indent = len(line) - len(line.lstrip())
            match = _ARG_LINE_RE.match(line)
            if match and (current is None or indent <= arg_indent):
                current, arg_indent = match.group(1).lstrip("*"), indent
                args[current] = match.group(2).strip()
            elif current is not None:  # continuation line of the current argument
                args[current] = f"{args[current]} {stripped}".strip()
    return "\n".join(summary).strip(), args


def tool(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Turn a typed, documented function into a ``Tool``.

    Usable bare (``@tool``) or with a name override (``@tool(name="search")``).

    Args:
        fn: The function; every parameter except a ``ToolContext`` needs a type hint.
        name: The tool name; the function name by default.

    Raises:
        TypeError: If a parameter lacks a type hint or has one with no JSON schema.
    """

    def build(func: Callable[..., Any]) -> Tool:
        hints = typing.get_type_hints(func)
        description, arg_docs = parse_docstring(func.__doc__)
        properties: dict[str, Any] = {}
        required: list[str] = []
        context_param = None
        for pname, param in inspect.signature(func).parameters.items():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {func.__name__}: *args/**kwargs cannot be described")
            if pname not in hints:
                raise TypeError(f"tool {func.__name__}: parameter {pname!r} has no type hint")
            if _is_context(hints[pname]):
                context_param = pname
                continue
            prop = json_schema_for(hints[pname])
            if pname in arg_docs:
                prop["description"] = arg_docs[pname]
            if param.default is inspect.Parameter.empty:
                required.append(pname)
            else:
                prop["default"] = param.default
            properties[pname] = prop
        parameters = {"type": "object", "properties": properties, "required": required}
        return Tool(
            name=name or func.__name__,
            description=description,
            parameters=parameters,
            fn=func,
            context_param=context_param,
        )

    return build(fn) if fn is not None else build


def _type_error(value: Any, schema: dict[str, Any], path: str) -> str | None:
    """Why ``value`` does not match ``schema`` (the subset ``json_schema_for`` emits), or None."""
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} must be one of {schema['enum']}, got {value!r}"
    kinds = schema.get("type")
    if kinds is None:
        return None
    kinds = kinds if isinstance(kinds, list) else [kinds]
    checks = {
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
        "null": lambda v: v is None,
    }
    if not any(checks[k](value) for k in kinds):
        return f"{path} must be of type {' or '.join(kinds)}, got {type(value).__name__}"
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            if problem := _type_error(item, schema["items"], f"{path}[{i}]"):
                return problem
    return None


def validate_arguments(tool_: Tool, arguments: dict[str, Any]) -> str | None:
    """The first problem with ``arguments`` for ``tool_``, or None when they are valid."""
    props = tool_.parameters["properties"]
    for pname in tool_.parameters["required"]:
        if pname not in arguments:
            return f"missing required argument {pname!r}"
    for pname, value in arguments.items():
        if pname not in props:
            return f"unexpected argument {pname!r} (expected: {', '.join(props) or 'none'})"
        if problem := _type_error(value, props[pname], f"argument {pname!r}"):
            return problem
    return None


def format_result(result: Any) -> str:
    """A tool's return value as observation text (strings as they are, the rest as JSON)."""
    if isinstance(result, str):
        return result
    try:
        return json.dumps(result, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(result)


def tool_message(tool_call_id: str, name: str, content: str) -> dict[str, Any]:
    """A tool result in OpenAI message format."""
    return {"role": "tool", "tool_call_id": tool_call_id, "name": name, "content": content}


def call_tool(
    tool_call: dict[str, Any],
    tools: Sequence[Tool],
    context: ToolContext | None = None,
) -> dict[str, Any]:
    """Run one OpenAI-format tool call and return the tool message answering it.

    Args:
        tool_call: ``{"id", "type": "function", "function": {"name", "arguments"}}``; the
            arguments may be a JSON string (as models emit them) or an already parsed dict.
        tools: The tools the agent may call.
        context: The episode's context, handed to tools that take a ``ToolContext``; an empty
            one when omitted.

    Returns:
        ``{"role": "tool", "tool_call_id", "name", "content"}``. Problems (bad JSON, an unknown
        tool, invalid arguments, an exception in the tool) give content starting ``"Error: "``.
    """
    call_id = str(tool_call.get("id") or "")
    function = tool_call.get("function") or {}
    name = str(function.get("name") or "")

    def error(text: str) -> dict[str, Any]:
        logger.debug("tool call %s (%s) failed: %s", call_id, name, text)
        return tool_message(call_id, name, f"Error: {text}")

    by_name = {t.name: t for t in tools}
    if name not in by_name:
        return error(f"unknown tool {name!r}; available tools: {', '.join(by_name) or 'none'}")
    tool_ = by_name[name]

    raw = function.get("arguments")
    if raw is None or raw == "":
        arguments: Any = {}
    elif isinstance(raw, str):
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as exc:
            return error(f"arguments are not valid JSON ({exc.msg} at position {exc.pos})")
    else:
        arguments = raw
    if not isinstance(arguments, dict):
        return error(f"arguments must be a JSON object, got {type(arguments).__name__}")
    if problem := validate_arguments(tool_, arguments):
        return error(f"{name}: {problem}")

    kwargs = dict(arguments)
    if tool_.context_param is not None:
        kwargs[tool_.context_param] = context if context is not None else ToolContext()
    try:
        result = tool_.fn(**kwargs)
    except ToolError as exc:
        return error(str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing tool is an observation, not a crash
        logger.debug("tool %s raised", name, exc_info=True)
        return error(f"{name} raised {type(exc).__name__}: {exc}")
    return tool_message(call_id, name, format_result(result))

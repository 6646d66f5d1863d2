"""The @tool schema builder, call_tool's observations, final_answer and python_exec."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import pytest

import sandbox
from tools import (
    DEFAULT_TOOLS,
    FINAL_ANSWER,
    ToolContext,
    ToolError,
    call_tool,
    final_answer,
    is_final,
    python_exec,
    tool,
    tool_schemas,
)


@tool
def lookup(
    city: str,
    days: int,
    threshold: float = 0.5,
    metric: bool = True,
    tags: list[str] | None = None,
    unit: Literal["celsius", "fahrenheit"] = "celsius",
) -> dict:
    """Look up the weather forecast.

    Longer explanation that still belongs to the description.

    Args:
        city: The city name.
        days (int): How many days ahead,
            counted from today.
        threshold: Rain probability cut-off.
        metric: Use metric units.
        tags: Optional labels.
        unit: Temperature unit.

    Returns:
        The forecast.
    """
    return {"city": city, "days": days, "unit": unit, "tags": tags or []}


@tool
def explode(reason: str) -> str:
    """Always fails.

    Args:
        reason: What to complain about.
    """
    raise RuntimeError(reason)


@tool
def refuse(reason: str) -> str:
    """Fails the way tools report expected problems.

    Args:
        reason: What to say.
    """
    raise ToolError(reason)


@dataclass
class User:
    """A resource of the kind a custom tool reads from its context."""

    name: str


@tool
def whoami(*, context: ToolContext) -> str:
    """Reads the episode context."""
    user = context.get(User)
    return user.name if user is not None else "nobody"


@tool
def greet(*, context: ToolContext) -> str:
    """Needs a user in the episode context."""
    return f"hello {context.require(User).name}"


TOOLS = [lookup, explode, refuse, whoami, greet, final_answer]


def make_call(name: str, arguments: object, call_id: str = "call_1") -> dict:
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


# --- schema ---------------------------------------------------------------------------------


def test_schema_types_required_and_descriptions() -> None:
    schema = lookup.schema
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "lookup"
    assert function["description"] == (
        "Look up the weather forecast.\n\nLonger explanation that still belongs to the description."
    )
    params = function["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["city", "days"]
    props = params["properties"]
    assert props["city"] == {"type": "string", "description": "The city name."}
    assert props["days"] == {
        "type": "integer",
        "description": "How many days ahead, counted from today.",
    }
    assert props["threshold"]["type"] == "number" and props["threshold"]["default"] == 0.5
    assert props["metric"]["type"] == "boolean"
    assert props["tags"]["type"] == ["array", "null"]
    assert props["tags"]["items"] == {"type": "string"}
    assert props["unit"]["enum"] == ["celsius", "fahrenheit"]
    assert props["unit"]["type"] == "string"
    assert props["unit"]["description"] == "Temperature unit."
    json.dumps(schema)  # serialisable as is


def test_context_parameter_is_not_in_schema() -> None:
    assert whoami.schema["function"]["parameters"]["properties"] == {}
    assert whoami.context_param == "context"


def test_missing_type_hint_is_rejected() -> None:
    def untyped(x):
        """No hints."""

    with pytest.raises(TypeError, match="no type hint"):
        tool(untyped)


def test_default_tools_and_schemas() -> None:
    names = [s["function"]["name"] for s in tool_schemas()]
    assert names == ["python_exec", "retrieve", FINAL_ANSWER]
    assert [t.name for t in DEFAULT_TOOLS] == names
    retrieve_params = tool_schemas()[1]["function"]["parameters"]
    assert retrieve_params["required"] == ["query"]
    assert retrieve_params["properties"]["k"]["default"] == 3
    assert tool_schemas([lookup]) == [lookup.schema]


# --- call_tool ------------------------------------------------------------------------------


def test_call_tool_happy_path_returns_openai_tool_message() -> None:
    message = call_tool(make_call("lookup", {"city": "Oslo", "days": 2}, "call_42"), TOOLS)
    assert set(message) == {"role", "tool_call_id", "name", "content"}
    assert message["role"] == "tool"
    assert message["tool_call_id"] == "call_42"
    assert message["name"] == "lookup"
    assert json.loads(message["content"]) == {
        "city": "Oslo",
        "days": 2,
        "unit": "celsius",
        "tags": [],
    }


def test_call_tool_accepts_dict_arguments_and_ints_for_floats() -> None:
    call = {"id": "c", "function": {"name": "lookup", "arguments": {"city": "A", "days": 1}}}
    assert not call_tool(call, TOOLS)["content"].startswith("Error")
    args = {"city": "A", "days": 1, "threshold": 1}
    assert not call_tool(make_call("lookup", args), TOOLS)["content"].startswith("Error")


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("nope", {}, "unknown tool 'nope'"),
        ("lookup", '{"city": "Oslo", ', "not valid JSON"),
        ("lookup", "[1, 2]", "must be a JSON object"),
        ("lookup", {"city": "Oslo"}, "missing required argument 'days'"),
        ("lookup", {"city": "Oslo", "days": "2"}, "argument 'days' must be of type integer"),
        ("lookup", {"city": "Oslo", "days": True}, "argument 'days' must be of type integer"),
        ("lookup", {"city": 3, "days": 2}, "argument 'city' must be of type string"),
        ("lookup", {"city": "O", "days": 2, "unit": "kelvin"}, "must be one of"),
        ("lookup", {"city": "O", "days": 2, "tags": [1]}, "argument 'tags'[0]"),
        ("lookup", {"city": "O", "days": 2, "color": "red"}, "unexpected argument 'color'"),
        ("explode", {"reason": "boom"}, "explode raised RuntimeError: boom"),
        ("refuse", {"reason": "not today"}, "Error: not today"),
    ],
)
def test_call_tool_errors_become_observations(name: str, arguments: object, expected: str) -> None:
    message = call_tool(make_call(name, arguments, "call_7"), TOOLS)
    assert message["role"] == "tool"
    assert message["tool_call_id"] == "call_7"
    assert message["name"] == name
    assert message["content"].startswith("Error: ")
    assert expected in message["content"]


def test_call_tool_injects_context() -> None:
    context = ToolContext([User("ada")])
    assert call_tool(make_call("whoami", {}), TOOLS, context)["content"] == "ada"
    assert call_tool(make_call("whoami", ""), TOOLS)["content"] == "nobody"
    assert call_tool(make_call("greet", {}), TOOLS, context)["content"] == "hello ada"


def test_a_missing_required_resource_is_an_observation_naming_it() -> None:
    message = call_tool(make_call("greet", {}), TOOLS, ToolContext())
    assert message["content"] == "Error: no User is available in this episode"


def test_resources_are_found_by_type() -> None:
    class Admin(User):
        pass

    class StandIn:  # does not inherit from User, so it must be filed under User explicitly
        name = "double"

    admin = Admin("root")
    assert ToolContext([admin]).get(User) is admin  # a subclass serves its base type
    assert ToolContext([admin]).get(Admin) is admin
    assert ToolContext([User("ada")]).get(Admin) is None
    stand_in = StandIn()
    assert ToolContext({User: stand_in}).get(User) is stand_in
    assert ToolContext([stand_in]).get(User) is None
    exact = User("exact")
    assert ToolContext([admin, exact]).get(User) is exact  # the exact type wins over a subclass
    with pytest.raises(ValueError, match="two resources of type User"):
        ToolContext([User("a"), User("b")])
    with pytest.raises(TypeError, match="must be types"):
        ToolContext({"user": User("a")})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="no close"):
        ToolContext(owned=[User("a")])


# --- final_answer ---------------------------------------------------------------------------


def test_final_answer_is_terminal_and_echoes() -> None:
    call = make_call(FINAL_ANSWER, {"answer": "Paris"})
    assert is_final(call)
    assert not is_final(make_call("lookup", {}))
    assert not is_final({})
    assert call_tool(call, TOOLS)["content"] == "Paris"


# --- python_exec through the real sandbox ---------------------------------------------------


@pytest.fixture
def session():
    try:
        sess = sandbox.Session(timeout=10.0)
        probe = sess.run("1")
    except sandbox.SandboxUnavailable as exc:
        pytest.skip(f"sandbox unavailable on this machine: {exc}")
    assert probe.ok, probe.observation()
    yield sess
    sess.close()


def test_python_exec_session_keeps_variables(session) -> None:
    context = ToolContext([session])
    tools = [python_exec]
    first = call_tool(make_call("python_exec", {"code": "x = 2"}, "a"), tools, context)
    assert not first["content"].startswith("Error: ")
    second = call_tool(make_call("python_exec", {"code": "x * 21"}, "b"), tools, context)
    assert second["tool_call_id"] == "b"
    assert "42" in second["content"]


def test_python_exec_exception_is_an_observation(session) -> None:
    context = ToolContext([session])
    message = call_tool(make_call("python_exec", {"code": "1 / 0"}), [python_exec], context)
    assert message["role"] == "tool"
    assert "ZeroDivisionError" in message["content"]


def test_python_exec_without_session_runs_fresh(session) -> None:
    out = call_tool(make_call("python_exec", {"code": "print(6 * 7)"}), [python_exec])
    assert "42" in out["content"]


def test_tool_context_closes_session() -> None:
    class FakeSession:
        closed = False

        def close(self) -> None:
            self.closed = True

    fake = FakeSession()
    with ToolContext(owned={sandbox.Session: fake}) as context:
        assert context.get(sandbox.Session) is fake
    assert fake.closed and context.get(sandbox.Session) is None
    context.close()  # closing again is harmless


def test_tool_context_closes_only_what_it_owns_even_when_one_close_fails() -> None:
    closed: list[str] = []

    class Resource:
        def __init__(self, name: str, fails: bool = False) -> None:
            self.name, self.fails = name, fails

        def close(self) -> None:
            closed.append(self.name)
            if self.fails:
                raise OSError(f"{self.name} failed")

    class Lent(Resource):
        pass

    class Broken(Resource):
        pass

    lent = Lent("lent")
    context = ToolContext([lent], owned=[Resource("first"), Broken("broken", fails=True)])
    with pytest.raises(OSError, match="broken failed"):
        context.close()
    assert closed == ["broken", "first"]  # newest first, and the failure stopped nothing
    assert context.get(Lent) is lent and context.get(Broken) is None

"""``python_exec``: run model-written Python in the sandbox.

With a ``sandbox.Session`` in the ``ToolContext`` the snippets of one episode share an
interpreter, so a variable defined in one call is there in the next; without one each call starts
fresh. The sandbox package owns isolation and limits; this tool only turns its result into an
observation.
"""

from __future__ import annotations

import sandbox
from tools.base import ToolContext, tool


@tool
def python_exec(code: str, *, context: ToolContext) -> str:
    """Run Python code and return what it printed and the value of its last expression.

    Variables, imports and functions persist between calls within the same task.

    Args:
        code: Python source to execute.
    """
    session = context.get(sandbox.Session)
    result = session.run(code) if session is not None else sandbox.run(code)
    return result.observation()

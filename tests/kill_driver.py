"""The crash world of the Socratic resume tests as a real process, for kill -9 and Ctrl-C tests.

    python tests/kill_driver.py ROOT MODEL [--resume RUN_ID] [--die KIND] [--signal kill|int]
                                [--workspace DIR] [--db-url URL]

Runs (or resumes) the scripted Socratic run under ``ROOT`` with the tiny model at ``MODEL`` and
prints the run id first. With ``--die KIND`` the process sends itself ``--signal`` the first time
that kind of request reaches a role (``judge``: the verify stage, ``qc``: quality) or, for
``train``, right after the Solver's DPO returned and before its stage committed. A SIGKILL
cannot be caught: whatever the store holds then is what a crash leaves.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as the test session: nothing reaches a hub
sys.path.insert(0, str(Path(__file__).resolve().parent))

from socratic_runs import make_config, new_world  # noqa: E402
from socratic_world import ScriptedRole  # noqa: E402

from agents.schemes.socratic import SocraticLoop  # noqa: E402
from agents.store import Store, Workspace  # noqa: E402

CRASH_TAGS = ["[m]", "[l]", "[h]", "[u]"]
SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT}


def _die_on(world: dict[str, ScriptedRole], kind: str, sig: int) -> None:
    if kind == "train":
        from agents.training import dpo

        real = dpo.train_dpo

        def train_then_die(*args: Any, **kwargs: Any) -> Any:
            result = real(*args, **kwargs)
            os.kill(os.getpid(), sig)
            return result

        dpo.train_dpo = train_then_die
        return
    for role in world.values():
        original = role._answer

        def answer(kind_: str, *args: Any, _original: Any = original, **kwargs: Any) -> str:
            if kind_ == kind:
                os.kill(os.getpid(), sig)
            return _original(kind_, *args, **kwargs)

        role._answer = answer  # type: ignore[method-assign]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--resume")
    parser.add_argument("--die", choices=["judge", "qc", "train"])
    parser.add_argument("--signal", choices=sorted(SIGNALS), default="kill")
    parser.add_argument("--workspace", type=Path, help="default ROOT/ws")
    parser.add_argument("--db-url", help="default: the workspace's SQLite")
    args = parser.parse_args()
    workspace = Workspace.resolve(args.workspace or args.root / "ws")
    store = Store.open(workspace, url=args.db_url)
    world = new_world()
    if args.die:
        _die_on(world, args.die, SIGNALS[args.signal])
    options: dict[str, Any] = {"progress": False, "loader": lambda role: world[role]}
    if args.resume:
        loop = SocraticLoop.resume(args.resume, workspace, store, **options)
    else:
        config = make_config(args.root, args.model, CRASH_TAGS, eval_base=False)
        loop = SocraticLoop.create(config, workspace, store, **options)
    print(loop.run_id, flush=True)
    try:
        run = loop.run()
    except KeyboardInterrupt:
        return 130
    finally:
        loop.close()
    print(run.status, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``agents chat recbot``: steer a film feed by typing commands, in the terminal or from stdin.

Each command goes through the RecBot's Parser (the preferences it understood are printed) and
Planner (the feed it rebuilt is printed: title, year, runtime, genres). The model is any spec or
an exported RecBot student (``agents export RUN_ID --out DIR``, then ``--model DIR``); the
catalog is MovieLens-100k with OMDb attributes, built into the workspace on first use.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from agents.models import load_engine
from agents.models.base import Engine
from agents.schemes.recbot.episode import (
    PARSER_PREFIX,
    STUDENT_PARSER_PREFIX,
    EpisodeContext,
    RecBot,
    RecEpisode,
    RecSettings,
    Turn,
)
from agents.schemes.recbot.metrics import collaborative_feed
from agents.schemes.recbot.preferences import Preferences
from agents.schemes.recbot.users import Goal
from agents.store import Workspace
from tools.catalog import Catalog

DEFAULT_MODEL = "builtin:qwen2.5-coder-1.5b"
QUIT = {"quit", "exit", ":q"}


def open_catalog(workspace: Workspace) -> Catalog:
    """MovieLens-100k + OMDb, built into ``workspace`` once (then opened in seconds)."""
    from tools.catalog import load_movielens

    return Catalog.build(
        load_movielens(), workspace.root / "catalog", chroma_dir=workspace.chroma_dir
    )


def _feed(catalog: Catalog, ids: list[str]) -> str:
    if not ids:
        return "  (no film meets these constraints)"
    return "\n".join(f"  {n:2d}. {catalog.by_id[i].line()}" for n, i in enumerate(ids, 1))


def chat(
    engine: Engine,
    catalog: Catalog,
    *,
    user: str | None = None,
    settings: RecSettings | None = None,
    source: TextIO = sys.stdin,
    out: TextIO = sys.stdout,
    parser_prefix: str = PARSER_PREFIX,
) -> int:
    """Read commands from ``source`` until it ends (or ``quit``); print each turn to ``out``.

    Args:
        engine: The model playing Parser and Planner.
        catalog: The catalog to recommend from.
        user: A catalog user whose ratings are the history (the feed starts from their taste
            and never shows what they rated); none: a new user.
        settings: Feed size and token limits.
        source: Where commands come from.
        out: Where turns are printed.
        parser_prefix: How the parser's reply starts (the student's own for a trained one).
    """
    settings = settings or RecSettings()
    history = [r.item for r in catalog.data.ratings if r.user == user] if user else []
    if user and not history:
        out.write(f"user {user} has no ratings in {catalog.name}; starting as a new user\n")
    goal = Goal(user=user or "you", target="", history=history, scenario="multi")
    episode = RecEpisode(goal, start_feed=collaborative_feed(catalog, history, settings.k))
    agent = RecBot(engine, parser_prefix=parser_prefix)
    context = EpisodeContext(catalog, agent, engine, settings, catalog.genres)
    interactive = source.isatty()
    out.write("Your feed:\n" + _feed(catalog, episode.start_feed) + "\n")
    out.write("Type a command (e.g. 'a tense thriller from the 90s, no horror'); 'quit' ends.\n")
    while True:
        if interactive:
            out.write("> ")
            out.flush()
        line = source.readline()
        if not line:
            break
        command = line.strip()
        if not command:
            continue
        if command.lower() in QUIT:
            break
        episode.turns.append(Turn(command=command))
        agent.recommend([episode], context)
        turn = episode.turns[-1]
        if not turn.parse.get("valid"):
            out.write(f"(the parser's reply was not valid: {turn.parse.get('error')})\n")
        prefs = Preferences.model_validate(turn.parse.get("preferences") or {})
        out.write(f"Understood: {prefs.summary()}\n")
        if not turn.planner_complete:
            out.write("(the planner did not finish its tool chain; ranked by what it did)\n")
        out.write("Your feed:\n" + _feed(catalog, turn.feed) + "\n")
        out.flush()
    return 0


def run_chat(model: str | None, workspace: Workspace, *, user: str | None = None) -> int:
    """The ``agents chat recbot`` command."""
    engine = load_engine(model or DEFAULT_MODEL)
    # an exported student continues the compact prefix it was trained on
    trained = model is not None and (Path(model) / "agent_card.json").exists()
    prefix = STUDENT_PARSER_PREFIX if trained else PARSER_PREFIX
    try:
        return chat(engine, open_catalog(workspace.ensure()), user=user, parser_prefix=prefix)
    finally:
        engine.close()

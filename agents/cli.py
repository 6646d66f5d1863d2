"""The ``agents`` command: thin subcommands that parse, call one function, and print.

Errors a user can fix (bad config, unknown model, unreachable endpoint, missing run) print one
sentence to stderr and exit with status 2; nothing is half-written.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# The built-in path is offline by design: without these, TRL and huggingface_hub try the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

EXIT_USER_ERROR = 2


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the problem and where to read the flags, exit 2."""

    def error(self, message: str) -> Any:  # argparse's own prints the usage block first
        self.exit(EXIT_USER_ERROR, f"error: {message}; see {self.prog} --help\n")


class _Once(logging.Filter):
    """Console warnings once each: a repeat of the same message template is dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, object]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.msg)
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def _user_errors() -> tuple[type[BaseException], ...]:
    from agents.config import ConfigError
    from agents.export import ExportError
    from agents.migrations import SchemaTooNew
    from agents.models.base import EngineError
    from agents.store import StoreError
    from sandbox.executor import SandboxUnavailable
    from tools.retrieval import CorpusUnavailable

    return (
        ConfigError,
        EngineError,
        ExportError,
        StoreError,
        SchemaTooNew,
        SandboxUnavailable,
        CorpusUnavailable,
    )


def _open_store(args: argparse.Namespace) -> tuple[Any, Any]:
    from agents.store import Store, Workspace

    workspace = Workspace.resolve(args.workspace)
    if args.db_url:  # a bad URL fails before the workspace is created
        store = Store.open(url=args.db_url)
        try:
            workspace.ensure()
        except BaseException:
            store.close()
            raise
        return store, workspace
    return Store.open(workspace=workspace.ensure()), workspace


# ---------------------------------------------------------------------------- models


def cmd_models_list(args: argparse.Namespace) -> int:
    from agents.models.builtin import BUILTIN_MODELS

    for name, model in BUILTIN_MODELS.items():
        state = (
            "converted" if (model.cached_dir() / "config.json").exists() else "not yet converted"
        )
        print(f"builtin:{name:<22} {model.description} [{state}]")
    return 0


def cmd_models_check(args: argparse.Namespace) -> int:
    """Load each model, generate one answer, report speed: proves the install works."""
    from agents.models import ChatRequest, load_engine

    for spec in args.specs or ["builtin:smollm2-135m"]:
        began = time.perf_counter()
        engine = load_engine(spec)
        loaded = time.perf_counter() - began
        request = ChatRequest(
            messages=[{"role": "user", "content": args.prompt}], max_tokens=args.max_tokens
        )
        result = engine.generate([request])[0]
        rate = result.completion_tokens / max(result.latency_s, 1e-9)
        print(
            f"{spec}: loaded in {loaded:.1f}s, "
            f"{result.completion_tokens} tokens at {rate:.1f} tok/s"
        )
        print(f"  {args.prompt}\n  → {result.text.strip()}")
        engine.close()
    return 0


# ---------------------------------------------------------------------------- run / eval


def scheme_parser(scheme: Any) -> argparse.ArgumentParser:
    """The flags of ``agents run NAME``: common ones plus those of the scheme's config fields."""
    from agents.config import config_flags

    parser = Parser(
        prog=f"agents run {scheme.name}",
        description=scheme.help,
        epilog="Any setting can also be given as --set key.sub=value.",
    )
    parser.add_argument("--config", type=Path, help="YAML config (default configs/<scheme>.yaml)")
    parser.add_argument("--resume", metavar="RUN_ID", help="continue a stopped or killed run")
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any setting")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--workspace", help="workspace directory (default ./workspace)")
    parser.add_argument("--db-url", help="SQLAlchemy URL of the store (default: workspace SQLite)")
    settings = parser.add_argument_group(f"{scheme.name} settings")
    for flag in config_flags(scheme.config):
        dest = f"setting:{flag.key}"
        if flag.kind is bool:
            settings.add_argument(
                f"--{flag.name}", dest=dest, action=argparse.BooleanOptionalAction, help=flag.help
            )
        else:
            settings.add_argument(
                f"--{flag.name}",
                dest=dest,
                type=flag.kind if flag.kind in (int, float) else str,
                choices=flag.choices,
                help=flag.help,
                metavar=None if flag.choices else flag.name.replace("-", "_").upper(),
            )
    return parser


def _scheme_args(name: str, outer: argparse.Namespace) -> tuple[Any, argparse.Namespace]:
    """The scheme called ``name`` and its parsed flags (store flags may come before the name)."""
    from agents.jobs import find_scheme

    scheme = find_scheme(name)
    args = scheme_parser(scheme).parse_args(outer.args)
    args.workspace = args.workspace or outer.workspace
    args.db_url = args.db_url or outer.db_url
    return scheme, args


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted config keys the flags and ``--set`` give; flags not given are left out."""
    from agents.config import parse_override

    values: dict[str, Any] = {
        key.removeprefix("setting:"): value
        for key, value in vars(args).items()
        if key.startswith("setting:") and value is not None
    }
    for text in args.set or []:
        key, value = parse_override(text)
        values[key] = value
    return values


def launch(scheme: Any, args: argparse.Namespace) -> tuple[Any, Any]:
    """Start (or, with ``--resume``, continue) a run of ``scheme``; returns (store, run)."""
    from agents.config import ConfigError, load_config

    overrides = _overrides(args)
    if args.resume:
        if overrides or args.config:
            given = ", ".join(sorted(overrides)) or "--config"
            raise ConfigError(f"a resumed run keeps its stored settings; drop {given}")
        store, workspace = _open_store(args)
        scheme_run = scheme.run.resume(args.resume, workspace, store, progress=not args.quiet)
    else:
        config = load_config(scheme.config, args.config or scheme.default_config, overrides)
        store, workspace = _open_store(args)
        scheme_run = scheme.run.create(config, workspace, store, progress=not args.quiet)
    try:
        return store, scheme_run.run()
    finally:
        scheme_run.close()


def cmd_run(args: argparse.Namespace) -> int:
    scheme, scheme_args = _scheme_args(args.scheme, args)
    store, run = launch(scheme, scheme_args)
    print(f"run {run.id} {run.status}")
    summary = scheme.summary(store, run) if scheme.summary is not None else ""
    if summary:
        print(summary)
    _print_run(store, run.id)
    return 0


# ---------------------------------------------------------------------------- export


def cmd_serve(args: argparse.Namespace) -> int:
    from agents.export import AgentCard
    from agents.serve import ServeSettings, serve

    AgentCard.read(Path(args.directory))  # not an export: one sentence, exit 2
    settings = ServeSettings(
        token=args.token or os.environ.get("AGENTS_SERVE_TOKEN") or None,
        max_queue=args.max_queue,
        timeout_s=args.timeout,
        max_tokens_limit=args.max_tokens,
    )
    serve(args.directory, host=args.host, port=args.port, settings=settings)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    from agents.config import ConfigError
    from agents.jobs import SCHEMES, find_scheme
    from agents.store import Workspace

    scheme = find_scheme(args.scheme)
    if scheme.chat is None:
        talkers = ", ".join(s.name for s in SCHEMES if s.chat is not None)
        raise ConfigError(f"{scheme.name} has no chat; schemes with one: {talkers}")
    return scheme.chat(args.model, Workspace.resolve(args.workspace), args.user)


def cmd_export(args: argparse.Namespace) -> int:
    from agents.export import AgentCard, ExportError, card_for_run, export_agent

    if args.run_id:
        store, _ = _open_store(args)
        card, adapter = card_for_run(store, args.run_id, role=args.role, round=args.round)
    elif args.base:
        card, adapter = AgentCard(name=Path(args.out).name, base_model=args.base), args.adapter
    else:
        raise ExportError("name a run (agents export RUN_ID --out DIR) or a model (--base SPEC)")
    path = export_agent(args.out, card, adapter=adapter, overwrite=args.overwrite)
    print(f"exported {card.name} to {path}")
    return 0


# ---------------------------------------------------------------------------- runs


def _print_run(store: Any, run_id: str) -> None:
    for stage in store.stages(run_id):
        shown = {k: v for k, v in (stage.metrics or {}).items() if not k.startswith("_")}
        metrics = json.dumps(shown, default=str)
        print(f"  round {stage.round} {stage.name:<12} {stage.status:<9} {metrics}")
    for checkpoint in store.checkpoints(run_id):
        print(f"  checkpoint {checkpoint.role} round {checkpoint.round}: {checkpoint.adapter_path}")
    for (role, model), use in store.usage(run_id).items():
        print(
            f"  calls {role or '-'} {model}: {use.calls} batches, {use.samples} samples "
            f"({use.cached_samples} cached), {use.prompt_tokens}+{use.completion_tokens} tokens, "
            f"{use.retries} retries, {use.latency_s:.1f}s"
        )


def cmd_runs_list(args: argparse.Namespace) -> int:
    from agents.store import run_state

    store, _ = _open_store(args)
    runs = store.list_runs(scheme=args.scheme, limit=args.limit)
    if not runs:
        print("no runs yet")
    for run in runs:
        created = run.created_at.strftime("%Y-%m-%d %H:%M")
        print(f"{run.id}  {run.scheme:<10} {run_state(run):<11} {created}  {run.name or ''}")
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from agents.store import run_state

    store, _ = _open_store(args)
    run = store.get_run(args.run_id)
    state = run_state(run)
    if state == "interrupted":
        state += f" (its process {run.owner or ''} is gone; --resume {run.id} continues it)"
    print(f"run {run.id} ({run.scheme}) {state}, created {run.created_at:%Y-%m-%d %H:%M}")
    print("config: " + json.dumps(run.config, default=str))
    _print_run(store, run.id)
    return 0


# ---------------------------------------------------------------------------- audit


def _audit(args: argparse.Namespace) -> int:
    """Chat with a strategy library: reads commands and questions from stdin."""
    from collections.abc import Iterator

    from strategies import AuditChat, Auditor, StrategyLibrary, library_names

    store, workspace = _open_store(args)
    known = library_names(store)
    if args.library not in known:
        listed = ", ".join(known) if known else "none yet (strategy teaching creates them)"
        print(
            f"error: there is no strategy library {args.library!r} here; libraries: {listed}.",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR

    def lines() -> Iterator[str]:
        if not sys.stdin.isatty():  # piped input: no prompt
            yield from (line.rstrip("\n") for line in sys.stdin)
            return
        while True:
            try:
                yield input("audit> ")
            except EOFError:
                return

    engine = None
    if args.model:
        from agents.models import load_engine

        engine = load_engine(args.model)
    library = StrategyLibrary.open(store, workspace.chroma_dir, args.library)
    try:
        AuditChat(Auditor(library, reviewer=args.reviewer), engine).run(lines())
    finally:
        if engine is not None:
            engine.close()
    return 0


# ---------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="agents", description="Distil LLM agents into small students, offline by default."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    def with_store(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--workspace", help="workspace directory (default ./workspace)")
        p.add_argument("--db-url", help="SQLAlchemy URL of the store (default: workspace SQLite)")
        return p

    models = sub.add_parser("models", help="built-in models").add_subparsers(
        dest="models_command", required=True
    )
    models.add_parser("list", help="list built-in models").set_defaults(func=cmd_models_list)
    check = models.add_parser("check", help="load models and generate one answer each")
    check.add_argument("specs", nargs="*", help="model specs (default builtin:smollm2-135m)")
    check.add_argument("--prompt", default="What is 12 * 7? Answer with the number.")
    check.add_argument("--max-tokens", type=int, default=48)
    check.set_defaults(func=cmd_models_check)

    run = with_store(
        sub.add_parser(
            "run",
            help="run a scheme (agents run NAME --help lists its flags)",
            description="Run a scheme. `agents run NAME --help` lists the flags of NAME; an "
            "unknown NAME lists the schemes there are.",
        )
    )
    run.add_argument("scheme", metavar="NAME", help="the scheme to run")
    run.add_argument("args", nargs=argparse.REMAINDER, help="flags of the scheme")
    run.set_defaults(func=cmd_run)

    # `agents eval ...` is `agents run eval ...` (see main); listed here for --help.
    sub.add_parser("eval", help="held-out accuracy of a model (= agents run eval ...)")

    export = with_store(sub.add_parser("export", help="export a trained student as a small agent"))
    export.add_argument("run_id", nargs="?", help="run whose adapter to export")
    export.add_argument("--out", required=True, type=Path, help="directory to write")
    export.add_argument("--role", help="role of the adapter (default: the run's only/last one)")
    export.add_argument("--round", type=int, help="round of the adapter (default: latest)")
    export.add_argument("--base", help="export a model spec directly instead of a run")
    export.add_argument("--adapter", type=Path, help="with --base: adapter to merge")
    export.add_argument("--overwrite", action="store_true")
    export.set_defaults(func=cmd_export)

    runs = sub.add_parser("runs", help="inspect stored runs").add_subparsers(
        dest="runs_command", required=True
    )
    listing = with_store(runs.add_parser("list", help="recent runs"))
    listing.add_argument("--scheme")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=cmd_runs_list)
    show = with_store(runs.add_parser("show", help="one run: stages, checkpoints, calls"))
    show.add_argument("run_id")
    show.set_defaults(func=cmd_runs_show)

    served = sub.add_parser("serve", help="serve an exported agent over an OpenAI-compatible API")
    served.add_argument("directory", help="the export directory (agents export ... --out DIR)")
    served.add_argument("--host", default="127.0.0.1", help="address to listen on")
    served.add_argument("--port", type=int, default=8000)
    served.add_argument(
        "--token", help="bearer token clients must send (default $AGENTS_SERVE_TOKEN; none: open)"
    )
    served.add_argument("--max-queue", type=int, default=8, help="requests that may wait")
    served.add_argument("--timeout", type=float, default=300.0, help="seconds per request")
    served.add_argument("--max-tokens", type=int, default=2048, help="largest max_tokens")
    served.set_defaults(func=cmd_serve)

    talk = sub.add_parser("chat", help="talk to a scheme's agent (agents chat recbot)")
    talk.add_argument("scheme", metavar="NAME", help="the scheme whose agent to talk to")
    talk.add_argument("--model", help="model spec or export directory (default: the scheme's)")
    talk.add_argument("--user", help="start as this catalog user (their history and taste)")
    talk.add_argument("--workspace", help="workspace directory (default ./workspace)")
    talk.set_defaults(func=cmd_chat)

    audit = with_store(sub.add_parser("audit", help="review the strategy library in a chat"))
    audit.add_argument("--library", default="retail", help="strategy library (default retail)")
    audit.add_argument("--model", help="auditor model spec for free-form questions")
    audit.add_argument(
        "--reviewer",
        default=os.environ.get("USER") or "reviewer",
        help="your name in the audit log (default $USER)",
    )
    audit.set_defaults(func=_audit)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if command is not None and argv[command] == "eval":
        argv.insert(command, "run")  # the eval command runs the one-stage eval scheme
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        # The console's warnings once each (the run's log file keeps every repeat).
        console = isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
        if console and not any(isinstance(f, _Once) for f in handler.filters):
            handler.addFilter(_Once())
    if not args.verbose:
        # Deprecation notices from inside transformers/peft are not the user's to act on.
        warnings.filterwarnings("ignore", category=FutureWarning)
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()  # weight-loading bars; our own bars stay
    try:
        return args.func(args)
    except _user_errors() as err:
        message = " ".join(str(err).split())  # one line, whatever the message held
        print(f"error: {message}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; completed stages are stored", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""Re-running a stage costs nothing: the same requests twice through CachedEngine and a Store.

A fresh workspace (a temporary directory unless ``--workspace`` is given) gets one run. The first
pass sends ``N`` sampled requests through ``CachedEngine`` on the built-in model; the second pass
opens the store again, as a resumed process would, wraps the same model in a new ``CachedEngine``
and sends the identical requests. Printed: model calls, generated and cached samples and wall time
of both passes, and the ledger totals. Exits 1 if the second pass reached the model or returned
different texts.

    python bench/cache_rerun.py
    python bench/cache_rerun.py --requests 32 -n 4
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find agents/

TOPICS = ["rivers", "bees", "comets", "glaciers", "owls", "deserts", "tides", "ferns"]


def build_requests(args: argparse.Namespace) -> list[Any]:
    from agents.models.base import ChatRequest

    return [
        ChatRequest(
            messages=[
                {
                    "role": "user",
                    "content": f"Give one short fact about {TOPICS[i % len(TOPICS)]}. ({i})",
                }
            ],
            n=args.n,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            seed=args.seed + i,
        )
        for i in range(args.requests)
    ]


def one_pass(label: str, inner: Any, workspace: Any, run_id: str, requests: list[Any]) -> Any:
    """Open the store, run the requests through a new CachedEngine, print its counters."""
    from agents.models import CachedEngine
    from agents.store import Store

    store = Store.open(workspace=workspace)
    engine = CachedEngine(inner, store, run_id=run_id, role="bench")
    began = time.perf_counter()
    results = engine.generate(requests)
    seconds = time.perf_counter() - began
    store.close()
    print(
        f"{label:<7} model_calls={engine.model_calls} "
        f"generated_samples={engine.generated_samples} cached_samples={engine.cached_samples} "
        f"seconds={seconds:.2f}"
    )
    return engine, [r.texts for r in results]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:smollm2-135m", help="model spec")
    parser.add_argument("--requests", type=int, default=8, help="requests per pass (N)")
    parser.add_argument("-n", type=int, default=2, help="samples per request")
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", type=Path, default=None, help="default: a temp directory")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from agents.models import load_engine
    from agents.store import Store, Workspace

    if args.threads:
        torch.set_num_threads(args.threads)
    requests = build_requests(args)
    inner = load_engine(args.model, device=args.device)
    with tempfile.TemporaryDirectory(prefix="cache-rerun-") as tmp:
        workspace = Workspace(args.workspace or Path(tmp)).ensure()
        store = Store.open(workspace=workspace)
        run_id = store.create_run("bench-cache-rerun", vars(args) | {"workspace": None}).id
        store.close()
        print(
            f"model {args.model}, workspace {workspace.root}, run {run_id}: "
            f"{len(requests)} requests x {args.n} samples, max_tokens={args.max_tokens}"
        )

        first, first_texts = one_pass("first", inner, workspace, run_id, requests)
        second, second_texts = one_pass("second", inner, workspace, run_id, requests)

        store = Store.open(workspace=workspace)
        for (role, model), usage in store.usage(run_id).items():
            print(
                f"ledger  role={role} model={model} calls={usage.calls} samples={usage.samples} "
                f"cached_samples={usage.cached_samples} completion_tokens={usage.completion_tokens}"
            )
        store.close()
    inner.close()

    failures = []
    if first.model_calls == 0:
        failures.append("the first pass never reached the model (was the workspace empty?)")
    if second.model_calls or second.generated_samples:
        failures.append(f"the second pass made {second.model_calls} model call(s)")
    if second_texts != first_texts:
        failures.append("the second pass returned different texts")
    for failure in failures:
        print(f"FAIL: {failure}")
    if not failures:
        print("OK: the identical re-run was served entirely from the cache")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

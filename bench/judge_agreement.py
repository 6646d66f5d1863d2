"""How two judges see the same held-out pairs of a strategy-teaching run.

The run's ``eval_judge`` stage stored every pair it judged (the conversation so far and the two
replies). This script shows each pair, both ways round, to the run's judge (its answers come
from the response cache: no model call) and to another judge, and prints per judge:

* decided: both orders picked the same reply (a verdict that survives swapping positions);
* position-bound: both orders picked the same *position* (A twice or B twice), so the verdict
  says nothing about the replies;
* and, over the pairs both judges decided, how often they picked the same reply;

each share with its 95% Wilson interval. Use it to see what a stronger judge changes::

    python bench/judge_agreement.py --workspace ws --run RUN_ID --judge builtin:qwen2.5-coder-0.5b
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find agents/


def share(hits: int, total: int) -> str:
    """``0.417 (0.193–0.680, 5/12)``: a share with its Wilson interval."""
    from scipy import stats

    if not total:
        return "— (0 pairs)"
    ci = stats.binomtest(hits, total).proportion_ci(method="wilson")
    return f"{hits / total:.3f} ({ci.low:.3f}–{ci.high:.3f}, {hits}/{total})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", required=True, help="the run's workspace")
    parser.add_argument("--run", required=True, help="a finished strategy-teaching run id")
    parser.add_argument("--judge", required=True, help="the other judge's model spec")
    args = parser.parse_args(argv)

    from agents.models import load_engine
    from agents.models.cached import CachedEngine
    from agents.schemes.strategy_teaching import StrategyTeachingJob
    from agents.schemes.strategy_teaching.rules import verdicts
    from agents.store import Store, Workspace
    from agents.threads import configure
    from tools.service import load_domain

    configure()
    store = Store.open(Workspace.resolve(args.workspace))
    config = StrategyTeachingJob.model_validate(store.get_run(args.run).config)
    domain = load_domain(config.tasks.domain, config.tasks.data_dir)
    rows = [
        r
        for r in store.trajectories(args.run, stage="eval_judge")
        if r.meta.get("a") != r.meta.get("b")
    ]
    if not rows:
        print(f"run {args.run} has no judged pair with two different replies")
        return 2
    prefixes = [list(r.messages) for r in rows]
    first = [{"role": "assistant", "content": r.meta["a"]} for r in rows]
    second = [{"role": "assistant", "content": r.meta["b"]} for r in rows]
    found = {}
    for spec in dict.fromkeys([config.role_model("judge"), args.judge]):
        engine = CachedEngine(load_engine(spec), store, run_id=args.run, role="judge-check")
        try:
            found[spec] = verdicts(engine, domain, prefixes, first, second, progress=True)
        finally:
            engine.close()
    print(f"run {args.run}: {len(rows)} judged pairs with two different replies")
    decided_by = {}
    for spec, per_pair in found.items():
        both = [v for v in per_pair if len(v) == 2]
        decided_by[spec] = {i: v[0] for i, v in enumerate(per_pair) if len(v) == 2 and v[0] == v[1]}
        position = sum(v[0] != v[1] for v in both)
        print(f"{spec}")
        print(f"  decided (same reply both orders): {share(len(decided_by[spec]), len(both))}")
        print(f"  position-bound (same letter both orders): {share(position, len(both))}")
    if len(found) == 2:
        a, b = (decided_by[s] for s in found)
        shared = [i for i in a if i in b]
        agree = sum(a[i] == b[i] for i in shared)
        print(f"same reply picked where both decided: {share(agree, len(shared))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Strategy retrieval latency at library scale: StrategyLibrary vs exact numpy search.

Builds (or reuses, under ``--dir``) a library of ``--n`` synthetic strategies (products x issues x
conditions, each with a pair of actions), 85% of them approved or edited and the rest proposed or
rejected, then times ``--queries`` customer messages three ways:

* (a) text query: ``StrategyLibrary.retrieve`` embeds the message, then searches;
* (b) ready vector: ``retrieve_by_embedding`` with the message already embedded;
* Chroma's own query with a status filter (``where``), no SQL check: the library searches the
  index unfiltered and lets the SQL status decide, because Chroma's filter scans every entry.

The baseline, measured in the same run over the same vectors read back from Chroma, is exact
cosine top-k with numpy over the usable strategies (a matrix-vector product and an argpartition).
It also gives HNSW recall@k against that exact top-k.

Embedding 10,000 strategies with MiniLM takes minutes on a laptop CPU; ``--dir`` keeps the built
library for the next run (strategies are added by origin, so an interrupted build continues).

Usage::

    python bench/strategy_retrieval.py --dir ~/.cache/agents-bench-strategies --n 10000
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# One BLAS thread: spinning OpenBLAS workers would steal the cores the next query embedding needs.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find agents/

import numpy as np  # noqa: E402
from timing import percentiles, timed  # noqa: E402  (bench/ is the script's directory)

from agents.store import Store  # noqa: E402
from strategies import USABLE, StrategyDraft, StrategyLibrary  # noqa: E402

PRODUCTS = [
    "wireless headphones", "running shoes", "coffee maker", "winter jacket", "laptop bag",
    "smart watch", "blender", "office chair", "yoga mat", "desk lamp", "phone case",
    "electric kettle", "backpack", "bluetooth speaker", "air fryer", "rain boots", "toaster",
    "gaming mouse", "mattress", "bike helmet", "sunglasses", "vacuum cleaner", "cookware set",
    "baby stroller", "tablet", "printer", "wool sweater", "camping tent", "hair dryer", "monitor",
]  # fmt: skip
ISSUES = [
    "arrived damaged", "is missing a part", "stopped working after a week",
    "is the wrong size", "was delivered late", "was charged twice", "never arrived",
    "came in the wrong colour", "needs a warranty repair", "has to be returned",
    "was ordered by mistake", "is cheaper elsewhere now", "went to an old address",
    "came without a receipt", "was a gift to exchange", "is under a safety recall",
    "renewed a subscription unexpectedly", "had a promo code that failed",
    "is out of stock on reorder", "has a confusing invoice",
]  # fmt: skip
CONDITIONS = [
    "within the 30-day window", "after the return window closed", "for a loyalty member",
    "paid with a gift card", "shipped internationally", "bought on sale", "ordered as a guest",
    "with an expired card on file", "during a holiday promotion", "on a business account",
    "in a partial delivery", "from a marketplace seller", "after an earlier complaint",
    "where only the box is damaged", "for a first-time customer", "with express shipping",
    "with the payment still pending",
]  # fmt: skip
ACTIONS = [
    "apologise and offer a full refund", "offer a replacement shipped express",
    "open a warranty claim", "send a prepaid return label", "escalate to a supervisor",
    "verify the customer's identity first", "offer store credit with a 10% bonus",
    "explain the policy and grant a one-time exception", "ask for a photo before deciding",
    "check the carrier tracking and give a new date", "refund the duplicate charge",
    "update the address and reship", "apply the price difference as a refund",
    "cancel the renewal and refund the last charge", "reissue the invoice with line items",
]  # fmt: skip
QUERY_TEMPLATES = [
    "Hi, my {product} {issue} and I bought it {condition}. What can you do?",
    "The {product} {issue}. Order placed {condition}.",
    "I need help: {product} {issue}, {condition}.",
]


def synthetic_drafts(n: int, seed: int = 0) -> list[StrategyDraft]:
    """``n`` distinct strategies (at most products x issues x conditions), deterministic."""
    rng = random.Random(seed)
    combos = list(itertools.product(PRODUCTS, ISSUES, CONDITIONS))
    if n > len(combos):
        raise SystemExit(f"--n can be at most {len(combos)} with these templates")
    rng.shuffle(combos)
    statuses = ["approved"] * 14 + ["edited"] * 3 + ["proposed", "proposed", "rejected"]
    drafts = []
    for i, (product, issue, condition) in enumerate(combos[:n]):
        first, second = rng.sample(ACTIONS, 2)
        drafts.append(
            StrategyDraft(
                situation=f"The customer's {product} {issue}, {condition}.",
                text=f"{first.capitalize()}, then {second}; confirm the outcome in writing.",
                status=rng.choice(statuses),
                domain="retail",
                origin=f"bench-{seed}-{i}",
            )
        )
    return drafts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="strategies in the library")
    parser.add_argument(
        "--dir", type=Path, default=None, help="library dir to reuse (default temp)"
    )
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    directory = args.dir or Path(tempfile.mkdtemp(prefix="strategy-bench-"))
    directory.mkdir(parents=True, exist_ok=True)
    store = Store(f"sqlite:///{directory / 'agents.db'}")
    library = StrategyLibrary.open(store, directory / "chroma", f"bench-{args.seed}")
    start = time.perf_counter()
    drafts = synthetic_drafts(args.n, args.seed)
    if library.count() < args.n:
        library.add_many(drafts, author="bench", progress=True)
    print(f"library: {library.count()} strategies, {library.count(USABLE)} usable, in {directory}")
    print(f"build (or reuse) time: {time.perf_counter() - start:.1f} s")

    stored = library.collection.get(include=["embeddings", "metadatas"])
    usable = [i for i, meta in enumerate(stored["metadatas"]) if meta["status"] in USABLE]
    ids = [int(stored["ids"][i]) for i in usable]
    matrix = np.asarray(stored["embeddings"], dtype=np.float32)[usable]
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)

    rng = random.Random(args.seed + 1)
    queries = [
        rng.choice(QUERY_TEMPLATES).format(
            product=rng.choice(PRODUCTS), issue=rng.choice(ISSUES), condition=rng.choice(CONDITIONS)
        )
        for _ in range(args.queries)
    ]
    vectors = np.asarray(library.embed(queries), dtype=np.float32)
    k = args.k
    where = {"status": {"$in": sorted(USABLE)}}

    def numpy_top_k(vector: np.ndarray) -> list[int]:
        scores = matrix @ vector
        top = np.argpartition(-scores, k)[:k]
        return [ids[j] for j in top[np.argsort(-scores[top])]]

    def chroma_only(i: int) -> object:
        return library.collection.query(
            query_embeddings=[vectors[i]], n_results=k, where=where, include=["distances"]
        )

    rows = {
        "library, text query (embed + search)": timed(
            lambda i: library.retrieve(queries[i], k), args.queries
        ),
        "library, ready vector (search only)": timed(
            lambda i: library.retrieve_by_embedding(vectors[i], k), args.queries
        ),
        "chroma filtered query, ready vector": timed(chroma_only, args.queries),
        "numpy, text query (embed + search)": timed(
            lambda i: numpy_top_k(np.asarray(library.embed([queries[i]])[0], dtype=np.float32)),
            args.queries,
        ),
        "numpy, ready vector (search only)": timed(lambda i: numpy_top_k(vectors[i]), args.queries),
    }
    print(f"\n{args.queries} queries, k={k}, {matrix.shape[0]} usable of {library.count()}")
    print(f"{'method':42s} {'p50 ms':>8s} {'p95 ms':>8s}")
    stats = {name: percentiles(samples) for name, samples in rows.items()}
    for name, (p50, p95) in stats.items():
        print(f"{name:42s} {p50:8.2f} {p95:8.2f}")
    for kind in ("text query (embed + search)", "ready vector (search only)"):
        ours, exact = stats[f"library, {kind}"], stats[f"numpy, {kind}"]
        print(
            f"ratio library/numpy, {kind}: p50 {ours[0] / exact[0]:.2f}x, "
            f"p95 {ours[1] / exact[1]:.2f}x"
        )

    found = [[h.strategy.id for h in library.retrieve_by_embedding(v, k)] for v in vectors]
    exact_top = [numpy_top_k(v) for v in vectors]
    recall = statistics.mean(
        len(set(f) & set(e)) / k for f, e in zip(found, exact_top, strict=True)
    )
    top1 = statistics.mean(f[:1] == e[:1] for f, e in zip(found, exact_top, strict=True))
    print(f"HNSW recall@{k} vs exact: {recall:.3f}; top-1 agreement {top1:.3f}")
    served = {h for f in found for h in f}
    assert all(library.get(i).status in USABLE for i in served), "a non-usable strategy was served"


if __name__ == "__main__":
    main()

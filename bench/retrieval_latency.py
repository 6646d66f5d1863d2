"""Retrieval latency on the full default corpus: Chroma HNSW vs brute-force numpy.

Builds (or reuses, under ``--dir``) the 10,033-article Wikipedia-summaries corpus, then times
``--queries`` searches two ways:

* (a) text query: the query is embedded at query time, then searched;
* (b) vector query: the query embedding is ready, only the search is timed.

The baseline, measured in the same run over the same embedding matrix read back from Chroma, is
exact cosine similarity with numpy (one matrix-vector product and an argpartition). It also gives
HNSW's recall@k against the exact top-k.

Usage::

    python bench/retrieval_latency.py --dir ~/.cache/agents-bench-chroma --queries 100 --k 3
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# OpenBLAS worker threads keep spinning after a matrix-vector product and then steal the cores
# torch needs for the next query embedding; one BLAS thread keeps the baseline honest.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from timing import percentiles, timed  # noqa: E402  (bench/ is the script's directory)

from tools.retrieval import build_default_corpus, wiki_summaries  # noqa: E402

QUERY_TEMPLATES = ["What is {}?", "Tell me about {}", "{}", "history of {}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="Chroma cache dir (default: temp)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N articles")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    directory = args.dir or Path(tempfile.mkdtemp(prefix="retrieval-bench-"))
    start = time.perf_counter()
    corpus = build_default_corpus(directory, limit=args.limit)
    build_s = time.perf_counter() - start
    print(f"corpus: {corpus.count()} documents in {directory}")
    print(f"build (or reuse) time: {build_s:.1f} s")

    stored = corpus.collection.get(include=["embeddings"])
    ids = stored["ids"]
    matrix = np.asarray(stored["embeddings"], dtype=np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)

    rng = random.Random(args.seed)
    titles = [d["title"] for d in rng.sample(wiki_summaries(args.limit), args.queries)]
    queries = [rng.choice(QUERY_TEMPLATES).format(t) for t in titles]
    embed = corpus.embedding
    vectors = np.asarray(embed(queries), dtype=np.float32)
    k = args.k

    def numpy_top_k(vector: np.ndarray) -> list[str]:
        scores = matrix @ vector
        top = np.argpartition(-scores, k)[:k]
        return [ids[j] for j in top[np.argsort(-scores[top])]]

    rows = {
        "chroma, text query (embed + search)": timed(
            lambda i: corpus.search(queries[i], k), args.queries
        ),
        "chroma, ready vector (search only)": timed(
            lambda i: corpus.search_by_embedding(vectors[i], k), args.queries
        ),
        "numpy, text query (embed + search)": timed(
            lambda i: numpy_top_k(np.asarray(embed([queries[i]])[0], dtype=np.float32)),
            args.queries,
        ),
        "numpy, ready vector (search only)": timed(lambda i: numpy_top_k(vectors[i]), args.queries),
    }
    print(f"\n{args.queries} queries, k={k}, matrix {matrix.shape[0]}x{matrix.shape[1]}")
    print(f"{'method':40s} {'p50 ms':>8s} {'p95 ms':>8s}")
    stats = {name: percentiles(samples) for name, samples in rows.items()}
    for name, (p50, p95) in stats.items():
        print(f"{name:40s} {p50:8.2f} {p95:8.2f}")

    for kind in ("text query (embed + search)", "ready vector (search only)"):
        chroma, numpy_ = stats[f"chroma, {kind}"], stats[f"numpy, {kind}"]
        print(
            f"ratio chroma/numpy, {kind}: p50 {chroma[0] / numpy_[0]:.2f}x, "
            f"p95 {chroma[1] / numpy_[1]:.2f}x"
        )

    overlap = [
        len({d.id for d in corpus.search_by_embedding(v, k)} & set(numpy_top_k(v))) / k
        for v in vectors
    ]
    top1 = [
        corpus.search_by_embedding(v, 1)[0].id == ids[int(np.argmax(matrix @ v))] for v in vectors
    ]
    print(
        f"HNSW recall@{k} vs exact: {statistics.mean(overlap):.3f}; top-1 agreement "
        f"{statistics.mean(top1):.3f}"
    )
    hits = [
        corpus.search_by_embedding(v, k)[0].title == t for v, t in zip(vectors, titles, strict=True)
    ]
    print(f"query's own article ranked first: {statistics.mean(hits):.2f}")


if __name__ == "__main__":
    main()

"""One rank of a multi-process training run (started by :func:`agents.training.distributed.launch`).

    python -m agents.training.worker JOB.pkl

Runs the pickled ``train_sft`` / ``train_dpo`` call as this rank; rank 0 writes its result back.
"""

from __future__ import annotations

import pickle
import sys

from agents.training.distributed import is_rank_zero


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0], "rb") as file:
        job = pickle.load(file)
    if job["method"] == "sft":
        from agents.training.sft import train_sft as train
    else:
        from agents.training.dpo import train_dpo as train
    result = train(**job["kwargs"])
    if is_rank_zero():
        with open(job["result"], "wb") as out:
            pickle.dump(result, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

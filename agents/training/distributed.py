"""Training on several processes with accelerate: ``training.processes: N`` in any config.

:func:`train_sft` and :func:`train_dpo` hand a run with ``processes > 1`` to :func:`launch`, which
pickles the call into a job file and starts ``accelerate launch`` with N processes of
:mod:`agents.training.worker`. Each process runs the same call as a DDP rank (transformers'
Trainer sets the process group up: gloo on CPUs, NCCL on GPUs); rank 0 alone saves the adapter
and writes the result back, and the calling process, the only one that holds the store, records
it as usual. No worker opens the store or the workspace.

The examples of one optimizer step are split over the processes, so a step sees the same
examples as in one process: ``grad_accum`` is divided by N when it can be, else ``batch_size``.
With ``shuffle: false`` and examples of equal length the per-step losses then match a single
process up to float rounding (``tests/test_distributed_training.py``).

On a CPU each process gets an equal share of the cores (``AGENTS_THREADS``). On GPUs, pass an
accelerate config (``training.accelerate_config: path.yaml``, from ``accelerate config``) to
use DeepSpeed or FSDP instead of plain DDP; its ``num_processes`` is overridden by ``processes``.

Each rank runs ``python -m agents.training.worker JOB.pkl``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from agents.net import free_port

log = logging.getLogger(__name__)


def in_worker() -> bool:
    """Whether this process is a rank of a multi-process launch."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def is_rank_zero() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def split_step(settings: Any) -> Any:
    """``settings`` for one of ``settings.processes`` ranks: the same examples per optimizer
    step, shared out (``grad_accum`` divided when it can be, else ``batch_size``).

    Raises:
        ValueError: neither divides evenly.
    """
    n = settings.processes
    if settings.grad_accum % n == 0:
        return dataclasses.replace(settings, grad_accum=settings.grad_accum // n)
    if settings.batch_size % n == 0:
        return dataclasses.replace(settings, batch_size=settings.batch_size // n)
    raise ValueError(
        f"training.processes={n} must divide grad_accum ({settings.grad_accum}) or batch_size "
        f"({settings.batch_size}): each optimizer step's examples are shared out over the "
        "processes"
    )


def launch_command(processes: int, job: Path, config_file: str | None = None) -> list[str]:
    """The ``accelerate launch`` command line running ``job`` on ``processes`` ranks."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if config_file:
        cmd += ["--config_file", str(config_file)]
    else:
        # accelerate's multi-process launcher (torchrun underneath); without a GPU the ranks
        # are CPU processes and the Trainer joins them over gloo
        cmd += ["--multi_gpu", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(processes), "--num_machines", "1"]
    cmd += ["--main_process_port", str(free_port())]
    return [*cmd, "-m", "agents.training.worker", str(job)]


def launch(method: str, settings: Any, **kwargs: Any) -> Any:
    """Run ``train_sft`` / ``train_dpo`` (``method`` ``sft`` / ``dpo``) on ``settings.processes``
    processes; returns rank 0's :class:`~agents.training.common.TrainResult`.

    Raises:
        ValueError: the processes cannot share a step's examples evenly.
        RuntimeError: a rank failed (its output is above, on stderr).
    """
    import torch

    from agents.threads import available_cpus

    n = settings.processes
    worker_settings = split_step(settings)
    env = dict(os.environ)
    if not torch.cuda.is_available():
        threads = str(max(1, available_cpus() // n))
        env.update(AGENTS_THREADS=threads, OMP_NUM_THREADS=threads)
    if "records" in kwargs and not isinstance(kwargs["records"], list):
        kwargs["records"] = [dict(row) for row in kwargs["records"]]
    with tempfile.TemporaryDirectory(prefix="agents-ddp-") as work:
        job, result = Path(work) / "job.pkl", Path(work) / "result.pkl"
        with job.open("wb") as out:
            payload = {"settings": worker_settings, **kwargs}
            pickle.dump({"method": method, "kwargs": payload, "result": str(result)}, out)
        cmd = launch_command(n, job, getattr(settings, "accelerate_config", None))
        log.info("training on %d processes: %s", n, " ".join(cmd))
        code = subprocess.run(cmd, env=env, check=False).returncode
        if code != 0 or not result.exists():
            raise RuntimeError(
                f"training on {n} processes failed (exit {code}); the ranks' output is above"
            )
        with result.open("rb") as file:
            return pickle.load(file)

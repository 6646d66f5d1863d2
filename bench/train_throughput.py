"""Training throughput: our ``train_sft`` / ``train_dpo`` against TRL's trainers used plainly.

Both sides train a LoRA adapter on the built-in SmolLM2-135M with the same data (short
conversations and preference pairs built below), the same LoRA shape, batch size, max length,
learning rate and number of steps. "Plain" is how a user would write it with TRL directly: a
conversational ``datasets.Dataset``, the model path as a string, a ``LoraConfig`` and TRL's
defaults for everything not listed (TRL 1.16 turns gradient checkpointing and bf16 autocast on by
default; on a CPU-only machine bf16 also needs ``use_cpu=True``, or TrainingArguments refuses to
start). ``plain-matched`` is the same plain code with those two set as our runners set them on
this machine, which isolates what our wrapping itself costs or saves.

Reported: optimizer steps per second of the training loop (``train_runtime`` from the Trainer,
which excludes model loading and data preparation) and the end-to-end wall time of each call.

    python bench/train_throughput.py --steps 8
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find agents/

TOPICS = [
    "rivers", "volcanoes", "bees", "comets", "glaciers", "owls", "deserts", "tides",
    "ferns", "lightning", "coral", "wolves", "clouds", "salt", "moss", "eclipses",
]  # fmt: skip


def conversations(n: int) -> list[dict[str, Any]]:
    """``n`` short single-turn conversations."""
    rows = []
    for i in range(n):
        topic = TOPICS[i % len(TOPICS)]
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": f"Tell me one fact about {topic}. ({i})"},
                    {
                        "role": "assistant",
                        "content": f"Here is a fact about {topic}: they are studied by "
                        f"scientists all over the world, and there is always more to learn.",
                    },
                ]
            }
        )
    return rows


def pairs(n: int) -> list[dict[str, Any]]:
    """``n`` preference pairs: a correct short answer against a wrong one."""
    rows = []
    for i in range(n):
        a, b = i % 7 + 2, i % 5 + 3
        rows.append(
            {
                "prompt": [{"role": "user", "content": f"What is {a} times {b}? Answer briefly."}],
                "chosen": [{"role": "assistant", "content": f"{a} times {b} is {a * b}."}],
                "rejected": [{"role": "assistant", "content": f"{a} times {b} is {a * b + 1}."}],
            }
        )
    return rows


def plain_overrides(matched: bool) -> dict[str, Any]:
    """Config fields the plain variants set beyond the shared hyper-parameters."""
    if matched:
        return {"bf16": False, "activation_checkpointing": False}
    import torch

    # TRL defaults to bf16, which a CPU-only machine rejects unless told to use the CPU: the
    # error message says to pass use_cpu, which is what a user would do (bf16 autocast on CPU).
    return {} if torch.cuda.is_available() else {"use_cpu": True}


def plain_lora(args: argparse.Namespace) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=8, lora_alpha=16, lora_dropout=0.05, target_modules=args.targets, task_type="CAUSAL_LM"
    )


def plain_trl(
    kind: str, base: Path, rows: list[dict], out: Path, args: argparse.Namespace, matched: bool
):
    """TRL's trainer the way a user writes it: config, trainer, conversational dataset, LoRA."""
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer, SFTConfig, SFTTrainer

    if kind == "sft":
        config_class, trainer_class, specific = SFTConfig, SFTTrainer, {"learning_rate": 2e-4}
    else:
        config_class, trainer_class = DPOConfig, DPOTrainer
        specific = {"learning_rate": 5e-6, "beta": 0.1}
    config = config_class(
        output_dir=str(out / "run"),
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        max_length=args.max_length,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
        **specific,
        **plain_overrides(matched),
    )
    trainer = trainer_class(
        model=str(base),
        args=config,
        train_dataset=Dataset.from_list(rows),
        peft_config=plain_lora(args),
    )
    trainer.remove_callback(PrinterCallback)  # the log lines would flood the report
    output = trainer.train()
    trainer.save_model(str(out / "adapter"))
    return output.metrics["train_runtime"], trainer.state.global_step


def ours_sft(base: Path, rows: list[dict], out: Path, args: argparse.Namespace, matched: bool):
    from agents.training import LoraSettings, SFTSettings, train_sft

    settings = SFTSettings(
        max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length
    )
    lora = LoraSettings(r=8, alpha=16, target_modules=args.targets)
    result = train_sft(base, rows, out / "adapter", settings, lora, progress=False)
    return result.seconds, result.steps


def ours_dpo(base: Path, rows: list[dict], out: Path, args: argparse.Namespace, matched: bool):
    from agents.training import DPOSettings, LoraSettings, train_dpo

    settings = DPOSettings(
        max_steps=args.steps, batch_size=args.batch_size, max_length=args.max_length
    )
    lora = LoraSettings(r=8, alpha=16, target_modules=args.targets)
    result = train_dpo(base, rows, out / "adapter", settings, lora, progress=False)
    return result.seconds, result.steps


Runner = Callable[[Path, list[dict], Path, argparse.Namespace, bool], tuple[float, int]]


def run_once(runner: Runner, base: Path, rows: list[dict], args: argparse.Namespace, matched: bool):
    """Loop steps/s and end-to-end wall seconds of one run."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        start = time.perf_counter()
        loop_seconds, steps = runner(base, rows, Path(tmp), args, matched)
        wall = time.perf_counter() - start
    return steps / loop_seconds, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--examples", type=int, default=32, help="conversations and pairs each")
    parser.add_argument("--repeats", type=int, default=1, help="runs per variant; best is kept")
    parser.add_argument(
        "--targets",
        default="all-linear",
        help='LoRA target modules: "all-linear" or a comma list such as "q_proj,v_proj"',
    )
    parser.add_argument("--only", choices=["sft", "dpo"], default=None)
    parser.add_argument(
        "--skip-plain-defaults",
        action="store_true",
        help="leave out plain TRL with its own defaults (bf16 autocast is very slow on CPU)",
    )
    args = parser.parse_args()
    if args.targets != "all-linear":
        args.targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    logging.basicConfig(level=logging.WARNING)

    import datasets
    import torch
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()

    from agents.models.builtin import BUILTIN_MODELS

    base = BUILTIN_MODELS["smollm2-135m"].ensure_converted()
    print(
        f"SmolLM2-135M, LoRA r=8 {args.targets}, batch {args.batch_size}, max_length "
        f"{args.max_length}, {args.steps} steps, {args.examples} examples, "
        f"torch threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}"
    )
    kinds = {
        "sft": (conversations(args.examples), ours_sft, partial(plain_trl, "sft")),
        "dpo": (pairs(args.examples), ours_dpo, partial(plain_trl, "dpo")),
    }
    for kind, (rows, ours, plain) in kinds.items():
        if args.only and kind != args.only:
            continue
        variants = {
            "ours": (ours, False),
            "plain-matched": (plain, True),
            "plain": (plain, False),
        }
        if args.skip_plain_defaults:
            del variants["plain"]
        # Repeats interleave the variants, and the best run of each is kept, so a burst of other
        # load on a shared machine hurts every variant alike rather than one of them.
        results: dict[str, tuple[float, float]] = {}
        for _ in range(args.repeats):
            for name, (runner, matched) in variants.items():
                rate, wall = run_once(runner, base, rows, args, matched)
                if name not in results or rate > results[name][0]:
                    results[name] = (rate, wall)
        for name, (rate, wall) in results.items():
            print(f"{kind.upper():4} {name:14} {rate:6.3f} steps/s   end-to-end {wall:6.1f} s")
        ours_rate = results["ours"][0]
        for name in [n for n in results if n != "ours"]:
            print(f"{kind.upper():4} ratio ours/{name:14} {ours_rate / results[name][0]:.2f}")


if __name__ == "__main__":
    main()

"""Generation throughput: our batched k-sample TransformersEngine against plain ``generate``.

Both sides run the same model (default the built-in SmolLM2-135M) on the same chat prompts, each
sampled ``k`` times with the same temperature, top-p and token limit:

* ``naive``: plain transformers, one prompt and one sample per ``model.generate`` call, which is
  how a quick distillation script usually samples a teacher;
* ``engine``: one ``TransformersEngine.generate`` call for all prompts, which expands every prompt
  into ``k`` rows and generates them as left-padded batches with the KV cache.

Only generated tokens count, up to and including the first end-of-turn token of each sample (the
padding a finished row keeps receiving in a batch is not counted). Reported: tokens, wall time,
tokens per second of each side and their ratio. Model loading and one warm-up call per side are
excluded from the timings. On a CPU shared with other jobs, pass ``--threads`` below the number of
free cores: oversubscribed OpenMP threads wait on each other and distort both timings.

    python bench/generation_throughput.py
    python bench/generation_throughput.py -k 8 --max-tokens 128 --threads 1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from anywhere: find agents/

QUESTIONS = [
    "What is 17 + 25?",
    "A train travels 60 km per hour for 3 hours. How far does it go?",
    "What is 12 times 11?",
    "If I have 30 apples and give away 12, how many are left?",
    "What is half of 250?",
    "A book costs 8 dollars. How much do 7 books cost?",
    "What is 144 divided by 12?",
    "Sara is 9 and her brother is twice her age. How old is he?",
]


@dataclass
class Measurement:
    """Generated tokens and wall time of one side of the comparison."""

    name: str
    samples: int
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def messages_for(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{question} Think step by step."}]


def tokens_until_end(tokens: list[int], end_ids: set[int]) -> int:
    """Tokens of one sample up to and including its first end-of-turn token."""
    for position, token in enumerate(tokens):
        if token in end_ids:
            return position + 1
    return len(tokens)


def end_of_turn_ids(model: Any, tokenizer: Any) -> list[int]:
    """The model's own end tokens: the generation config's EOS ids and the tokenizer's EOS."""
    configured = model.generation_config.eos_token_id
    ids = set([configured] if isinstance(configured, int) else configured or [])
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


def run_naive(model_path: str, questions: list[str], args: argparse.Namespace) -> Measurement:
    """Plain transformers: one ``generate`` call per prompt and sample, no batching."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = model.to(args.device).eval()
    end_ids = end_of_turn_ids(model, tokenizer)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else end_ids[0]
    sampling: dict[str, Any] = {
        "do_sample": True,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": 0,
        "eos_token_id": end_ids,
        "pad_token_id": pad_id,
    }

    def one(question: str, max_new_tokens: int) -> list[int]:
        text = tokenizer.apply_chat_template(
            messages_for(question), tokenize=False, add_generation_prompt=True
        )
        inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(args.device)
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=max_new_tokens, **sampling)
        return output[0, inputs["input_ids"].shape[1] :].tolist()

    one(questions[0], 4)  # warm-up
    torch.manual_seed(args.seed)
    tokens = samples = 0
    began = time.perf_counter()
    for question in questions:
        for _ in range(args.k):
            tokens += tokens_until_end(one(question, args.max_tokens), set(end_ids))
            samples += 1
    seconds = time.perf_counter() - began
    name = f"naive (plain generate, 1 sample per call, end ids {end_ids})"
    return Measurement(name, samples, tokens, seconds)


def run_engine(engine: Any, questions: list[str], args: argparse.Namespace) -> Measurement:
    """Our engine: all prompts and all ``k`` samples in one ``generate`` call."""
    from agents.models.base import ChatRequest

    def requests(max_tokens: int, n: int) -> list[ChatRequest]:
        return [
            ChatRequest(
                messages=messages_for(q),
                n=n,
                temperature=args.temperature,
                top_p=args.top_p,
                max_tokens=max_tokens,
                seed=args.seed + i,
            )
            for i, q in enumerate(questions)
        ]

    engine.generate(requests(4, 1)[:1])  # warm-up
    began = time.perf_counter()
    results = engine.generate(requests(args.max_tokens, args.k))
    seconds = time.perf_counter() - began
    # completion_tokens counts each sample up to and including its end-of-turn token.
    tokens = sum(r.completion_tokens for r in results)
    samples = sum(len(r.completions) for r in results)
    return Measurement(
        f"engine (batched, batch_size={engine.batch_size})", samples, tokens, seconds
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="builtin:smollm2-135m", help="model spec")
    parser.add_argument("--prompts", type=int, default=8, help="number of prompts (max 8)")
    parser.add_argument("-k", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per sample")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=32, help="engine rows per generate call")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)

    import torch

    from agents.models import load_engine, resolve_local_model
    from agents.models.transformers_engine import pick_device_and_dtype

    if args.threads:
        torch.set_num_threads(args.threads)
    args.device, _ = pick_device_and_dtype(args.device)
    questions = QUESTIONS[: max(1, min(args.prompts, len(QUESTIONS)))]

    print(
        f"model {args.model} on {args.device} ({torch.get_num_threads()} threads): "
        f"{len(questions)} prompts x {args.k} samples, max_tokens={args.max_tokens}, "
        f"temperature={args.temperature}, top_p={args.top_p}"
    )
    engine = load_engine(args.model, device=args.device, batch_size=args.batch_size)
    measured = [run_engine(engine, questions, args)]
    engine.close()
    measured.insert(0, run_naive(resolve_local_model(args.model), questions, args))

    print(f"{'method':<56} {'samples':>7} {'tokens':>7} {'seconds':>8} {'tokens/s':>9}")
    for m in measured:
        print(f"{m.name:<56} {m.samples:>7} {m.tokens:>7} {m.seconds:>8.2f} {m.tokens_per_s:>9.1f}")
    naive, ours = measured
    ratio = ours.tokens_per_s / naive.tokens_per_s if naive.tokens_per_s else float("inf")
    print(f"speed-up (engine / naive tokens/s): {ratio:.2f}x (target >= 3x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Generation throughput per engine, model and workload, as a ratio to HF's batched ``generate``.

Every row generates the same chat prompts with the same sampling (temperature 0.8, top-p 0.95)
and token limit, and counts generated tokens up to and including each sample's first end token.
The baseline, measured in the same run for each model and workload, is what a careful script
does with plain transformers: one ``model.generate`` call over all prompts, left-padded, with
``num_return_sequences=k``. Rows:

* ``hf-generate``: that baseline (float32 on CPU, the transformers default);
* ``engine fp32`` / ``engine bf16``: this project's in-process engine (``load_engine``), which
  expands prompts into rows, shares the system prompt and stops rows at their end token;
* ``vllm``: the managed vLLM server (``vllm:`` spec, bfloat16), when ``scripts/vllm_cpu.sh``
  has set its environment up; its start (about 1.5 minutes) is not timed.

Workloads: ``1 stream`` (one prompt, one sample) and ``16x4`` (16 prompts x 4 samples). Model
loading and one warm-up call per row are excluded. Run it on an otherwise idle machine (see
``bench/contention.py`` for the contended case):

    python bench/generation_throughput.py
    python bench/generation_throughput.py --models builtin:smollm2-135m --max-tokens 32
    python bench/generation_throughput.py --markdown     # the README's table
"""

from __future__ import annotations

import argparse
import gc
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
    "Name three rivers in Europe.",
    "Write one sentence about the sea.",
    "Who wrote Hamlet?",
    "Give a synonym of quick.",
    "What is the capital of Japan?",
    "How many legs does a spider have?",
    "What is 9 squared?",
    "Why is the sky blue? Answer in one sentence.",
]
WORKLOADS = {"1 stream": (1, 1), "16x4": (16, 4)}
TEMPERATURE, TOP_P = 0.8, 0.95


@dataclass
class Row:
    model: str
    workload: str
    engine: str
    tokens: int
    seconds: float

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def messages_for(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{question} Think step by step."}]


def tokens_until_end(tokens: list[int], end_ids: set[int]) -> int:
    """Tokens of one sample up to and including its first end token."""
    for position, token in enumerate(tokens):
        if token in end_ids:
            return position + 1
    return len(tokens)


def hf_generate(model_path: str, prompts: int, k: int, max_tokens: int, seed: int) -> tuple:
    """HF's batched ``generate``: all prompts in one call, ``num_return_sequences=k``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path, padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
    configured = model.generation_config.eos_token_id
    end_ids = set([configured] if isinstance(configured, int) else configured or [])
    if tokenizer.eos_token_id is not None:
        end_ids.add(tokenizer.eos_token_id)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(end_ids)
    texts = [
        tokenizer.apply_chat_template(messages_for(q), tokenize=False, add_generation_prompt=True)
        for q in QUESTIONS[:prompts]
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)

    def run(new_tokens: int) -> int:
        with torch.inference_mode():
            out = model.generate(
                **inputs,
                do_sample=True,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                top_k=0,
                max_new_tokens=new_tokens,
                num_return_sequences=k,
                eos_token_id=sorted(end_ids),
                pad_token_id=pad,
            )
        generated = out[:, inputs["input_ids"].shape[1] :].tolist()
        return sum(tokens_until_end(row, end_ids) for row in generated)

    run(4)  # warm-up
    torch.manual_seed(seed)
    began = time.perf_counter()
    tokens = run(max_tokens)
    seconds = time.perf_counter() - began
    return tokens, seconds


def engine_generate(engine: Any, prompts: int, k: int, max_tokens: int, seed: int) -> tuple:
    """One ``Engine.generate`` call for all prompts and samples."""
    from agents.models.base import ChatRequest

    def requests(new_tokens: int, count: int) -> list[ChatRequest]:
        return [
            ChatRequest(
                messages=messages_for(q),
                n=k,
                temperature=TEMPERATURE,
                top_p=TOP_P,
                max_tokens=new_tokens,
                seed=seed + i,
            )
            for i, q in enumerate(QUESTIONS[:count])
        ]

    engine.generate(requests(4, 1))  # warm-up
    began = time.perf_counter()
    results = engine.generate(requests(max_tokens, prompts))
    seconds = time.perf_counter() - began
    return sum(r.completion_tokens for r in results), seconds


def measure_model(model: str, args: argparse.Namespace) -> list[Row]:
    from agents.models import load_engine, resolve_local_model
    from agents.models.vllm_server import vllm_env

    rows: list[Row] = []
    path = resolve_local_model(model)
    for workload, (prompts, k) in WORKLOADS.items():
        tokens, seconds = hf_generate(path, prompts, k, args.max_tokens, args.seed)
        rows.append(Row(model, workload, "hf-generate fp32", tokens, seconds))
        print(f"  {model} {workload} hf-generate: {tokens / seconds:.1f} tokens/s", flush=True)
    engines: list[tuple[str, str, dict[str, Any]]] = [
        ("engine fp32", model, {"dtype": "float32"}),
        ("engine bf16", model, {"dtype": "bfloat16"}),
    ]
    if vllm_env() is not None and not args.no_vllm:
        engines.append(("vllm bf16", f"vllm:{model}", {"server": True, "max_model_len": 2048}))
    for name, spec, options in engines:
        engine = load_engine(spec, **options)
        try:
            for workload, (prompts, k) in WORKLOADS.items():
                tokens, seconds = engine_generate(engine, prompts, k, args.max_tokens, args.seed)
                rows.append(Row(model, workload, name, tokens, seconds))
                print(f"  {model} {workload} {name}: {tokens / seconds:.1f} tokens/s", flush=True)
        finally:
            engine.close()
            gc.collect()
    return rows


def table(rows: list[Row], markdown: bool) -> str:
    base = {(r.model, r.workload): r.tokens_per_s for r in rows if r.engine.startswith("hf-")}
    lines = []
    if markdown:
        lines += [
            "| model | workload | engine | tokens/s | × HF generate |",
            "|---|---|---|---:|---:|",
        ]
    else:
        lines.append(f"{'model':<28} {'workload':<9} {'engine':<17} {'tokens/s':>9} {'ratio':>7}")
    for r in rows:
        ratio = r.tokens_per_s / base[(r.model, r.workload)]
        if markdown:
            name = r.model.removeprefix("builtin:")
            lines.append(
                f"| {name} | {r.workload} | {r.engine} | {r.tokens_per_s:.1f} | {ratio:.2f}× |"
            )
        else:
            lines.append(
                f"{r.model:<28} {r.workload:<9} {r.engine:<17} {r.tokens_per_s:>9.1f} "
                f"{ratio:>6.2f}x"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models",
        nargs="+",
        default=["builtin:smollm2-135m", "builtin:qwen2.5-coder-0.5b"],
        help="local model specs",
    )
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per sample")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-vllm", action="store_true", help="skip vLLM even when installed")
    parser.add_argument("--markdown", action="store_true", help="print the table as markdown")
    args = parser.parse_args(argv)

    import torch

    from agents.threads import configure

    configure()
    print(
        f"{len(args.models)} model(s), workloads {', '.join(WORKLOADS)}, max_tokens "
        f"{args.max_tokens}, {torch.get_num_threads()} torch threads",
        flush=True,
    )
    rows = [row for model in args.models for row in measure_model(model, args)]
    print(table(rows, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())

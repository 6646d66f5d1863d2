"""A rough duration of a Socratic run before it starts, from its config and measured speeds.

Each stage's model work is counted as a token budget (samples × max tokens) or training steps and
divided by the speed measured for that model size on a 2-core CPU (bench/generation_throughput.py,
bench/train_throughput.py). Small models stop early once trained, so the budget is an upper
bound for generation; remote models (API specs) count as free. Good to a factor of about two: it
tells a user whether to expect minutes or hours, not when to come back.
"""

from __future__ import annotations

import math

from agents.schemes.socratic.config import SocraticJob

# Budget tokens per second when generating in batches on 2 CPU cores, by built-in model.
_TOKENS_PER_SECOND = {
    "builtin:smollm2-135m": 90.0,
    "builtin:qwen2.5-coder-0.5b": 30.0,
    "builtin:qwen2.5-coder-1.5b": 10.0,
}
_DEFAULT_LOCAL = 20.0  # another local model: assume about a 0.5B's speed
# Seconds per training step of SmolLM2-135M (LoRA, up to 256 tokens), measured in Socratic runs:
# SFT at batch 8 (6.7 s on bare answers, 12.8 s on worked solutions), DPO at batch 4.
_SFT_STEP, _DPO_STEP = 10.0, 6.6
_LOAD = {"builtin:smollm2-135m": 10.0, "builtin:qwen2.5-coder-0.5b": 25.0}


def _speed(spec: str) -> float | None:
    if spec.startswith(("openai:", "ollama:")):
        return None  # remote: not this machine's time
    return _TOKENS_PER_SECOND.get(spec, _DEFAULT_LOCAL)


def _generate(spec: str, samples: float, max_tokens: int) -> float:
    speed = _speed(spec)
    return 0.0 if speed is None else samples * max_tokens / speed


def _steps(examples: float, settings: object) -> float:
    max_steps = getattr(settings, "max_steps", None)
    if max_steps and max_steps > 0:
        return float(max_steps)
    batch = max(getattr(settings, "batch_size", 4), 1)
    return math.ceil(max(examples, 1) / batch) * getattr(settings, "epochs", 1)


def estimate_seconds(config: SocraticJob) -> dict[str, float]:
    """Seconds per part of the run (``calibrate``, ``warmup``, ``eval``, ``rounds``, ``load``)."""
    c = config
    seeds = c.seeds.count
    candidates = (c.calibrate.candidates or 3 * seeds) if c.calibrate.enabled else 0
    heldout = c.seeds.heldout + (c.seeds.transfer_heldout if c.seeds.transfer else 0)
    evals = c.rounds + 1 + int(c.eval_base)
    per_round = seeds or 1
    refined = min(per_round, c.refine.max_problems or per_round)
    pairs = per_round * c.max_pairs_per_question / 2  # about half the questions yield pairs
    round_seconds = (
        _generate(c.solver, per_round * c.solve.samples, c.solve.max_tokens)
        + _generate(c.teacher, refined, c.refine.max_tokens)
        + _generate(c.teacher, refined * c.quality.samples, c.quality.max_tokens)
        + _generate(c.solver, refined * c.utility.samples, c.solve.max_tokens)
        + _steps(pairs, c.solver_training) * _DPO_STEP
        + (_steps(refined / 2, c.generator_training) * _SFT_STEP if c.generator_training else 0)
    )
    warmup = 0.0
    if c.warmup is not None and c.seeds.warmup_pool:
        warmup = _steps(c.seeds.warmup_pool, c.warmup) * _SFT_STEP
        warmup += _generate(c.teacher, c.seeds.warmup_pool, c.quality.max_tokens) / 2
    return {
        "load": sum(_LOAD.get(spec, 30.0) for spec in {c.teacher, c.solver, c.generator}),
        "calibrate": _generate(c.solver, candidates * c.calibrate.samples, c.calibrate.max_tokens),
        "warmup": warmup,
        "eval": evals * _generate(c.solver, heldout * c.eval.samples, c.eval.max_tokens)
        + (
            _generate(c.teacher, heldout * c.eval.samples, c.eval.max_tokens)
            if c.eval_teacher
            else 0
        ),
        "rounds": c.rounds * round_seconds,
    }


def describe(config: SocraticJob) -> str:
    """``estimated duration: about 2 h 10 min on this CPU (calibrate 35 min, ...)``."""
    parts = estimate_seconds(config)
    total = sum(parts.values())

    def clock(seconds: float) -> str:
        minutes = max(1, round(seconds / 60))
        return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"

    detail = ", ".join(f"{name} {clock(s)}" for name, s in parts.items() if s >= 30)
    return f"estimated duration: about {clock(total)} on 2 CPU cores ({detail}); rough, ±2x"

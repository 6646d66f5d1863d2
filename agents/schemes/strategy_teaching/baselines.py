"""The baselines learned strategies face on held-out tasks (after arXiv 2408.07238's table).

* **generic**: the student with generic guidance — as many strategies as the library holds,
  written by the teacher from the policy alone, without any scenario or student reply — kept in
  a library of the run's own and retrieved exactly like the learned ones. If learned strategies
  beat these, it is the scenarios that taught something, not merely advice in the prompt.
* **finetune**: the student fine-tuned (LoRA SFT) on the teacher's replies to the run's
  scenarios, the same conversations the strategies were written for: the weights-changing way
  to learn from the same teacher.

Each is a stage (committed atomically, resumable) and can be turned off in ``evaluation``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents.datasets import sft_records_from_rows
from agents.episodes.dialogue import agent_system_prompt, reply_text
from agents.models.base import ChatRequest
from agents.schemes.base import StageOutput, train_role
from agents.schemes.strategy_teaching.rules import (
    PROMPTS,
    normalised,
    parse_strategies,
    system_prompt,
    too_specific,
)

if TYPE_CHECKING:
    from agents.schemes.strategy_teaching.context import TeachingContext, TeachingState

#: Strategies asked for in one request of the generic writer, and batches of requests tried.
PER_REQUEST = 4
BATCHES = 3


def generic(state: TeachingState, ctx: TeachingContext, rnd: int) -> StageOutput:
    """The teacher writes generic strategies from the policy alone, as many as the library has."""
    cfg = ctx.config
    if not cfg.evaluation.generic:
        return StageOutput({"skipped": True})
    domain, target = ctx.domain(), ctx.library(ctx.generic_library_name)
    count = ctx.library().count(ctx.statuses)
    # A re-run after a crash finds what its first attempt wrote (``origin`` is per position).
    have = {normalised(s.text) for s in target.strategies()}
    written, requests_made, malformed = len(have), 0, 0
    author = f"teacher:{cfg.teacher}"
    for batch in range(BATCHES):
        missing = count - written
        if missing <= 0:
            break
        asks = -(-missing // PER_REQUEST) + 1  # one spare request: some lines are unusable
        requests = [
            ChatRequest(
                messages=[
                    {
                        "role": "system",
                        "content": system_prompt(
                            "generic_system", domain, count=min(PER_REQUEST, missing)
                        ),
                    },
                    {"role": "user", "content": PROMPTS["generic_user"]},
                ],
                max_tokens=cfg.refine.writer_max_tokens,
                temperature=cfg.refine.writer_temperature,
                seed=cfg.seed + 5000 + 100 * batch + i,
            )
            for i in range(asks)
        ]
        requests_made += len(requests)
        results = ctx.engine("teacher").generate(requests, progress=ctx.progress)
        for result in results:
            parsed = parse_strategies(result.text)
            if parsed is None:
                malformed += 1
                continue
            for new in parsed["new"]:
                key = normalised(new["strategy"])
                if written >= count or key in have or too_specific(new["strategy"], [], ""):
                    continue
                target.add(
                    new["situation"] or new["strategy"][:200],
                    new["strategy"],
                    author=author,
                    run_id=ctx.run_id,
                    teacher=cfg.teacher,
                    domain=domain.name,
                    origin=f"{ctx.run_id}/generic/{written}",
                )
                have.add(key)
                written += 1
    metrics = {
        "library_strategies": count,
        "generic_strategies": written,
        "requests": requests_made,
        "malformed": malformed,
        "library": target.name,
    }
    return StageOutput(metrics)


def finetune_records(ctx: TeachingContext) -> list[dict[str, Any]]:
    """One SFT record per scenario of the run: the conversation under the agent's system prompt
    (without strategies), learning only the teacher's reply at its end."""
    domain = ctx.domain()
    system = {"role": "system", "content": agent_system_prompt(domain)}
    rows = []
    for scenario in ctx.library().scenarios(run_id=ctx.run_id):
        teacher = scenario.meta.get("teacher_message")
        if not teacher or not reply_text(teacher):
            continue
        messages = [system, *scenario.messages, teacher]
        rows.append(
            {
                "messages": messages,
                "tools": domain.schemas(),
                "context_messages": len(messages) - 1,
            }
        )
    return sft_records_from_rows(rows)


def finetune(state: TeachingState, ctx: TeachingContext, rnd: int) -> StageOutput:
    """LoRA SFT of the student on the teacher's replies to the run's scenarios."""
    cfg = ctx.config
    if not cfg.evaluation.finetune:
        return StageOutput({"skipped": True})
    records = finetune_records(ctx)
    if not records:
        return StageOutput({"examples": 0, "skipped": "the run has no scenario to learn from"})
    # The engines (judge, teacher, student) would sit in memory beside the training: let them
    # go; the evaluation loads them again (seconds, against gigabytes held).
    ctx.close()
    return train_role(
        ctx,
        "student_finetuned",
        rnd,
        records,
        base=cfg.student,
        method="sft",
        settings=cfg.training,
        lora=cfg.lora,
        previous=None,
        system_prompt=agent_system_prompt(ctx.domain()),
    )

"""The "Agent distillation" part of the run report: evaluations, training data, gap closed.

An agent-distill run's held-out evaluations (``eval_student_base``, ``eval_teacher``,
``eval_student``, ``eval_student_sc``, ``eval_cot``), what became of the teacher's training
trajectories (``teacher_cot``, ``teacher_agent``, ``filter``) and how much of the
teacher–student gap training closed; its panels show accuracy per agent, the filter's outcome
and how the teacher's episodes ended.
"""

from __future__ import annotations

from typing import Any

from agents.reporting import (
    COMPARISON_HEADERS,
    DASH,
    ReportSection,
    RunView,
    comparison_rows,
    finished,
    interval_text,
    is_num,
    latest,
    no_data,
    num,
    paired,
    table,
)

#: Held-out evaluations in report order: stage → (trajectory role, short name for plots, label).
EVALS: dict[str, tuple[str, str, str]] = {
    "eval_student_closed": (
        "student_base_cot",
        "student closed-book",
        "student before training, closed book (no tools)",
    ),
    "eval_teacher_closed": (
        "teacher_cot",
        "teacher closed-book",
        "teacher, closed book (no tools)",
    ),
    "eval_student_base": ("student_base", "student before", "student before training (agent)"),
    "eval_teacher": ("teacher", "teacher", "teacher (agent)"),
    "eval_student": ("student", "student after", "student after agent distillation"),
    "eval_student_sc": (
        "student_sc",
        "student after + SC",
        "student after + self-consistent actions",
    ),
    "eval_cot": ("student_cot", "CoT student", "student after CoT distillation (no tools)"),
}
#: Stages with a table of their own (kept out of "Stage metrics").
STAGES = (*EVALS, "write_facts", "teacher_cot", "teacher_agent", "filter")
#: Per-source comparisons: the distilled agent against each baseline, over the same tasks.
SOURCE_PAIRS = (
    ("eval_student_base", "eval_student"),
    ("eval_cot", "eval_student"),
    ("eval_student_closed", "eval_student"),
    ("eval_student_base", "eval_student_sc"),
    ("eval_cot", "eval_student_sc"),
)
#: Why the filter dropped a trajectory: metric key → label.
DROP_REASONS = {
    "dropped_wrong_answer": "wrong answer",
    "dropped_parse_error": "parse error",
    "dropped_step_limit": "step limit",
}


def _agent_evals(data: RunView) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, label, metrics) of each finished agent-distill evaluation with an accuracy."""
    rows = []
    for name, (_, _, label) in EVALS.items():
        metrics = finished(data, name)
        if is_num(metrics.get("accuracy")):
            rows.append((name, str(metrics.get("label") or label), metrics))
    return rows


def _gap_closed(data: RunView) -> float | None:
    """(student after − student before) / (teacher − student before), if the teacher is ahead."""
    before = finished(data, "eval_student_base").get("accuracy")
    after = finished(data, "eval_student").get("accuracy")
    teacher = finished(data, "eval_teacher").get("accuracy")
    if not (is_num(before) and is_num(after) and is_num(teacher)) or teacher <= before:
        return None
    return (after - before) / (teacher - before)


def _share(part: Any, whole: Any) -> str:
    if is_num(part) and is_num(whole) and whole:
        return f"{num(part)} / {num(whole)} ({part / whole:.1%})"
    return f"{num(part)} / {num(whole)}"


def _markdown(data: RunView) -> list[str]:
    """The "Agent distillation" section: evaluations, training trajectories, gap closed."""
    lines = ["", "## Agent distillation", ""]
    evals = _agent_evals(data)
    headers = ["agent", "items", "accuracy", "95% CI", "math", "factual", "answered"]
    headers += ["mean steps", "parse errors"]
    keys = ("accuracy_math", "accuracy_factual", "answered", "mean_steps", "parse_errors")
    rows = [
        [label, num(m.get("items")), num(m.get("accuracy")), interval_text(m)]
        + [num(m.get(k)) for k in keys]
        for _, label, m in evals
    ]
    if rows:
        lines += ["Held-out evaluations:", "", *table(headers, rows), ""]
    else:
        lines += ["No held-out evaluation has finished yet.", ""]
    base = finished(data, "eval_student_base")
    found = paired(
        [
            (f"{EVALS['eval_student_base'][2]} → {EVALS[name][2]}", base, finished(data, name))
            for name in ("eval_student", "eval_student_sc", "eval_cot")
        ]
        + [
            (
                f"{EVALS['eval_cot'][2]} → {EVALS[name][2]}",
                finished(data, "eval_cot"),
                finished(data, name),
            )
            for name in ("eval_student", "eval_student_sc")
        ]
    )
    if found:
        lines += [
            "Paired over the same held-out tasks:",
            "",
            *table(COMPARISON_HEADERS, comparison_rows(found)),
            "",
        ]
    lines += _per_source(evals, data)

    cot, agent, kept = (finished(data, n) for n in ("teacher_cot", "teacher_agent", "filter"))
    bullets = []
    facts = finished(data, "write_facts")
    if is_num(facts.get("articles")):
        dropped = [
            f"{k.removeprefix('dropped_').replace('_', ' ')} {num(v)}"
            for k, v in facts.items()
            if k.startswith("dropped_") and v
        ]
        bullets.append(
            f"- corpus facts: {num(facts.get('kept'))} questions from {num(facts['articles'])} "
            f"articles ({num(facts.get('tasks'))} training, {num(facts.get('heldout'))} held-out)"
            + ("; dropped: " + ", ".join(dropped) if dropped else "")
        )
    if is_num(cot.get("accuracy")):
        bullets.append(f"- teacher chain of thought: {num(cot['accuracy'])} correct")
    if is_num(agent.get("accuracy")):
        tasks = agent.get("trajectories", agent.get("items"))
        bullets.append(f"- teacher agent: {num(agent['accuracy'])} correct on {num(tasks)} tasks")
    if kept:
        text = f"- filter: kept {_share(kept.get('kept'), kept.get('trajectories'))}"
        dropped = [f"{label} {num(kept[k])}" for k, label in DROP_REASONS.items() if k in kept]
        if dropped:
            text += "; dropped: " + ", ".join(dropped)
        if "kept_with_exec_errors" in kept:
            text += f"; kept with execution errors: {num(kept['kept_with_exec_errors'])}"
        if is_num(kept.get("kept_mean_steps")):
            text += (
                f"; kept trajectories: mean steps {num(kept['kept_mean_steps'])}, "
                f"≥ 1 python_exec {num(kept.get('kept_with_python'))}, "
                f"≥ 1 retrieve {num(kept.get('kept_with_retrieve'))}"
            )
        if kept.get("judged"):
            text += f"; judged by the teacher: {num(kept['judged'])}"
            text += f", {num(kept.get('judged_correct'))} correct"
        bullets.append(text)
    if bullets:
        lines += ["Teacher's training trajectories:", "", *bullets, ""]

    gap = _gap_closed(data)
    before = finished(data, "eval_student_base").get("accuracy")
    after = finished(data, "eval_student").get("accuracy")
    teacher = finished(data, "eval_teacher").get("accuracy")
    if gap is not None:
        lines.append(
            f"Gap closed: **{gap:.3f}** = (student after {after:.3f} − before {before:.3f}) / "
            f"(teacher {teacher:.3f} − before {before:.3f})"
        )
    elif is_num(before) and is_num(teacher) and teacher <= before:
        lines.append(f"Gap closed: {DASH} (the teacher does not beat the student before training)")
    else:
        lines.append(
            f"Gap closed: {DASH} (needs the student before, the student after and the teacher)"
        )

    skipped = []
    for name in STAGES:
        stage = latest(data, name)
        if stage is not None and stage.status == "finished" and "skipped" in (stage.metrics or {}):
            skipped.append(f"`{name}` ({stage.metrics['skipped']})")
    if skipped:
        lines += ["", "Skipped: " + ", ".join(skipped) + "."]
    return lines


def _per_source(evals: list[tuple[str, str, dict[str, Any]]], data: RunView) -> list[str]:
    """Accuracy (95% CI) per task source and agent, and paired tests per source."""
    sources = sorted({s for _, _, m in evals for s in m.get("sources") or []})
    if len(sources) < 2 and not any(s not in ("math", "factual") for s in sources):
        return []
    headers = ["agent", *sources]
    rows = []
    for _, label, m in evals:
        cells = []
        for source in sources:
            value = m.get(f"{source}_accuracy")
            cells.append(
                f"{num(value)} ({interval_text(m, f'{source}_')})" if is_num(value) else DASH
            )
        rows.append([label, *cells])
    lines = ["Held-out accuracy (95% CI) per task source:", "", *table(headers, rows), ""]
    found = []
    for source in sources:
        found += paired(
            [
                (
                    f"{source}: {EVALS[before][1]} → {EVALS[after][1]}",
                    finished(data, before),
                    finished(data, after),
                )
                for before, after in SOURCE_PAIRS
            ],
            part=f"{source}_",
        )
    if found:
        lines += [
            "Paired per task source:",
            "",
            *table(COMPARISON_HEADERS, comparison_rows(found)),
            "",
        ]
    return lines


def _teacher_outcomes(metrics: dict[str, Any]) -> dict[str, float]:
    """How the teacher's training episodes ended: correct, wrong answer, no final answer."""
    total = metrics.get("trajectories", metrics.get("items"))
    accuracy, answered = metrics.get("accuracy"), metrics.get("answered")
    if not (is_num(total) and is_num(accuracy)):
        return {}
    correct = accuracy * total
    if not is_num(answered):
        return {"correct": correct, "incorrect": total - correct}
    return {
        "correct": correct,
        "wrong answer": answered * total - correct,
        "no final answer": (1 - answered) * total,
    }


def _plot(data: RunView, ax_acc: Any, ax_filter: Any, ax_teacher: Any) -> None:
    """Panels (a) to (c) of an agent-distill run."""
    ax_acc.set_title("(a) held-out accuracy per agent")
    evals = _agent_evals(data)
    if evals:
        groups = [
            ("overall", "accuracy"),
            ("math", "accuracy_math"),
            ("factual", "accuracy_factual"),
        ]
        groups = [(g, k) for g, k in groups if any(is_num(m.get(k)) for _, _, m in evals)]
        width = 0.8 / len(groups)
        xs = range(len(evals))
        for j, (group, key) in enumerate(groups):
            heights = [float(m[key]) if is_num(m.get(key)) else 0.0 for _, _, m in evals]
            offset = (j - (len(groups) - 1) / 2) * width
            bars = ax_acc.bar([x + offset for x in xs], heights, width=width, label=group)
            ax_acc.bar_label(bars, fmt="%.2f", fontsize=7)
        ax_acc.set_xticks(list(xs), [EVALS[name][1] for name, _, _ in evals], fontsize=8)
        ax_acc.set(ylabel="accuracy", ylim=(0, 1.1))
        ax_acc.legend(loc="upper left", fontsize=8, ncols=len(groups))
    else:
        no_data(ax_acc)

    ax_filter.set_title("(b) teacher trajectories: kept and dropped")
    kept = finished(data, "filter")
    outcome = {"kept": kept.get("kept")} | {
        label: kept.get(key) for key, label in DROP_REASONS.items()
    }
    outcome = {k: float(v) for k, v in outcome.items() if is_num(v)}
    if outcome:
        colors = ["tab:green", "tab:red", "tab:orange", "tab:grey"][: len(outcome)]
        bars = ax_filter.bar(list(outcome), list(outcome.values()), color=colors)
        ax_filter.bar_label(bars, fmt="%g", fontsize=8)
        ax_filter.set_ylabel("trajectories")
        ax_filter.margins(y=0.15)
        if is_num(kept.get("kept_with_exec_errors")):
            note = f"kept with execution errors: {kept['kept_with_exec_errors']:,}"
            ax_filter.text(0.98, 0.95, note, transform=ax_filter.transAxes, ha="right", fontsize=8)
    else:
        no_data(ax_filter)

    ax_teacher.set_title("(c) teacher agent on the training tasks")
    agent = finished(data, "teacher_agent")
    ends = _teacher_outcomes(agent)
    if ends:
        colors = ["tab:green", "tab:red", "tab:grey"][: len(ends)]
        bars = ax_teacher.bar(list(ends), list(ends.values()), color=colors)
        ax_teacher.bar_label(bars, fmt="%.0f", fontsize=8)
        ax_teacher.set_ylabel("episodes")
        ax_teacher.margins(y=0.15)
        notes = [
            f"{label}: {num(agent[key])}"
            for key, label in (
                ("mean_steps", "mean steps"),
                ("parse_errors", "parse errors"),
                ("exec_errors", "execution errors"),
            )
            if is_num(agent.get(key))
        ]
        if notes:
            box = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85}
            ax_teacher.text(
                0.98,
                0.95,
                "\n".join(notes),
                transform=ax_teacher.transAxes,
                ha="right",
                va="top",
                fontsize=8,
                bbox=box,
            )
    else:
        no_data(ax_teacher)


def _has_plot_data(data: RunView) -> bool:
    return any(finished(data, name) for name in (*EVALS, "filter", "teacher_agent"))


SECTION = ReportSection(_markdown, stages=STAGES, plot=_plot, has_plot_data=_has_plot_data)

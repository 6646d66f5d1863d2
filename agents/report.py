"""The run report: one markdown file and one PNG figure for any run in the store.

The Socratic scheme's stages (``eval_base``, ``eval``, ``warmup`` and, per round, ``solve``,
``verify``, ``pairs``, ``train_solver``, ``zones``, ``refine``, ``quality``, ``utility``,
``train_generator``, ``curriculum``) get their own tables and panels. Any other stage still shows
up with its metrics and its time, so SFT, DPO and eval runs get a report too. A missing stage or
metric is left out (a dash in a table, a "no data" panel), never guessed.

An agent-distill run gets an "Agent distillation" section instead: its held-out evaluations
(``eval_student_base``, ``eval_teacher``, ``eval_student``, ``eval_student_sc``, ``eval_cot``),
what became of the teacher's training trajectories (``teacher_cot``, ``teacher_agent``,
``filter``) and how much of the teacher–student gap training closed; its figure shows accuracy
per agent, the filter's outcome and the teacher's episodes.

A strategy-teaching run gets a "Strategy teaching" section (see :mod:`agents.report_strategy`):
its held-out dialogues (``eval_dialogues``), judged next replies (``eval_judge``), one row per
round (``scenarios``, ``refine``) and the strategies the run wrote into its library; its figure
shows the judged win rates, held-out success and violations per agent, and the scenarios and
strategies of each round.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agents.store import Run, Stage, Store, Usage

if TYPE_CHECKING:
    from strategies.records import Strategy

logger = logging.getLogger(__name__)

MARKDOWN_NAME = "report.md"
PLOT_NAME = "report.png"
LOOP_STAGES = ("solve", "verify", "pairs", "zones", "refine", "quality", "utility", "curriculum")
ZONES = ("mastered", "learning", "too_hard", "unseen")
_DASH = "—"

AGENT_DISTILL = "agent-distill"
#: Agent-distill evaluations in report order: stage → (short name for plots, label if unrecorded).
AGENT_EVALS = {
    "eval_student_base": ("student before", "student before training (agent)"),
    "eval_teacher": ("teacher", "teacher (agent)"),
    "eval_student": ("student after", "student after agent distillation"),
    "eval_student_sc": ("student after + SC", "student after + self-consistent actions"),
    "eval_cot": ("CoT student", "student after CoT distillation (no tools)"),
}
#: Agent-distill stages with a table of their own (kept out of "Stage metrics").
AGENT_STAGES = (*AGENT_EVALS, "teacher_cot", "teacher_agent", "filter")
#: Why the filter dropped a trajectory: metric key → label.
DROP_REASONS = {
    "dropped_wrong_answer": "wrong answer",
    "dropped_parse_error": "parse error",
    "dropped_step_limit": "step limit",
}

# Strategy-teaching tables and panels live in agents.report_strategy, which builds on this
# module's helpers, so it is imported where it is used rather than at the top.
STRATEGY_TEACHING = "strategy-teaching"


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote.

    Attributes:
        markdown: The markdown report.
        plot: The PNG figure, or None when no stage has anything to plot.
    """

    markdown: Path
    plot: Path | None


@dataclass
class _RunData:
    run: Run
    stages: list[Stage]
    usage: dict[tuple[str | None, str], Usage]
    strategies: list[Strategy] = field(default_factory=list)
    by_key: dict[tuple[int, str], Stage] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {(s.round, s.name): s for s in self.stages}

    def metrics(self, round: int, name: str) -> dict[str, Any]:
        stage = self.by_key.get((round, name))
        return dict(stage.metrics or {}) if stage is not None else {}


def _load(store: Store, run_id: str) -> _RunData:
    run = store.get_run(run_id)
    strategies: list[Strategy] = []
    if run.scheme == STRATEGY_TEACHING:
        from agents.report_strategy import load_strategies

        strategies = load_strategies(store, run_id)
    return _RunData(run, store.stages(run_id), store.usage(run_id), strategies)


def _is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _num(value: Any) -> str:
    """A metric as table text: ints with separators, floats to 3 decimals (tiny ones in e-form)."""
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_num(v)}" for k, v in value.items()) or _DASH
    return str(value)


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; columns (after the first) that hold only dashes are dropped."""
    keep = [i for i in range(len(headers)) if i == 0 or any(r[i] != _DASH for r in rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells[i].replace("|", "\\|") for i in keep) + " |"

    # Right-align the columns that hold numbers (a dash counts as one).
    numeric = [all(r[i][:1] in "0123456789+-.—" for r in rows) for i in keep]
    rule = "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"
    return [line(headers), rule, *map(line, rows)]


def _section(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["", f"## {title}", "", *_table(headers, rows)] if rows else []


def _accuracy_rows(data: _RunData) -> list[tuple[str, int | None, float, dict[str, Any]]]:
    """(label, eval round or None for the base model, accuracy, metrics), in report order."""
    rows: list[tuple[str, int | None, float, dict[str, Any]]] = []
    base = data.metrics(0, "eval_base")
    if _is_num(base.get("accuracy")):
        rows.append(("base model", None, float(base["accuracy"]), base))
    # Round 0 is "before round 1" only in a run that has rounds; a plain eval run has one model.
    looped = bool(base) or any(s.round >= 1 or s.name == "warmup" for s in data.stages)
    for stage in sorted((s for s in data.stages if s.name == "eval"), key=lambda s: s.round):
        metrics = stage.metrics or {}
        if not _is_num(metrics.get("accuracy")):
            continue
        if stage.round == 0:
            label = "before round 1" if looped else "evaluated model"
        else:
            label = f"after round {stage.round}"
        rows.append((label, stage.round, float(metrics["accuracy"]), metrics))
    return rows


def _loop_rounds(data: _RunData) -> list[int]:
    if data.run.scheme == STRATEGY_TEACHING:  # its "refine" is not the Socratic one
        return []
    names = {*LOOP_STAGES, "train_solver", "train_generator"}
    return sorted({s.round for s in data.stages if s.round >= 1 and s.name in names})


def _pairs(data: _RunData, round: int) -> Any:
    found = data.metrics(round, "pairs").get("pairs")
    return found if found is not None else data.metrics(round, "train_solver").get("pairs")


def _stage_times(data: _RunData) -> list[tuple[str, float, int]]:
    """(stage name, seconds summed over rounds, rounds counted), longest first."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    for stage in data.stages:
        seconds = (stage.metrics or {}).get("seconds")
        if not _is_num(seconds) and stage.finished_at is not None:
            seconds = (stage.finished_at - stage.started_at).total_seconds()
        if _is_num(seconds):
            totals[stage.name] += float(seconds)
            counts[stage.name] += 1
    return sorted(((n, s, counts[n]) for n, s in totals.items()), key=lambda x: -x[1])


def _joined(metrics: dict[str, Any], keys: tuple[str, ...]) -> str:
    if not any(key in metrics for key in keys):
        return _DASH
    return " / ".join(_num(metrics.get(key)) for key in keys)


def _new_problems(refine: dict[str, Any], quality: dict[str, Any]) -> str:
    proposed, accepted = refine.get("proposed"), quality.get("accepted")
    if proposed is None and accepted is None:
        return _DASH
    text = f"{_num(proposed)} → {_num(accepted)}"
    reasons = quality.get("reasons")
    if isinstance(reasons, dict) and reasons:
        ordered = sorted(reasons.items(), key=lambda kv: -kv[1] if _is_num(kv[1]) else 0)
        text += " (" + ", ".join(f"{k} {_num(v)}" for k, v in ordered) + ")"
    elif quality.get("dropped"):
        text += f" (dropped {_num(quality['dropped'])})"
    return text


def _round_row(data: _RunData, t: int) -> list[str]:
    curriculum = data.metrics(t, "curriculum")
    size = _num(curriculum.get("size"))
    if _is_num(curriculum.get("added")):
        size += f" (+{curriculum['added']:,})"
    utility = data.metrics(t, "utility").get("mean_utility")
    verdicts = _joined(data.metrics(t, "verify"), ("correct", "incorrect", "unverifiable"))
    zones = _joined(data.metrics(t, "zones"), ("mastered", "learning", "too_hard"))
    new = _new_problems(data.metrics(t, "refine"), data.metrics(t, "quality"))
    solved = _num(data.metrics(t, "solve").get("questions"))
    utility_text = f"{utility:.3f}" if _is_num(utility) else _DASH
    return [str(t), solved, verdicts, _num(_pairs(data, t)), zones, new, utility_text, size]


def _latest(data: _RunData, name: str) -> Stage | None:
    """The stage ``name`` of the highest round, if any."""
    found = [s for s in data.stages if s.name == name]
    return max(found, key=lambda s: s.round) if found else None


def _finished(data: _RunData, name: str) -> dict[str, Any]:
    """The metrics of a finished stage that was not skipped (else empty)."""
    stage = _latest(data, name)
    if stage is None or stage.status != "finished":
        return {}
    metrics = dict(stage.metrics or {})
    return {} if "skipped" in metrics else metrics


def _agent_evals(data: _RunData) -> list[tuple[str, str, dict[str, Any]]]:
    """(stage, label, metrics) of each finished agent-distill evaluation with an accuracy."""
    rows = []
    for name, (_, label) in AGENT_EVALS.items():
        metrics = _finished(data, name)
        if _is_num(metrics.get("accuracy")):
            rows.append((name, str(metrics.get("label") or label), metrics))
    return rows


def _gap_closed(data: _RunData) -> float | None:
    """(student after − student before) / (teacher − student before), if the teacher is ahead."""
    before = _finished(data, "eval_student_base").get("accuracy")
    after = _finished(data, "eval_student").get("accuracy")
    teacher = _finished(data, "eval_teacher").get("accuracy")
    if not (_is_num(before) and _is_num(after) and _is_num(teacher)) or teacher <= before:
        return None
    return (after - before) / (teacher - before)


def _share(part: Any, whole: Any) -> str:
    if _is_num(part) and _is_num(whole) and whole:
        return f"{_num(part)} / {_num(whole)} ({part / whole:.1%})"
    return f"{_num(part)} / {_num(whole)}"


def _agent_section(data: _RunData) -> list[str]:
    """The "Agent distillation" section: evaluations, training trajectories, gap closed."""
    lines = ["", "## Agent distillation", ""]
    evals = _agent_evals(data)
    headers = ["agent", "items", "accuracy", "math", "factual", "answered", "mean steps"]
    headers.append("parse errors")
    keys = ("items", "accuracy", "accuracy_math", "accuracy_factual", "answered", "mean_steps")
    rows = [
        [label, *(_num(m.get(k)) for k in keys), _num(m.get("parse_errors"))]
        for _, label, m in evals
    ]
    if rows:
        lines += ["Held-out evaluations:", "", *_table(headers, rows), ""]
    else:
        lines += ["No held-out evaluation has finished yet.", ""]

    cot, agent, kept = (_finished(data, n) for n in ("teacher_cot", "teacher_agent", "filter"))
    bullets = []
    if _is_num(cot.get("accuracy")):
        bullets.append(f"- teacher chain of thought: {_num(cot['accuracy'])} correct")
    if _is_num(agent.get("accuracy")):
        tasks = agent.get("trajectories", agent.get("items"))
        bullets.append(f"- teacher agent: {_num(agent['accuracy'])} correct on {_num(tasks)} tasks")
    if kept:
        text = f"- filter: kept {_share(kept.get('kept'), kept.get('trajectories'))}"
        dropped = [f"{label} {_num(kept[k])}" for k, label in DROP_REASONS.items() if k in kept]
        if dropped:
            text += "; dropped: " + ", ".join(dropped)
        if "kept_with_exec_errors" in kept:
            text += f"; kept with execution errors: {_num(kept['kept_with_exec_errors'])}"
        if kept.get("judged"):
            text += f"; judged by the teacher: {_num(kept['judged'])}"
            text += f", {_num(kept.get('judged_correct'))} correct"
        bullets.append(text)
    if bullets:
        lines += ["Teacher's training trajectories:", "", *bullets, ""]

    gap = _gap_closed(data)
    before = _finished(data, "eval_student_base").get("accuracy")
    after = _finished(data, "eval_student").get("accuracy")
    teacher = _finished(data, "eval_teacher").get("accuracy")
    if gap is not None:
        lines.append(
            f"Gap closed: **{gap:.3f}** = (student after {after:.3f} − before {before:.3f}) / "
            f"(teacher {teacher:.3f} − before {before:.3f})"
        )
    elif _is_num(before) and _is_num(teacher) and teacher <= before:
        lines.append(f"Gap closed: {_DASH} (the teacher does not beat the student before training)")
    else:
        lines.append(
            f"Gap closed: {_DASH} (needs the student before, the student after and the teacher)"
        )

    skipped = []
    for name in AGENT_STAGES:
        stage = _latest(data, name)
        if stage is not None and stage.status == "finished" and "skipped" in (stage.metrics or {}):
            skipped.append(f"`{name}` ({stage.metrics['skipped']})")
    if skipped:
        lines += ["", "Skipped: " + ", ".join(skipped) + "."]
    return lines


def _header(run: Run, plot_name: str | None, has_stages: bool) -> list[str]:
    lines = [f"# Run {run.id}", "", f"- scheme: `{run.scheme}`", f"- status: **{run.status}**"]
    if run.name:
        lines.append(f"- name: {run.name}")
    lines.append(f"- created: {run.created_at:%Y-%m-%d %H:%M} UTC")
    if run.finished_at is not None:
        lines.append(f"- ended: {run.finished_at:%Y-%m-%d %H:%M} UTC")
    if run.notes:
        lines.append(f"- notes: {run.notes}")
    if plot_name:
        lines += ["", f"![plot]({plot_name})"]
    if not has_stages:
        lines += ["", "Nothing recorded for this run yet: no stage has started."]
    return lines


def _markdown(data: _RunData, plot_name: str | None) -> str:
    lines = _header(data.run, plot_name, bool(data.stages))
    unfinished = [s for s in data.stages if s.status != "finished"]
    if unfinished:
        lines += ["", "## Stages not finished", ""]
        lines += [f"- round {s.round} `{s.name}`: **{s.status}**" for s in unfinished]

    acc = _accuracy_rows(data)
    change = f"change vs {acc[0][0]}" if acc else "change"
    rows = [
        [label, f"{value:.3f}", f"{value - acc[0][2]:+.3f}" if i else _DASH]
        + [_num(m.get("items")), _num(m.get("samples"))]
        for i, (label, _, value, m) in enumerate(acc)
    ]
    lines += _section(
        "Held-out accuracy", ["checkpoint", "accuracy", change, "items", "samples"], rows
    )

    headers = ["round", "questions solved", "correct / incorrect / unverifiable", "pairs"]
    headers += ["zones m / l / h", "proposed → accepted (dropped)", "mean utility", "curriculum"]
    lines += _section("Rounds", headers, [_round_row(data, t) for t in _loop_rounds(data)])

    agent_distill = data.run.scheme == AGENT_DISTILL
    if agent_distill and data.stages:
        lines += _agent_section(data)
    covered = {"eval_base", "eval", *LOOP_STAGES, *(AGENT_STAGES if agent_distill else ())}
    if data.run.scheme == STRATEGY_TEACHING and data.stages:
        from agents.report_strategy import STAGES, strategy_section

        lines += strategy_section(data)
        covered |= set(STAGES)

    # Everything without a table of its own (training stages included): its metrics, as recorded.
    other = [s for s in data.stages if s.name not in covered]
    metrics = [
        {k: v for k, v in (s.metrics or {}).items() if k != "seconds" and not k.startswith("_")}
        for s in other
    ]
    rows = [[str(s.round), f"`{s.name}`", _num(m)] for s, m in zip(other, metrics, strict=True)]
    lines += _section("Stage metrics", ["round", "stage", "metrics"], rows)

    headers = ["role", "model", "batches", "requests", "samples", "cached samples"]
    headers += ["prompt tokens", "completion tokens", "seconds"]
    rows = []
    for (role, model), u in sorted(data.usage.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        counts = [u.calls, u.requests, u.samples, u.cached_samples]
        counts += [u.prompt_tokens, u.completion_tokens]
        rows.append([role or _DASH, f"`{model}`", *map(_num, counts), f"{u.latency_s:.1f}"])
    lines += _section("Model usage", headers, rows)

    times = _stage_times(data)
    total = sum(s for _, s, _ in times)
    rows = [
        [f"`{n}`", str(c), _duration(s), f"{s / total:.1%}" if total else _DASH]
        for n, s, c in times
    ]
    if len(times) > 1:
        rows.append(["total", _DASH, _duration(total), "100.0%" if total else _DASH])
    lines += _section("Time per stage", ["stage", "rounds", "time", "share"], rows)
    return "\n".join(lines) + "\n"


def render_markdown(store: Store, run_id: str, plot_name: str | None) -> str:
    """The markdown report of a run (writes nothing).

    Args:
        store: The store holding the run.
        run_id: The run to report on.
        plot_name: Relative path of the figure to link, or None for no figure link.

    Returns:
        The report as markdown text.
    """
    return _markdown(_load(store, run_id), plot_name)


def _no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


def _usage_note(usage: dict[tuple[str | None, str], Usage]) -> str:
    """Batches and tokens per role, teacher first."""
    calls: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    for (role, _), u in usage.items():
        calls[role or "other"] += u.calls
        tokens[role or "other"] += u.tokens
    order = sorted(calls, key=lambda r: (r != "teacher", r))
    return "\n".join(f"{r}: {calls[r]:,} batches, {tokens[r]:,} tokens" for r in order)


def _teacher_outcomes(metrics: dict[str, Any]) -> dict[str, float]:
    """How the teacher's training episodes ended: correct, wrong answer, no final answer."""
    total = metrics.get("trajectories", metrics.get("items"))
    accuracy, answered = metrics.get("accuracy"), metrics.get("answered")
    if not (_is_num(total) and _is_num(accuracy)):
        return {}
    correct = accuracy * total
    if not _is_num(answered):
        return {"correct": correct, "incorrect": total - correct}
    return {
        "correct": correct,
        "wrong answer": answered * total - correct,
        "no final answer": (1 - answered) * total,
    }


def _plot_agent_distill(data: _RunData, ax_acc: Any, ax_filter: Any, ax_teacher: Any) -> None:
    """Panels (a) to (c) of an agent-distill run."""
    ax_acc.set_title("(a) held-out accuracy per agent")
    evals = _agent_evals(data)
    if evals:
        groups = [
            ("overall", "accuracy"),
            ("math", "accuracy_math"),
            ("factual", "accuracy_factual"),
        ]
        groups = [(g, k) for g, k in groups if any(_is_num(m.get(k)) for _, _, m in evals)]
        width = 0.8 / len(groups)
        xs = range(len(evals))
        for j, (group, key) in enumerate(groups):
            heights = [float(m[key]) if _is_num(m.get(key)) else 0.0 for _, _, m in evals]
            offset = (j - (len(groups) - 1) / 2) * width
            bars = ax_acc.bar([x + offset for x in xs], heights, width=width, label=group)
            ax_acc.bar_label(bars, fmt="%.2f", fontsize=7)
        ax_acc.set_xticks(list(xs), [AGENT_EVALS[name][0] for name, _, _ in evals], fontsize=8)
        ax_acc.set(ylabel="accuracy", ylim=(0, 1.1))
        ax_acc.legend(loc="upper left", fontsize=8, ncols=len(groups))
    else:
        _no_data(ax_acc)

    ax_filter.set_title("(b) teacher trajectories: kept and dropped")
    kept = _finished(data, "filter")
    outcome = {"kept": kept.get("kept")} | {
        label: kept.get(key) for key, label in DROP_REASONS.items()
    }
    outcome = {k: float(v) for k, v in outcome.items() if _is_num(v)}
    if outcome:
        colors = ["tab:green", "tab:red", "tab:orange", "tab:grey"][: len(outcome)]
        bars = ax_filter.bar(list(outcome), list(outcome.values()), color=colors)
        ax_filter.bar_label(bars, fmt="%g", fontsize=8)
        ax_filter.set_ylabel("trajectories")
        ax_filter.margins(y=0.15)
        if _is_num(kept.get("kept_with_exec_errors")):
            note = f"kept with execution errors: {kept['kept_with_exec_errors']:,}"
            ax_filter.text(0.98, 0.95, note, transform=ax_filter.transAxes, ha="right", fontsize=8)
    else:
        _no_data(ax_filter)

    ax_teacher.set_title("(c) teacher agent on the training tasks")
    agent = _finished(data, "teacher_agent")
    ends = _teacher_outcomes(agent)
    if ends:
        colors = ["tab:green", "tab:red", "tab:grey"][: len(ends)]
        bars = ax_teacher.bar(list(ends), list(ends.values()), color=colors)
        ax_teacher.bar_label(bars, fmt="%.0f", fontsize=8)
        ax_teacher.set_ylabel("episodes")
        ax_teacher.margins(y=0.15)
        notes = [
            f"{label}: {_num(agent[key])}"
            for key, label in (
                ("mean_steps", "mean steps"),
                ("parse_errors", "parse errors"),
                ("exec_errors", "execution errors"),
            )
            if _is_num(agent.get(key))
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
        _no_data(ax_teacher)


def _plot(data: _RunData, path: Path) -> bool:
    """Draw the 2x2 figure to ``path``; False (nothing written) when there is nothing to plot."""
    acc = _accuracy_rows(data)
    rounds = _loop_rounds(data)
    zones = {
        t: z for t in rounds if isinstance(z := data.metrics(t, "curriculum").get("by_zone"), dict)
    }
    pairs = {t: p for t in rounds if _is_num(p := _pairs(data, t))}
    accepted = {t: a for t in rounds if _is_num(a := data.metrics(t, "quality").get("accepted"))}
    times = _stage_times(data)
    agent_distill = data.run.scheme == AGENT_DISTILL
    scheme_data = agent_distill and any(
        _finished(data, name) for name in (*AGENT_EVALS, "filter", "teacher_agent")
    )
    strategy = data.run.scheme == STRATEGY_TEACHING
    if strategy:
        from agents.report_strategy import has_plot_data, plot_strategy_teaching

        scheme_data = has_plot_data(data)
    if not (acc or zones or pairs or accepted or times or scheme_data):
        return False

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(fig)
    (ax_acc, ax_zone), (ax_pairs, ax_time) = fig.subplots(2, 2)
    fig.suptitle(f"Run {data.run.id} ({data.run.scheme}, {data.run.status})")
    if agent_distill:
        _plot_agent_distill(data, ax_acc, ax_zone, ax_pairs)
    elif strategy:
        plot_strategy_teaching(data, ax_acc, ax_zone, ax_pairs)
    else:
        _plot_rounds(acc, zones, pairs, accepted, ax_acc, ax_zone, ax_pairs)

    ax_time.set_title("(d) time per stage (s)")
    if times:
        ax_time.barh([n for n, _, _ in times], [s for _, s, _ in times])
        ax_time.invert_yaxis()
    else:
        _no_data(ax_time)
    if data.usage:
        box = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85}
        style = {"ha": "right", "va": "bottom", "fontsize": 8, "bbox": box}
        ax_time.text(0.98, 0.02, _usage_note(data.usage), transform=ax_time.transAxes, **style)

    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
    return True


def _plot_rounds(
    acc: list[tuple[str, int | None, float, dict[str, Any]]],
    zones: dict[int, dict[str, Any]],
    pairs: dict[int, Any],
    accepted: dict[int, Any],
    ax_acc: Any,
    ax_zone: Any,
    ax_pairs: Any,
) -> None:
    """Panels (a) to (c) of every other run: accuracy per round, zones, pairs and problems."""
    ax_acc.set_title("(a) held-out accuracy")
    points = [(r, a) for _, r, a, _ in acc if r is not None]
    if points:
        ax_acc.plot([r for r, _ in points], [a for _, a in points], "o-", label="eval")
        ax_acc.set_xticks([r for r, _ in points])
    for label, r, value, _ in acc:
        if r is None:
            ax_acc.axhline(value, linestyle="--", color="grey", label=label)
    if acc:
        ax_acc.set_xlabel("round")
        ax_acc.set_ylabel("accuracy")
        ax_acc.legend(loc="best")
    else:
        _no_data(ax_acc)

    ax_zone.set_title("(b) curriculum by zone")
    if zones:
        names = [*ZONES, *sorted({k for z in zones.values() for k in z} - set(ZONES))]
        xs, bottom = list(zones), [0.0] * len(zones)
        for name in names:
            heights = [float(v) if _is_num(v := z.get(name)) else 0.0 for z in zones.values()]
            ax_zone.bar(xs, heights, bottom=bottom, label=name)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax_zone.set(xlabel="round", xticks=xs)
        ax_zone.margins(y=0.2)
        ax_zone.legend(loc="upper left", fontsize=8, ncols=len(names))
    else:
        _no_data(ax_zone)

    ax_pairs.set_title("(c) preference pairs and accepted new problems")
    if pairs or accepted:
        ax_pairs.bar([t - 0.2 for t in pairs], list(pairs.values()), width=0.4, label="pairs")
        ax_pairs.bar(
            [t + 0.2 for t in accepted], list(accepted.values()), width=0.4, label="accepted"
        )
        ax_pairs.set(xlabel="round", xticks=sorted({*pairs, *accepted}))
        ax_pairs.margins(y=0.15)
        ax_pairs.legend(loc="upper left", fontsize=8, ncols=2)
    else:
        _no_data(ax_pairs)


def write_report(store: Store, run_id: str, out_dir: Path) -> ReportFiles:
    """Write ``report.md`` and, when there is anything to plot, ``report.png`` into ``out_dir``.

    Each file is written under a temporary name and then moved into place, so a reader never sees
    half a report. A stale ``report.png`` is removed when the run has nothing to plot.

    Args:
        store: The store holding the run.
        run_id: The run to report on.
        out_dir: Directory for the report (created if missing), e.g. under
            ``Workspace.reports_dir``.

    Returns:
        The paths written.
    """
    data = _load(store, run_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot: Path | None = out_dir / PLOT_NAME
    if not _plot(data, plot):
        plot.unlink(missing_ok=True)
        plot = None
    markdown = out_dir / MARKDOWN_NAME
    tmp = markdown.with_name(f".{markdown.name}.tmp")
    tmp.write_text(_markdown(data, PLOT_NAME if plot else None), encoding="utf-8")
    os.replace(tmp, markdown)
    logger.info("wrote report of run %s to %s", run_id, out_dir)
    return ReportFiles(markdown=markdown, plot=plot)

"""The "Strategy teaching" part of the run report: tables and figure panels.

A strategy-teaching run (see :mod:`agents.schemes.strategy_teaching.graph`) commits ``setup``,
then per round ``scenarios`` and ``refine``, then ``eval_dialogues`` and ``eval_judge``. This
module turns those metrics, and the strategies the run wrote into its library, into:

* the comparison table: one row per held-out agent (the student alone, with generic guidance,
  fine-tuned, with the learned strategies, the teacher, the transfer student with and without
  them): judged win rates against the student alone and against the teacher, τ² task success
  with its paired difference from the student alone, gold-action recall and the share of
  dialogues with a policy violation, each with its 95% interval;
* every judged comparison: win rate with its interval, sign-test p, wins / ties / losses;
* how the held-out dialogues went: turns, tool calls, tool errors, how they ended;
* one row per round: scenarios found and closed, strategies written, how often the judge
  preferred the student's reply to the teacher's;
* the strategies learned in the run, largest gain in judge preference first;

and three panels: win rates, held-out success and violations, and scenarios and strategies per
round. As in the rest of the report, a missing stage or metric is a dash or a "no data" panel.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agents.reporting import (
    DASH,
    ReportSection,
    RunView,
    finished,
    is_num,
    joined,
    no_data,
    num,
    table,
)
from agents.store import Store

if TYPE_CHECKING:
    from strategies.records import Strategy

#: The stages with a table in this section (kept out of "Stage metrics").
STAGES = ("setup", "scenarios", "refine", "generic", "finetune", "eval_dialogues", "eval_judge")
#: Held-out agents in report order: metric key → (short name for plots, table label).
AGENTS = {
    "student": ("student", "student alone"),
    "student_generic": ("student + G", "student + generic guidance"),
    "student_finetuned": ("student FT", "student fine-tuned on the teacher's replies"),
    "student_strategies": ("student + S", "student + learned strategies"),
    "teacher": ("teacher", "teacher"),
    "transfer": ("transfer", "transfer student alone"),
    "transfer_strategies": ("transfer + S", "transfer student + learned strategies"),
}
#: Judged comparisons in report order: metric key → (short name for plots, table label).
COMPARISONS = {
    "strategies_vs_alone": ("S vs alone", "student + strategies vs student alone"),
    "generic_vs_alone": ("G vs alone", "student + generic guidance vs student alone"),
    "finetuned_vs_alone": ("FT vs alone", "student fine-tuned vs student alone"),
    "strategies_vs_generic": ("S vs G", "student + strategies vs student + generic guidance"),
    "strategies_vs_finetuned": ("S vs FT", "student + strategies vs student fine-tuned"),
    "strategies_vs_teacher": ("S vs teacher", "student + strategies vs teacher"),
    "generic_vs_teacher": ("G vs teacher", "student + generic guidance vs teacher"),
    "finetuned_vs_teacher": ("FT vs teacher", "student fine-tuned vs teacher"),
    "alone_vs_teacher": ("alone vs teacher", "student alone vs teacher"),
    "transfer_strategies_vs_alone": (
        "transfer S vs alone",
        "transfer student + strategies vs transfer student alone",
    ),
}
#: Per agent, its judged comparison with the student alone and with the teacher: (key, A is
#: the agent). The teacher's win rate over the student alone is one minus the student's.
VERSUS_ALONE = {
    "student_generic": ("generic_vs_alone", True),
    "student_finetuned": ("finetuned_vs_alone", True),
    "student_strategies": ("strategies_vs_alone", True),
    "teacher": ("alone_vs_teacher", False),
    "transfer_strategies": ("transfer_strategies_vs_alone", True),
}
VERSUS_TEACHER = {
    "student": "alone_vs_teacher",
    "student_generic": "generic_vs_teacher",
    "student_finetuned": "finetuned_vs_teacher",
    "student_strategies": "strategies_vs_teacher",
}
#: How many of the run's strategies the report lists, and how much of each text it shows.
MAX_STRATEGIES = 8
MAX_TEXT = 240


def load_strategies(store: Store, run_id: str) -> list[Strategy]:
    """The strategies a run learned (any library in the store but the generic baseline's own,
    which the held-out comparison covers), in id order.

    Reads only: a store whose strategy tables were never created has none.

    Args:
        store: The store holding the run.
        run_id: The run.

    Returns:
        The strategies whose ``run_id`` is ``run_id``.
    """
    from sqlalchemy import inspect
    from sqlmodel import col, select

    from strategies.records import Strategy

    if not inspect(store.engine).has_table(Strategy.__tablename__):
        return []
    query = (
        select(Strategy)
        .where(Strategy.run_id == run_id)
        .where(~col(Strategy.library).endswith(f"-generic-{run_id}"))
        .order_by(col(Strategy.id))
    )
    with store.session() as session:
        return list(session.exec(query).all())


def _per_key(
    metrics: dict[str, Any], labels: dict[str, tuple[str, str]], needed: str
) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(key, short name, label, metrics) of each dict-valued metric that records ``needed``.

    Known keys come first, in ``labels`` order; any other key is listed under its own name.
    """
    found = {k: v for k, v in metrics.items() if isinstance(v, dict) and not k.startswith("_")}
    order = [k for k in labels if k in found] + [k for k in found if k not in labels]
    return [(k, *labels.get(k, (k, k)), found[k]) for k in order if needed in found[k]]


def _agents(data: RunView) -> list[tuple[str, str, str, dict[str, Any]]]:
    return _per_key(finished(data, "eval_dialogues"), AGENTS, "success")


def _comparisons(data: RunView) -> list[tuple[str, str, str, dict[str, Any]]]:
    return _per_key(finished(data, "eval_judge"), COMPARISONS, "win_rate")


def _rounds(data: RunView) -> list[int]:
    return sorted(
        {s.round for s in data.stages if s.round >= 1 and s.name in ("scenarios", "refine")}
    )


def _arrow(before: Any, after: Any) -> str:
    if before is None and after is None:
        return DASH
    return f"{num(before)} → {num(after)}"


def _with_part(whole: Any, part: Any) -> str:
    """``whole (part)``, or just one of them when the other is missing."""
    if part is None:
        return num(whole)
    return f"{num(whole)} ({num(part)})"


def _setup_line(data: RunView) -> list[str]:
    setup = finished(data, "setup")
    if not setup:
        return []
    parts = []
    if setup.get("domain") is not None:
        parts.append(f"domain `{setup['domain']}`")
    if is_num(setup.get("train_tasks")):
        parts.append(f"{num(setup['train_tasks'])} training tasks")
    if is_num(setup.get("heldout_tasks")):
        parts.append(f"{num(setup['heldout_tasks'])} held-out tasks")
    if setup.get("library") is not None:
        library = f"library `{setup['library']}`"
        if is_num(setup.get("library_size")):
            library += f" ({num(setup['library_size'])} strategies at the start)"
        parts.append(library)
    return ["", "Setup: " + ", ".join(parts) + "."] if parts else []


def _with_ci(value: Any, ci: Any) -> str:
    """``0.250 (0.050–0.500)``: a value with its 95% interval, or what there is of it."""
    if not is_num(value):
        return DASH
    if isinstance(ci, list | tuple) and len(ci) == 2 and all(is_num(x) for x in ci):
        return f"{value:.3f} ({ci[0]:.3f}–{ci[1]:.3f})"
    return num(value)


def _difference(found: Any) -> str:
    """``+0.125 (−0.125–+0.375), p 0.62`` from a paired comparison's metrics."""
    if not isinstance(found, dict) or not is_num(found.get("difference")):
        return DASH
    text = f"{found['difference']:+.3f}"
    ci = found.get("ci")
    if isinstance(ci, list) and len(ci) == 2 and all(is_num(x) for x in ci):
        text += f" ({ci[0]:+.3f}–{ci[1]:+.3f})"
    if is_num(found.get("p_value")):
        text += f", p {found['p_value']:.3g}"
    return text


def _judged(comparisons: dict[str, dict[str, Any]], key: str | None, flip: bool = False) -> str:
    found = comparisons.get(key or "")
    if not found or not is_num(found.get("win_rate")):
        return DASH
    rate, ci = found["win_rate"], found.get("ci")
    if flip:  # B's win rate: one minus A's, the interval mirrored
        rate = 1 - rate
        ci = [1 - ci[1], 1 - ci[0]] if isinstance(ci, list) and len(ci) == 2 else None
    return _with_ci(rate, ci)


def _table_rows(data: RunView) -> list[list[str]]:
    """The comparison table: per agent, judged win rates and dialogue outcomes with intervals."""
    comparisons = {k: m for k, _, _, m in _comparisons(data)}
    rows = []
    for key, _, label, m in _agents(data):
        alone = VERSUS_ALONE.get(key)
        rows.append(
            [
                label,
                _judged(comparisons, alone[0], not alone[1]) if alone else DASH,
                _judged(comparisons, VERSUS_TEACHER.get(key)),
                _with_ci(m.get("success"), m.get("success_ci")),
                _difference((m.get("vs_student") or {}).get("success")),
                _with_ci(m.get("action_recall"), m.get("action_recall_ci")),
                _with_ci(m.get("dialogues_with_violations"), m.get("dialogues_with_violations_ci")),
            ]
        )
    return rows


def _dialogue_rows(data: RunView) -> list[list[str]]:
    return [
        [
            label,
            num(m.get("turns")),
            num(m.get("tool_calls")),
            num(m.get("tool_errors")),
            num(m.get("violations")),
            _difference((m.get("vs_student") or {}).get("action_recall")),
            num(m.get("ended")) if isinstance(m.get("ended"), dict) else DASH,
        ]
        for _, _, label, m in _agents(data)
    ]


def _judge_rows(data: RunView) -> list[list[str]]:
    return [
        [
            label,
            _with_ci(m.get("win_rate"), m.get("ci")),
            num(m.get("p_value")),
            joined(m, ("wins", "ties", "losses")),
            num(m.get("identical")),
            num(m.get("unjudged")),
        ]
        for _, _, label, m in _comparisons(data)
    ]


def _round_row(data: RunView, t: int) -> list[str]:
    found, refine = data.metrics(t, "scenarios"), data.metrics(t, "refine")
    scenarios = found.get("scenarios", refine.get("scenarios"))
    return [
        str(t),
        num(found.get("dialogues")),
        num(found.get("student_preference")),
        _with_part(found.get("shortfalls"), found.get("rule_shortfalls")),
        num(found.get("teacher_scenarios")),
        num(scenarios),
        num(refine.get("closed")),
        joined(refine, ("new_strategies", "edited_strategies")),
        _arrow(refine.get("student_preference_first"), refine.get("student_preference_last")),
        num(refine.get("library_size")),
    ]


def _gain(strategy: Strategy) -> float | None:
    if strategy.score_before is None or strategy.score_after is None:
        return None
    return strategy.score_after - strategy.score_before


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= MAX_TEXT else flat[: MAX_TEXT - 1].rstrip() + "…"


def _strategy_lines(strategies: list[Strategy]) -> list[str]:
    """The run's strategies: largest preference gain first, then newest round, then by id."""
    if not strategies:
        return []

    def order(s: Strategy) -> tuple[bool, float, int, int]:
        gain = _gain(s)
        return (gain is None, -(gain or 0.0), -(s.round or 0), s.id or 0)

    shown = sorted(strategies, key=order)[:MAX_STRATEGIES]
    statuses: dict[str, int] = {}
    for s in strategies:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    summary = ", ".join(f"{status} {n:,}" for status, n in sorted(statuses.items()))
    intro = f"This run wrote {len(strategies):,} strategies ({summary})"
    if len(shown) < len(strategies):
        intro += f"; the {len(shown)} shown gained the most in judge preference"
    else:
        intro += "; largest gain in judge preference first"
    intro += (
        ". Student preferred: how often the judge preferred the student's reply to the"
        " teacher's (0 to 1), when the strategy was written and once it was in the student's"
        " prompt"
    )
    headers = ["id", "status", "version", "round", "situation", "strategy"]
    headers += ["student preferred before → after"]
    rows = [
        [
            str(s.id),
            s.status,
            str(s.version),
            num(s.round),
            _one_line(s.situation),
            _one_line(s.text),
            _arrow(s.score_before, s.score_after),
        ]
        for s in shown
    ]
    return ["", "### Strategies learned in this run", "", intro + ".", "", *table(headers, rows)]


def _subsection(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    """A titled table; left out when no row has anything beyond its label."""
    if not any(cell != DASH for row in rows for cell in row[1:]):
        return []
    return ["", f"### {title}", "", *table(headers, rows)]


def strategy_section(data: RunView) -> list[str]:
    """The "Strategy teaching" section of a strategy-teaching run, as markdown lines.

    Args:
        data: The run's stages, usage and strategies, as the report loaded them.

    Returns:
        The lines: setup, held-out dialogues, judged next replies, rounds and the strategies
        learned; a table without data is left out.
    """
    lines = ["", "## Strategy teaching", *_setup_line(data)]

    summary = _table_rows(data)
    judged = _judge_rows(data)
    if not (summary or judged):
        lines += ["", "No held-out evaluation has finished yet."]
    headers = ["agent", "judged win rate vs student alone", "judged win rate vs teacher"]
    headers += ["task success", "success − student alone (paired)", "gold-action recall"]
    headers += ["dialogues with a violation"]
    lines += _subsection("Held-out comparison", headers, summary)
    if summary:
        lines += ["", _comparison_note(data)]

    if judged:
        headers = ["comparison (A vs B)", "win rate of A (95% CI)", "sign test p"]
        headers += ["wins / ties / losses", "identical replies (tied)", "unjudged"]
        lines += _subsection("Judged next replies", headers, judged)

    headers = ["agent", "mean agent turns", "tool calls", "tool errors"]
    headers += ["violations per dialogue", "recall − student alone (paired)", "ended"]
    lines += _subsection("Held-out dialogues", headers, _dialogue_rows(data))

    headers = ["round", "dialogues", "student preferred, turns", "shortfalls (rule-detected)"]
    headers += ["teacher scenarios", "scenarios", "closed", "new / edited strategies"]
    headers += ["student preferred, first → last try", "library size"]
    rows = [_round_row(data, t) for t in _rounds(data)]
    rounds = _subsection("Rounds", headers, rows)
    if any(row[2] != DASH or row[8] != DASH for row in rows):
        rounds += [
            "",
            "Student preferred: the judge's mean preference (0 to 1) for the student's reply"
            " over the teacher's to the same conversation, over the student's turns in its"
            " dialogues, and over the scenarios at the first and at the last try of refining.",
        ]
    lines += rounds

    lines += _strategy_lines(
        list(data.cached("strategies", lambda: load_strategies(data.store, data.run.id)))
    )
    return lines


def _comparison_note(data: RunView) -> str:
    """Who judged, on how many scenarios and tasks, and how to read the intervals."""
    judged = finished(data, "eval_judge")
    parts = []
    judge = judged.get("judge")
    if judge:
        parts.append(f"Judge `{judge}`")
    if judged.get("_judge_is_teacher"):
        parts.append(
            "which is the teacher: it grades its own replies, so win rates against the teacher"
            " lean its way (self-preference)"
        )
    scenarios = judged.get("scenarios")
    text = ", ".join(parts) + ("; " if parts else "")
    if is_num(scenarios):
        text += f"{num(scenarios)} held-out scenarios judged per comparison, each pair both ways"
        text += " round (a win 1, a tie or split 0.5). "
    n = next((m.get("n") for *_, m in _agents(data) if is_num(m.get("n"))), None)
    if is_num(n):
        text += f"{num(n)} full held-out dialogues per agent. "
    return (
        text + "Brackets: 95% intervals (bootstrap over scenarios or tasks; Wilson when every"
        " task scores the same); paired differences from the student alone on the same tasks"
        " with McNemar's exact test (success) or a sign-flip permutation test (recall)."
    )


def has_plot_data(data: RunView) -> bool:
    """Whether any of the three strategy-teaching panels has something to draw."""
    return bool(_agents(data) or _comparisons(data) or _rounds(data))


def _bar_groups(
    ax: Any, names: list[str], groups: list[tuple[str, list[float | None]]], fmt: str
) -> None:
    """Grouped bars: one group per name, one bar per (label, heights); None draws no bar."""
    width = 0.8 / len(groups)
    for j, (label, heights) in enumerate(groups):
        offset = (j - (len(groups) - 1) / 2) * width
        xs = [i + offset for i, h in enumerate(heights) if h is not None]
        bars = ax.bar(xs, [h for h in heights if h is not None], width=width, label=label)
        ax.bar_label(bars, fmt=fmt, fontsize=7)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.legend(loc="upper left", fontsize=8, ncols=len(groups))


def _values(rows: list[dict[str, Any]], key: str) -> list[float | None]:
    return [float(m[key]) if is_num(m.get(key)) else None for m in rows]


def plot_strategy_teaching(data: RunView, ax_a: Any, ax_b: Any, ax_c: Any) -> None:
    """Panels (a) to (c) of a strategy-teaching run.

    Args:
        data: The run's stages, as the report loaded them.
        ax_a: For the judged win rate of each comparison (0.5 is a draw).
        ax_b: For held-out task success and the share of dialogues with a policy violation.
        ax_c: For the scenarios, closed scenarios and new strategies of each round.
    """
    ax_a.set_title("(a) judged win rate of A (ties count half)")
    rated = [(short, m["win_rate"]) for _, short, _, m in _comparisons(data)]
    rated = [(short, float(rate)) for short, rate in rated if is_num(rate)]
    if rated:
        bars = ax_a.bar([short for short, _ in rated], [rate for _, rate in rated])
        ax_a.bar_label(bars, fmt="%.2f", fontsize=8)
        ax_a.axhline(0.5, linestyle="--", color="grey", label="draw")
        ax_a.set(ylabel="win rate", ylim=(0, 1.05))
        ax_a.tick_params(axis="x", labelsize=8)
        ax_a.legend(loc="upper right", fontsize=8)
    else:
        no_data(ax_a)

    ax_b.set_title("(b) held-out dialogues per agent")
    agents = _agents(data)
    metrics = [m for *_, m in agents]
    groups = [
        ("task success", _values(metrics, "success")),
        ("dialogues with a violation", _values(metrics, "dialogues_with_violations")),
    ]
    groups = [(label, heights) for label, heights in groups if any(h is not None for h in heights)]
    if groups:
        _bar_groups(ax_b, [short for _, short, _, _ in agents], groups, "%.2f")
        ax_b.set(ylabel="share of dialogues", ylim=(0, 1.15))
    else:
        no_data(ax_b)

    ax_c.set_title("(c) scenarios and strategies per round")
    rounds = _rounds(data)
    per_round = [
        {
            "scenarios": data.metrics(t, "scenarios").get(
                "scenarios", data.metrics(t, "refine").get("scenarios")
            ),
            "closed": data.metrics(t, "refine").get("closed"),
            "new": data.metrics(t, "refine").get("new_strategies"),
        }
        for t in rounds
    ]
    groups = [
        ("scenarios", _values(per_round, "scenarios")),
        ("closed", _values(per_round, "closed")),
        ("new strategies", _values(per_round, "new")),
    ]
    groups = [(label, heights) for label, heights in groups if any(h is not None for h in heights)]
    if groups:
        _bar_groups(ax_c, [str(t) for t in rounds], groups, "%g")
        ax_c.set(xlabel="round", ylabel="count")
        ax_c.margins(y=0.2)
    else:
        no_data(ax_c)


SECTION = ReportSection(
    strategy_section, stages=STAGES, plot=plot_strategy_teaching, has_plot_data=has_plot_data
)

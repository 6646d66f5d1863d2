"""The "RecBot" part of the run report: every system on the same held-out users, paired tests,
what the teacher's episodes taught, and panels of the pass rate per system and per scenario."""

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
    no_data,
    num,
    paired,
    table,
)

#: Held-out evaluations in report order: stage → (system, label).
EVALS: dict[str, tuple[str, str]] = {
    "eval_popularity": ("popularity", "popularity (ignores commands)"),
    "eval_collaborative": ("collaborative", "collaborative on the history (ignores commands)"),
    "eval_retrieval": ("retrieval", "embedding retrieval on the commands (no agent)"),
    "eval_teacher": ("teacher", "teacher RecBot"),
    "eval_student_base": ("student_base", "student RecBot before training"),
    "eval_student": ("student", "student RecBot after distillation"),
}
STAGES = (*EVALS, "setup", "teacher_episodes", "filter")
#: Paired comparisons, (before, after), over the same held-out users.
PAIRS = (
    ("eval_student_base", "eval_student"),
    ("eval_teacher", "eval_student"),
    ("eval_retrieval", "eval_student"),
    ("eval_retrieval", "eval_teacher"),
    ("eval_collaborative", "eval_student"),
    ("eval_collaborative", "eval_teacher"),
)
COLUMNS = (
    ("pass", "pass rate"),
    ("ndcg", "NDCG@K"),
    ("csr", "CSR@K"),
    ("first_recall", "recall@K, turn 1"),
    ("f1", "constraint F1"),
)


def _evals(data: RunView) -> list[tuple[str, dict[str, Any]]]:
    return [(stage, m) for stage in EVALS if (m := finished(data, stage)) and "pass" in m]


def _cell(metrics: dict[str, Any], key: str) -> str:
    value = metrics.get(key)
    if not is_num(value):
        return DASH
    found = interval_text(metrics, f"{key}_")
    return f"{value:.3f} ({found})" if found != DASH else f"{value:.3f}"


def _markdown(data: RunView) -> list[str]:
    lines = ["## RecBot", ""]
    setup = finished(data, "setup")
    if setup:
        lines += [
            f"Catalog {setup.get('catalog')}: {num(setup.get('items'))} items "
            f"({num(setup.get('omdb_matched'))} with OMDb attributes), "
            f"{num(setup.get('ratings'))} ratings; {num(setup.get('train_goals'))} training and "
            f"{num(setup.get('heldout_goals'))} held-out simulated users.",
            "",
        ]
    evals = _evals(data)
    if evals:
        k = data.run.config.get("episode", {}).get("k", 10)
        lines += [f"### Held-out users (K = {k}; 95% intervals)", ""]
        headers = ["system", *(label for _, label in COLUMNS), "rounds", "JSON valid"]
        rows = [
            [
                EVALS[stage][1],
                *(_cell(m, key) for key, _ in COLUMNS),
                num(m.get("rounds")),
                num(m.get("json_valid")),
            ]
            for stage, m in evals
        ]
        lines += [*table(headers, rows), ""]
        scenarios = sorted({s for _, m in evals for s in m.get("scenarios", [])})
        if scenarios:
            lines += ["Pass rate per scenario:", ""]
            rows = [
                [EVALS[stage][1], *(_cell(m, f"{s}_pass") for s in scenarios)] for stage, m in evals
            ]
            lines += [*table(["system", *scenarios], rows), ""]
        by_stage = dict(evals)
        for key, label in (
            ("pass", "pass rate"),
            ("ndcg", "NDCG@K"),
            ("csr", "CSR@K"),
            ("f1", "parser F1"),
        ):
            found = [
                (f"{label}: {EVALS[a][0]} vs {EVALS[b][0]}", c)
                for (a, b) in PAIRS
                if a in by_stage and b in by_stage
                for _, c in paired([("", _scored(by_stage[a], key), _scored(by_stage[b], key))])
            ]
            if found:
                lines += [*table(COMPARISON_HEADERS, comparison_rows(found)), ""]
    teacher, kept = finished(data, "teacher_episodes"), finished(data, "filter")
    if teacher:
        lines.append(
            f"Teacher on the training users: pass rate {num(teacher.get('pass'))}, JSON valid "
            f"{num(teacher.get('json_valid'))}, constraint F1 {num(teacher.get('f1'))}, "
            f"{num(teacher.get('rounds'))} rounds."
        )
    if kept:
        lines.append(
            f"The filter kept {num(kept.get('kept'))} of {num(kept.get('episodes'))} episodes: "
            f"{num(kept.get('parser_examples'))} parser and "
            f"{num(kept.get('planner_examples'))} planner examples for the student."
        )
    return lines


def _scored(metrics: dict[str, Any], key: str) -> dict[str, Any]:
    """``metrics`` with ``key``'s per-user scores where :func:`paired` looks for them."""
    return {"_scores": metrics.get(f"_{key}_scores")}


def _plot(data: RunView, ax_pass: Any, ax_scenario: Any, ax_parse: Any) -> None:
    evals = _evals(data)
    if not evals:
        for ax in (ax_pass, ax_scenario, ax_parse):
            no_data(ax)
        return
    names = [EVALS[stage][0] for stage, _ in evals]
    values = [m["pass"] for _, m in evals]
    lows = [m["pass"] - m["pass_interval"]["low"] for _, m in evals]
    highs = [m["pass_interval"]["high"] - m["pass"] for _, m in evals]
    ax_pass.bar(names, values, yerr=[lows, highs], capsize=3, color="tab:blue")
    ax_pass.set_title("(a) pass rate, held-out users (95% CI)")
    ax_pass.set_ylim(0, 1)
    ax_pass.tick_params(axis="x", rotation=30)
    scenarios = sorted({s for _, m in evals for s in m.get("scenarios", [])})
    width = 0.8 / max(len(scenarios), 1)
    for n, scenario in enumerate(scenarios):
        ax_scenario.bar(
            [i + n * width for i in range(len(names))],
            [m.get(f"{scenario}_pass", 0.0) for _, m in evals],
            width,
            label=scenario,
        )
    ax_scenario.set_xticks([i + 0.4 - width / 2 for i in range(len(names))], names, rotation=30)
    ax_scenario.set_title("(b) pass rate per scenario")
    ax_scenario.set_ylim(0, 1)
    if scenarios:
        ax_scenario.legend(fontsize="small")
    agents = [(EVALS[s][0], m) for s, m in evals if is_num(m.get("json_valid"))]
    if agents:
        ax_parse.bar([a for a, _ in agents], [m["json_valid"] for _, m in agents], label="JSON")
        ax_parse.plot([a for a, _ in agents], [m.get("f1", 0) for _, m in agents], "ko", label="F1")
        ax_parse.set_ylim(0, 1)
        ax_parse.legend(fontsize="small")
    else:
        no_data(ax_parse)
    ax_parse.set_title("(c) parser: valid JSON and constraint F1")


def _has_plot_data(data: RunView) -> bool:
    return bool(_evals(data))


SECTION = ReportSection(_markdown, stages=STAGES, plot=_plot, has_plot_data=_has_plot_data)

"""The Socratic part of the run report: held-out accuracy per round, one row per round, panels.

A Socratic run commits ``eval_base``, ``warmup`` and ``eval`` (round 0), then per round ``solve``,
``verify``, ``pairs``, ``train_solver``, ``zones``, ``refine``, ``quality``, ``utility``,
``train_generator``, ``curriculum`` and ``eval``. The section shows held-out accuracy against the
first evaluated checkpoint, a row per round (verdicts, pairs, zones, new problems, utility,
curriculum size) and three panels: accuracy per round, the curriculum by zone, and preference
pairs with accepted new problems.
"""

from __future__ import annotations

from typing import Any

from agents.reporting import DASH, ReportSection, RunView, is_num, joined, no_data, num, section

LOOP_STAGES = ("solve", "verify", "pairs", "zones", "refine", "quality", "utility", "curriculum")
ZONES = ("mastered", "learning", "too_hard", "unseen")


def _accuracy_rows(data: RunView) -> list[tuple[str, int | None, float, dict[str, Any]]]:
    """(label, eval round or None for the base model, accuracy, metrics), in report order."""
    rows: list[tuple[str, int | None, float, dict[str, Any]]] = []
    base = data.metrics(0, "eval_base")
    if is_num(base.get("accuracy")):
        rows.append(("base model", None, float(base["accuracy"]), base))
    # Round 0 is "before round 1" only in a run that has rounds; a plain eval run has one model.
    looped = bool(base) or any(s.round >= 1 or s.name == "warmup" for s in data.stages)
    for stage in sorted((s for s in data.stages if s.name == "eval"), key=lambda s: s.round):
        metrics = stage.metrics or {}
        if not is_num(metrics.get("accuracy")):
            continue
        if stage.round == 0:
            label = "before round 1" if looped else "evaluated model"
        else:
            label = f"after round {stage.round}"
        rows.append((label, stage.round, float(metrics["accuracy"]), metrics))
    return rows


def _loop_rounds(data: RunView) -> list[int]:
    names = {*LOOP_STAGES, "train_solver", "train_generator"}
    return sorted({s.round for s in data.stages if s.round >= 1 and s.name in names})


def _pairs(data: RunView, round: int) -> Any:
    found = data.metrics(round, "pairs").get("pairs")
    return found if found is not None else data.metrics(round, "train_solver").get("pairs")


def _new_problems(refine: dict[str, Any], quality: dict[str, Any]) -> str:
    proposed, accepted = refine.get("proposed"), quality.get("accepted")
    if proposed is None and accepted is None:
        return DASH
    text = f"{num(proposed)} → {num(accepted)}"
    reasons = quality.get("reasons")
    if isinstance(reasons, dict) and reasons:
        ordered = sorted(reasons.items(), key=lambda kv: -kv[1] if is_num(kv[1]) else 0)
        text += " (" + ", ".join(f"{k} {num(v)}" for k, v in ordered) + ")"
    elif quality.get("dropped"):
        text += f" (dropped {num(quality['dropped'])})"
    return text


def _round_row(data: RunView, t: int) -> list[str]:
    curriculum = data.metrics(t, "curriculum")
    size = num(curriculum.get("size"))
    if is_num(curriculum.get("added")):
        size += f" (+{curriculum['added']:,})"
    utility = data.metrics(t, "utility").get("mean_utility")
    verdicts = joined(data.metrics(t, "verify"), ("correct", "incorrect", "unverifiable"))
    zones = joined(data.metrics(t, "zones"), ("mastered", "learning", "too_hard"))
    new = _new_problems(data.metrics(t, "refine"), data.metrics(t, "quality"))
    solved = num(data.metrics(t, "solve").get("questions"))
    utility_text = f"{utility:.3f}" if is_num(utility) else DASH
    return [str(t), solved, verdicts, num(_pairs(data, t)), zones, new, utility_text, size]


def _markdown(data: RunView) -> list[str]:
    acc = _accuracy_rows(data)
    change = f"change vs {acc[0][0]}" if acc else "change"
    rows = [
        [label, f"{value:.3f}", f"{value - acc[0][2]:+.3f}" if i else DASH]
        + [num(m.get("items")), num(m.get("samples"))]
        for i, (label, _, value, m) in enumerate(acc)
    ]
    lines = section(
        "Held-out accuracy", ["checkpoint", "accuracy", change, "items", "samples"], rows
    )
    headers = ["round", "questions solved", "correct / incorrect / unverifiable", "pairs"]
    headers += ["zones m / l / h", "proposed → accepted (dropped)", "mean utility", "curriculum"]
    lines += section("Rounds", headers, [_round_row(data, t) for t in _loop_rounds(data)])
    return lines


def _panels(data: RunView) -> tuple[Any, ...]:
    rounds = _loop_rounds(data)
    zones = {
        t: z for t in rounds if isinstance(z := data.metrics(t, "curriculum").get("by_zone"), dict)
    }
    pairs = {t: p for t in rounds if is_num(p := _pairs(data, t))}
    accepted = {t: a for t in rounds if is_num(a := data.metrics(t, "quality").get("accepted"))}
    return _accuracy_rows(data), zones, pairs, accepted


def _has_plot_data(data: RunView) -> bool:
    return any(_panels(data))


def _plot(data: RunView, ax_acc: Any, ax_zone: Any, ax_pairs: Any) -> None:
    _plot_rounds(*_panels(data), ax_acc, ax_zone, ax_pairs)


def _plot_rounds(
    acc: list[tuple[str, int | None, float, dict[str, Any]]],
    zones: dict[int, dict[str, Any]],
    pairs: dict[int, Any],
    accepted: dict[int, Any],
    ax_acc: Any,
    ax_zone: Any,
    ax_pairs: Any,
) -> None:
    """Panels (a) to (c): accuracy per round, zones, pairs and accepted new problems."""
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
        no_data(ax_acc)

    ax_zone.set_title("(b) curriculum by zone")
    if zones:
        names = [*ZONES, *sorted({k for z in zones.values() for k in z} - set(ZONES))]
        xs, bottom = list(zones), [0.0] * len(zones)
        for name in names:
            heights = [float(v) if is_num(v := z.get(name)) else 0.0 for z in zones.values()]
            ax_zone.bar(xs, heights, bottom=bottom, label=name)
            bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
        ax_zone.set(xlabel="round", xticks=xs)
        ax_zone.margins(y=0.2)
        ax_zone.legend(loc="upper left", fontsize=8, ncols=len(names))
    else:
        no_data(ax_zone)

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
        no_data(ax_pairs)


SECTION = ReportSection(
    _markdown,
    stages=("eval_base", "eval", *LOOP_STAGES),
    plot=_plot,
    has_plot_data=_has_plot_data,
)

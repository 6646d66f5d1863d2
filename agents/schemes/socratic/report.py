"""The Socratic part of the run report: held-out accuracy per round, one row per round, panels.

A Socratic run commits ``calibrate``, ``eval_base``, ``eval_teacher``, ``warmup`` and ``eval``
(round 0), then per round ``solve``, ``verify``, ``pairs``, ``train_solver``, ``zones``,
``refine``, ``quality``, ``utility``, ``train_generator``, ``curriculum`` and ``eval``. The
section shows held-out accuracy against the first evaluated checkpoint (and the Teacher's), a
row per round (verdicts, pairs, zones, new problems, utility, curriculum size), the seed
filter's funnel, the proxy monitor and three panels: accuracy per round, the curriculum by zone,
and preference pairs with accepted new problems.
"""

from __future__ import annotations

from typing import Any

from agents.eval.stats import Comparison
from agents.reporting import (
    COMPARISON_HEADERS,
    DASH,
    ReportSection,
    RunView,
    comparison_rows,
    interval_text,
    is_num,
    joined,
    no_data,
    num,
    paired,
    question_scores,
    section,
)

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


def _teacher(data: RunView) -> dict[str, Any]:
    """The Teacher's held-out metrics (``eval_teacher``), empty when it was not evaluated."""
    found = data.metrics(0, "eval_teacher")
    return found if is_num(found.get("accuracy")) else {}


def teacher_comparisons(data: RunView, part: str = "") -> list[tuple[str, Comparison]]:
    """The last evaluated Solver against the Teacher, paired over the same held-out questions
    (a negative difference: the Teacher is still ahead)."""
    teacher, acc = _teacher(data), _accuracy_rows(data)
    if not teacher or not acc:
        return []
    return paired([(f"Teacher → Solver {acc[-1][0]}", teacher, acc[-1][3])], part)


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


def comparisons(data: RunView, part: str = "") -> list[tuple[str, Comparison]]:
    """Paired before → after comparisons over the held-out questions: base → final,
    base → after warm-up, after warm-up → final (those that exist)."""
    found = [(label, m) for label, _, _, m in _accuracy_rows(data) if question_scores(m, part)]
    if len(found) < 2:
        return []
    named = dict(found)
    final_label, final = found[-1]
    pairs = [(f"{found[0][0]} → {final_label}", found[0][1], final)]
    if "base model" in named and "before round 1" in named:
        pairs.append(("base model → before round 1", named["base model"], named["before round 1"]))
        if final_label != "before round 1":
            pairs.append((f"before round 1 → {final_label}", named["before round 1"], final))
    return paired(pairs, part)


def _funnel_rows(data: RunView) -> list[list[str]]:
    families = data.metrics(0, "calibrate").get("families")
    if not isinstance(families, dict):
        return []
    rows = []
    for name, f in sorted(families.items()):
        histogram = f.get("histogram") if isinstance(f, dict) else None
        rows.append(
            [
                f"`{name}`",
                num(f.get("candidates")),
                num(f.get("kept")),
                num(f.get("in_band")),
                num(f.get("too_hard")),
                num(f.get("too_easy")),
                " ".join(str(x) for x in histogram) if isinstance(histogram, list) else DASH,
            ]
        )
    return rows


def proxies(data: RunView) -> list[tuple[int, float | None, float | None, float | None, bool]]:
    """Per round: (round, DPO reward accuracy, the Solver's success on its own curriculum,
    held-out accuracy after the round, flagged). A round is flagged when a proxy rose while
    held-out accuracy fell (the loop optimising something that does not carry over)."""
    out = []
    previous: tuple[float | None, float | None, float | None] | None = None
    held_before = data.metrics(0, "eval").get("accuracy")
    for t in _loop_rounds(data):
        reward = data.metrics(t, "train_solver").get("reward_accuracy")
        verify = data.metrics(t, "verify")
        decided = (verify.get("correct") or 0) + (verify.get("incorrect") or 0)
        own = verify["correct"] / decided if is_num(verify.get("correct")) and decided else None
        held = data.metrics(t, "eval").get("accuracy")
        reward = float(reward) if is_num(reward) else None
        held = float(held) if is_num(held) else None
        flagged = False
        if previous is not None:
            rose = any(
                now is not None and then is not None and now > then
                for now, then in ((reward, previous[0]), (own, previous[1]))
            )
            fell = held is not None and previous[2] is not None and held < previous[2]
            flagged = rose and fell
        out.append((t, reward, own, held, flagged))
        previous = (reward, own, held if held is not None else held_before)
    return out


def _markdown(data: RunView) -> list[str]:
    acc = _accuracy_rows(data)
    change = f"change vs {acc[0][0]}" if acc else "change"
    rows = [
        [label, f"{value:.3f}", interval_text(m), f"{value - acc[0][2]:+.3f}" if i else DASH]
        + [num(m.get("items")), num(m.get("samples"))]
        + [
            f"{m['transfer_accuracy']:.3f} ({interval_text(m, 'transfer_')})"
            if is_num(m.get("transfer_accuracy"))
            else DASH
        ]
        for i, (label, _, value, m) in enumerate(acc)
    ]
    teacher = _teacher(data)
    if teacher:
        value = float(teacher["accuracy"])
        rows.append(
            ["Teacher (reference)", f"{value:.3f}", interval_text(teacher), DASH]
            + [num(teacher.get("items")), num(teacher.get("samples"))]
            + [
                f"{teacher['transfer_accuracy']:.3f} ({interval_text(teacher, 'transfer_')})"
                if is_num(teacher.get("transfer_accuracy"))
                else DASH
            ]
        )
    lines = section(
        "Held-out accuracy",
        ["checkpoint", "mean@k", "95% CI", change, "items", "samples", "transfer (95% CI)"],
        rows,
    )
    lines += section(
        "Before → after (paired, same held-out questions)",
        COMPARISON_HEADERS,
        comparison_rows(comparisons(data) + teacher_comparisons(data)),
    )
    lines += section(
        "Transfer families (never trained on), paired",
        COMPARISON_HEADERS,
        comparison_rows(comparisons(data, "transfer_") + teacher_comparisons(data, "transfer_")),
    )
    funnel = _funnel_rows(data)
    if funnel:
        calib = data.metrics(0, "calibrate")
        band = calib.get("band") or [None, None]
        lines += section(
            f"Seed filter: {num(calib.get('kept'))} of {num(calib.get('candidates'))} candidates "
            f"kept (band {num(band[0])}–{num(band[1])} of {num(calib.get('samples'))} tries)",
            [
                "family",
                "candidates",
                "kept",
                "in band",
                "too hard",
                "too easy",
                "solved j of k: j = 0 … k",
            ],
            funnel,
        )
    headers = ["round", "questions solved", "correct / incorrect / unverifiable", "pairs"]
    headers += ["zones m / l / h", "proposed → accepted (dropped)", "mean utility", "curriculum"]
    lines += section("Rounds", headers, [_round_row(data, t) for t in _loop_rounds(data)])
    monitor = proxies(data)
    if monitor:
        lines += section(
            "Proxy vs held-out (a flagged round: a proxy rose while held-out accuracy fell)",
            ["round", "DPO reward accuracy", "success on own curriculum", "held-out", "flag"],
            [
                [
                    str(t),
                    *(f"{v:.3f}" if v is not None else DASH for v in (r, o, h)),
                    "**proxy up, held-out down**" if flag else "",
                ]
                for t, r, o, h, flag in monitor
            ],
        )
    return lines


def _panels(data: RunView) -> tuple[Any, ...]:
    rounds = _loop_rounds(data)
    monitor = proxies(data)
    zones = {
        t: z for t in rounds if isinstance(z := data.metrics(t, "curriculum").get("by_zone"), dict)
    }
    pairs = {t: p for t in rounds if is_num(p := _pairs(data, t))}
    accepted = {t: a for t in rounds if is_num(a := data.metrics(t, "quality").get("accepted"))}
    return _accuracy_rows(data), zones, pairs, accepted, monitor


def _has_plot_data(data: RunView) -> bool:
    return any(_panels(data))


def _plot(data: RunView, ax_acc: Any, ax_zone: Any, ax_pairs: Any) -> None:
    acc, zones, pairs, accepted, monitor = _panels(data)
    _plot_rounds(acc, zones, pairs, accepted, ax_acc, ax_zone, ax_pairs)
    _plot_proxies(monitor, ax_acc)


def _plot_proxies(monitor: list[tuple[int, Any, Any, Any, bool]], ax: Any) -> None:
    """The loop's proxies on panel (a), against held-out accuracy; flagged rounds marked."""
    for index, label, style in (
        (1, "DPO reward accuracy", "s:"),
        (2, "own-curriculum success", "^:"),
    ):
        points = [(row[0], row[index]) for row in monitor if row[index] is not None]
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], style, label=label)
    flagged = [(t, h) for t, _, _, h, flag in monitor if flag and h is not None]
    if flagged:
        ax.plot(
            [t for t, _ in flagged],
            [h for _, h in flagged],
            "rx",
            markersize=12,
            label="proxy up, held-out down",
        )
    if monitor:
        ax.set_title("(a) held-out accuracy (95% CI) vs the loop's proxies")
        ax.legend(loc="best", fontsize=7)


def _has_interval(metrics: dict[str, Any]) -> bool:
    return interval_text(metrics) != DASH


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
    points = [(r, a, m) for _, r, a, m in acc if r is not None]
    if points:
        low = [a - m["interval"]["low"] if _has_interval(m) else 0 for _, a, m in points]
        high = [m["interval"]["high"] - a if _has_interval(m) else 0 for _, a, m in points]
        ax_acc.errorbar(
            [r for r, _, _ in points],
            [a for _, a, _ in points],
            yerr=[low, high],
            fmt="o-",
            capsize=3,
            label="held-out",
        )
        ax_acc.set_xticks([r for r, _, _ in points])
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


def summary_lines(data: RunView) -> list[str]:
    """What ``agents run socratic`` prints: held-out accuracy with intervals at each checkpoint,
    the paired comparisons, transfer, and the seed filter's funnel."""
    lines = []
    acc = [(label, m) for label, _, _, m in _accuracy_rows(data) if _has_interval(m)]
    if acc:
        first = acc[0][1]
        lines.append(
            f"held-out mean@{num(first.get('samples'))} over {num(first.get('items'))} "
            "questions: "
            + " → ".join(
                f"{label} {m['accuracy']:.3f} (95% CI {interval_text(m)})" for label, m in acc
            )
        )
    teacher = _teacher(data)
    if teacher and _has_interval(teacher):
        lines.append(
            f"Teacher (reference) {teacher['accuracy']:.3f} (95% CI {interval_text(teacher)})"
        )
    for part, name in (("", ""), ("transfer_", "transfer ")):
        for label, c in comparisons(data, part) + teacher_comparisons(data, part):
            lines.append(f"{name}{label}: {c.text()}")
    calib = data.metrics(0, "calibrate")
    if isinstance(calib.get("families"), dict):
        kept = ", ".join(
            f"{n} {num(f.get('kept'))}/{num(f.get('candidates'))}"
            for n, f in sorted(calib["families"].items())
        )
        lines.append(
            f"seed filter: {num(calib.get('kept'))} of {num(calib.get('candidates'))} candidates "
            f"kept ({kept})"
        )
    return lines


SECTION = ReportSection(
    _markdown,
    stages=("eval_base", "eval_teacher", "eval", "calibrate", *LOOP_STAGES),
    plot=_plot,
    has_plot_data=_has_plot_data,
)

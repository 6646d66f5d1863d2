"""The run report: one markdown file and one PNG figure for any run in the store.

The Socratic scheme's stages (``eval_base``, ``eval``, ``warmup`` and, per round, ``solve``,
``verify``, ``pairs``, ``train_solver``, ``zones``, ``refine``, ``quality``, ``utility``,
``train_generator``, ``curriculum``) get their own tables and panels. Any other stage still shows
up with its metrics and its time, so SFT, DPO and eval runs get a report too. A missing stage or
metric is left out (a dash in a table, a "no data" panel), never guessed.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.store import Run, Stage, Store, Usage

logger = logging.getLogger(__name__)

MARKDOWN_NAME = "report.md"
PLOT_NAME = "report.png"
LOOP_STAGES = ("solve", "verify", "pairs", "zones", "refine", "quality", "utility", "curriculum")
ZONES = ("mastered", "learning", "too_hard", "unseen")
_DASH = "—"


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
    by_key: dict[tuple[int, str], Stage] = field(init=False)

    def __post_init__(self) -> None:
        self.by_key = {(s.round, s.name): s for s in self.stages}

    def metrics(self, round: int, name: str) -> dict[str, Any]:
        stage = self.by_key.get((round, name))
        return dict(stage.metrics or {}) if stage is not None else {}


def _load(store: Store, run_id: str) -> _RunData:
    return _RunData(store.get_run(run_id), store.stages(run_id), store.usage(run_id))


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

    # Everything without a table of its own (training stages included): its metrics, as recorded.
    covered = {"eval_base", "eval", *LOOP_STAGES}
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
    if not (acc or zones or pairs or accepted or times):
        return False

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(fig)
    (ax_acc, ax_zone), (ax_pairs, ax_time) = fig.subplots(2, 2)
    fig.suptitle(f"Run {data.run.id} ({data.run.scheme}, {data.run.status})")

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

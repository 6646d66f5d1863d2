"""Building blocks of run reports, shared by the generic report and every scheme's section.

:class:`RunView` is what a section reads: the run, its stages (by round and name), its model usage
and the store, for anything else the section wants to look up. The table helpers turn metrics into
markdown: a missing value is a dash, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.store import Run, Stage, Store, Usage

DASH = "—"


@dataclass
class RunView:
    """One run as a report section sees it.

    Attributes:
        store: The store holding the run (for sections that read more than stage metrics).
        run: The run row.
        stages: Its stages, in start order.
        usage: Model usage per (role, model).
    """

    store: Store
    run: Run
    stages: list[Stage]
    usage: dict[tuple[str | None, str], Usage]
    by_key: dict[tuple[int, str], Stage] = field(init=False)
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        self.by_key = {(s.round, s.name): s for s in self.stages}

    @classmethod
    def load(cls, store: Store, run_id: str) -> RunView:
        return cls(store, store.get_run(run_id), store.stages(run_id), store.usage(run_id))

    def metrics(self, round: int, name: str) -> dict[str, Any]:
        """The metrics of stage ``name`` in ``round`` (empty when it never ran)."""
        stage = self.by_key.get((round, name))
        return dict(stage.metrics or {}) if stage is not None else {}

    def cached(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per view: a section's markdown and its plot share a lookup."""
        if key not in self._cache:
            self._cache[key] = compute()
        return self._cache[key]


@dataclass(frozen=True)
class ReportSection:
    """What a scheme adds to the report of its runs (see :mod:`agents.report`).

    Attributes:
        markdown: ``markdown(view) -> lines`` placed after the run's header.
        stages: Stage names the section reports itself; the generic "Stage metrics" table leaves
            them out.
        plot: ``plot(view, ax_a, ax_b, ax_c)`` draws panels (a) to (c) of the figure; panel (d)
            is always the time per stage.
        has_plot_data: ``has_plot_data(view)``: whether the panels have anything to show.
    """

    markdown: Callable[[Any], list[str]]
    stages: tuple[str, ...] = ()
    plot: Callable[[Any, Any, Any, Any], None] | None = None
    has_plot_data: Callable[[Any], bool] | None = None


def is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def num(value: Any) -> str:
    """A metric as table text: ints with separators, floats to 3 decimals (tiny ones in e-form)."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.3f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2e}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {num(v)}" for k, v in value.items()) or DASH
    return str(value)


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown table; columns (after the first) that hold only dashes are dropped."""
    keep = [i for i in range(len(headers)) if i == 0 or any(r[i] != DASH for r in rows)]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cells[i].replace("|", "\\|") for i in keep) + " |"

    # Right-align the columns that hold numbers (a dash counts as one).
    numeric = [all(r[i][:1] in "0123456789+-.—" for r in rows) for i in keep]
    rule = "| " + " | ".join("---:" if n else "---" for n in numeric) + " |"
    return [line(headers), rule, *map(line, rows)]


def section(title: str, headers: list[str], rows: list[list[str]]) -> list[str]:
    return ["", f"## {title}", "", *table(headers, rows)] if rows else []


def joined(metrics: dict[str, Any], keys: tuple[str, ...]) -> str:
    if not any(key in metrics for key in keys):
        return DASH
    return " / ".join(num(metrics.get(key)) for key in keys)


def latest(view: RunView, name: str) -> Stage | None:
    """The stage ``name`` of the highest round, if any."""
    found = [s for s in view.stages if s.name == name]
    return max(found, key=lambda s: s.round) if found else None


def finished(view: RunView, name: str) -> dict[str, Any]:
    """The metrics of a finished stage that was not skipped (else empty)."""
    stage = latest(view, name)
    if stage is None or stage.status != "finished":
        return {}
    metrics = dict(stage.metrics or {})
    return {} if "skipped" in metrics else metrics


def no_data(ax: Any) -> None:
    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------------- statistics
# An evaluation stage stores ``interval`` (an Estimate as a dict) and ``_scores`` ({question id:
# score}); these helpers turn them into table cells and paired comparisons for any scheme.

COMPARISON_HEADERS = ["comparison", "accuracy", "difference", "95% CI", "p", "test"]
COMPARISON_HEADERS += ["better / worse / n"]


def interval_text(metrics: dict[str, Any], part: str = "") -> str:
    """``0.320–0.510`` from a stage's ``{part}interval``, or a dash."""
    found = metrics.get(f"{part}interval")
    if isinstance(found, dict) and is_num(found.get("low")) and is_num(found.get("high")):
        return f"{found['low']:.3f}–{found['high']:.3f}"
    return DASH


def question_scores(metrics: dict[str, Any], part: str = "") -> dict[str, float] | None:
    found = metrics.get(f"_{part}scores")
    return found if isinstance(found, dict) and found else None


def paired(
    pairs: list[tuple[str, dict[str, Any], dict[str, Any]]], part: str = ""
) -> list[tuple[str, Any]]:
    """``(label, Comparison)`` for each (label, before metrics, after metrics) whose stages both
    stored per-question scores; pairs without shared questions are left out."""
    from agents.eval.stats import compare

    out = []
    for label, before, after in pairs:
        b, a = question_scores(before, part), question_scores(after, part)
        if b is None or a is None:
            continue
        samples = int(after.get("samples") or 1) if is_num(after.get("samples")) else 1
        try:
            out.append((label, compare(b, a, samples)))
        except ValueError:
            continue
    return out


def comparison_rows(found: list[tuple[str, Any]]) -> list[list[str]]:
    """Table rows (under :data:`COMPARISON_HEADERS`) of ``(label, Comparison)`` pairs."""
    return [
        [
            label,
            f"{c.before.value:.3f} → {c.after.value:.3f}",
            f"{c.difference:+.3f}",
            f"{c.low:+.3f}–{c.high:+.3f}",
            f"{c.p_value:.3g}",
            c.test,
            f"{c.better} / {c.worse} / {c.n}",
        ]
        for label, c in found
    ]

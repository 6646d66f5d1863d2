"""The run report: one markdown file and one PNG figure for any run in the store.

Every report has the run's header, the stages that did not finish, the metrics of every stage the
scheme's section does not show itself (training stages included), model usage per role and time
per stage. A scheme adds its own part through a :class:`~agents.reporting.ReportSection`: its
markdown after the header and, when it has anything to plot, panels (a) to (c) of the figure;
panel (d) is always the time per stage. A missing stage or metric is left out (a dash in a table,
a "no data" panel), never guessed.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from agents.reporting import DASH, ReportSection, RunView, duration, is_num, no_data, num, section
from agents.store import Run, Store, Usage

logger = logging.getLogger(__name__)

MARKDOWN_NAME = "report.md"
PLOT_NAME = "report.png"


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote.

    Attributes:
        markdown: The markdown report.
        plot: The PNG figure, or None when no stage has anything to plot.
    """

    markdown: Path
    plot: Path | None


#: Stage metrics shown in the time table rather than with the stage's own metrics.
TIMING = ("seconds", "peak_rss_gb")


def _stage_times(data: RunView) -> list[tuple[str, float, int, float | None]]:
    """(stage name, seconds summed over rounds, rounds counted, peak resident GB over rounds),
    longest first."""
    totals: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    peaks: dict[str, float] = {}
    for stage in data.stages:
        metrics = stage.metrics or {}
        seconds = metrics.get("seconds")
        if not is_num(seconds) and stage.finished_at is not None:
            seconds = (stage.finished_at - stage.started_at).total_seconds()
        if is_num(seconds):
            totals[stage.name] += float(seconds)
            counts[stage.name] += 1
        if is_num(metrics.get("peak_rss_gb")):
            peaks[stage.name] = max(peaks.get(stage.name, 0.0), float(metrics["peak_rss_gb"]))
    rows = ((n, s, counts[n], peaks.get(n)) for n, s in totals.items())
    return sorted(rows, key=lambda x: -x[1])


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


def _markdown(data: RunView, section_of: ReportSection | None, plot_name: str | None) -> str:
    lines = _header(data.run, plot_name, bool(data.stages))
    unfinished = [s for s in data.stages if s.status != "finished"]
    if unfinished:
        lines += ["", "## Stages not finished", ""]
        lines += [f"- round {s.round} `{s.name}`: **{s.status}**" for s in unfinished]

    covered: set[str] = set()
    if section_of is not None and data.stages:
        lines += section_of.markdown(data)
        covered = set(section_of.stages)

    # Everything without a table of its own (training stages included): its metrics, as recorded.
    other = [s for s in data.stages if s.name not in covered]
    metrics = [
        {k: v for k, v in (s.metrics or {}).items() if k not in TIMING and not k.startswith("_")}
        for s in other
    ]
    rows = [[str(s.round), f"`{s.name}`", num(m)] for s, m in zip(other, metrics, strict=True)]
    lines += section("Stage metrics", ["round", "stage", "metrics"], rows)
    headers = ["role", "model", "batches", "requests", "samples", "cached samples"]
    headers += ["prompt tokens", "completion tokens", "retries", "seconds"]
    rows = []
    for (role, model), u in sorted(data.usage.items(), key=lambda kv: (kv[0][0] or "", kv[0][1])):
        counts = [u.calls, u.requests, u.samples, u.cached_samples]
        counts += [u.prompt_tokens, u.completion_tokens, u.retries]
        rows.append([role or DASH, f"`{model}`", *map(num, counts), f"{u.latency_s:.1f}"])
    lines += section("Model usage", headers, rows)

    times = _stage_times(data)
    total = sum(s for _, s, _, _ in times)
    rows = [
        [
            f"`{n}`",
            str(c),
            duration(s),
            f"{s / total:.1%}" if total else DASH,
            f"{peak:.1f} GB" if peak is not None else DASH,
        ]
        for n, s, c, peak in times
    ]
    if len(times) > 1:
        peaks = [p for *_, p in times if p is not None]
        top = f"{max(peaks):.1f} GB" if peaks else DASH
        rows.append(["total", DASH, duration(total), "100.0%" if total else DASH, top])
    headers = ["stage", "rounds", "time", "share", "peak memory"]
    lines += section("Time per stage", headers, rows)
    return "\n".join(lines) + "\n"


def render_markdown(
    store: Store, run_id: str, plot_name: str | None, section_of: ReportSection | None = None
) -> str:
    """The markdown report of a run (writes nothing).

    Args:
        store: The store holding the run.
        run_id: The run to report on.
        plot_name: Relative path of the figure to link, or None for no figure link.
        section_of: The scheme's report section, if it has one.

    Returns:
        The report as markdown text.
    """
    return _markdown(RunView.load(store, run_id), section_of, plot_name)


def _usage_note(usage: dict[tuple[str | None, str], Usage]) -> str:
    """Batches and tokens per role, teacher first."""
    calls: dict[str, int] = defaultdict(int)
    tokens: dict[str, int] = defaultdict(int)
    for (role, _), u in usage.items():
        calls[role or "other"] += u.calls
        tokens[role or "other"] += u.tokens
    order = sorted(calls, key=lambda r: (r != "teacher", r))
    return "\n".join(f"{r}: {calls[r]:,} batches, {tokens[r]:,} tokens" for r in order)


def _plot(data: RunView, section_of: ReportSection | None, path: Path) -> bool:
    """Draw the 2x2 figure to ``path``; False (nothing written) when there is nothing to plot."""
    times = _stage_times(data)
    panels = (
        section_of is not None
        and section_of.plot is not None
        and (section_of.has_plot_data is None or section_of.has_plot_data(data))
    )
    if not (panels or times):
        return False

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 8), layout="constrained")
    FigureCanvasAgg(fig)
    (ax_a, ax_b), (ax_c, ax_time) = fig.subplots(2, 2)
    fig.suptitle(f"Run {data.run.id} ({data.run.scheme}, {data.run.status})")
    if section_of is not None and section_of.plot is not None:
        section_of.plot(data, ax_a, ax_b, ax_c)
    else:
        for ax in (ax_a, ax_b, ax_c):
            no_data(ax)
    ax_time.set_title("(d) time per stage (s)")
    if times:
        ax_time.barh([n for n, *_ in times], [s for _, s, *_ in times])
        ax_time.invert_yaxis()
    else:
        no_data(ax_time)
    if data.usage:
        box = {"boxstyle": "round", "facecolor": "white", "alpha": 0.85}
        style = {"ha": "right", "va": "bottom", "fontsize": 8, "bbox": box}
        ax_time.text(0.98, 0.02, _usage_note(data.usage), transform=ax_time.transAxes, **style)

    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=100)
    os.replace(tmp, path)
    return True


def write_report(
    store: Store, run_id: str, out_dir: Path, section_of: ReportSection | None = None
) -> ReportFiles:
    """Write ``report.md`` and, when there is anything to plot, ``report.png`` into ``out_dir``.

    Each file is written under a temporary name and then moved into place, so a reader never sees
    half a report. A stale ``report.png`` is removed when the run has nothing to plot.

    Args:
        store: The store holding the run.
        run_id: The run to report on.
        out_dir: Directory for the report (created if missing), e.g. under
            ``Workspace.reports_dir``.
        section_of: The scheme's report section (``SchemeRun.report_section``), if it has one.

    Returns:
        The paths written.
    """
    data = RunView.load(store, run_id)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plot: Path | None = out_dir / PLOT_NAME
    if not _plot(data, section_of, plot):
        plot.unlink(missing_ok=True)
        plot = None
    markdown = out_dir / MARKDOWN_NAME
    tmp = markdown.with_name(f".{markdown.name}.tmp")
    tmp.write_text(_markdown(data, section_of, PLOT_NAME if plot else None), encoding="utf-8")
    os.replace(tmp, markdown)
    logger.info("wrote report of run %s to %s", run_id, out_dir)
    return ReportFiles(markdown=markdown, plot=plot)

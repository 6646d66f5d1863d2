"""The toy scheme's part of the report: how many answers the student learnt from."""

from __future__ import annotations

from typing import Any

from agents.reporting import ReportSection, RunView, finished, no_data, num, section


def _markdown(view: RunView) -> list[str]:
    answered, trained = finished(view, "answer"), finished(view, "train")
    row = ["toy", num(answered.get("answers")), num(trained.get("examples"))]
    return section("Toy distillation", ["scheme", "answers", "examples trained"], [row])


def _plot(view: RunView, ax_a: Any, ax_b: Any, ax_c: Any) -> None:
    ax_a.set_title("(a) answers")
    ax_a.bar(["answers"], [finished(view, "answer").get("answers", 0)])
    no_data(ax_b)
    no_data(ax_c)


SECTION = ReportSection(_markdown, stages=("answer",), plot=_plot)

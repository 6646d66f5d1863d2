"""``agents run dpo``: LoRA DPO on a JSONL of ``{prompt, chosen, rejected}`` rows."""

from __future__ import annotations

from pydantic import Field

from agents.schemes.base import Scheme
from agents.schemes.finetune import FinetuneJob, FinetuneRun
from agents.training.dpo import DPOSettings


class DPOJob(FinetuneJob):
    """DPO on preference rows {prompt, chosen, rejected}."""

    training: DPOSettings = Field(default_factory=DPOSettings)


class DPORun(FinetuneRun):
    """A LoRA DPO run."""

    scheme = "dpo"
    job = DPOJob
    method = "dpo"


SCHEME = Scheme(
    run=DPORun,
    help="LoRA DPO on a JSONL of {prompt, chosen, rejected}",
    export_roles=None,  # the role is a setting (role: student by default)
)

__all__ = ["SCHEME", "DPOJob", "DPORun"]

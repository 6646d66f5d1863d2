"""``agents run sft``: LoRA SFT on a JSONL of conversations, loss on assistant turns only.

Rows with a ``weight`` train weighted SFT.
"""

from __future__ import annotations

from pydantic import Field

from agents.schemes.base import Scheme
from agents.schemes.finetune import FinetuneJob, FinetuneRun
from agents.training.sft import SFTSettings


class SFTJob(FinetuneJob):
    """SFT with loss on assistant turns only; rows with a ``weight`` train weighted SFT."""

    training: SFTSettings = Field(default_factory=SFTSettings)


class SFTRun(FinetuneRun):
    """A LoRA SFT run."""

    scheme = "sft"
    job = SFTJob
    method = "sft"


SCHEME = Scheme(
    run=SFTRun,
    help="LoRA SFT on a JSONL of conversations (assistant-only loss)",
    export_roles=None,  # the role is a setting (role: student by default)
)

__all__ = ["SCHEME", "SFTJob", "SFTRun"]

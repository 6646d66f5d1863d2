"""A minimal scheme defined outside the framework, through the same contract as the built-in ones.

Self-distillation in two stages: a teacher answers a few questions (``answer``), a student is
fine-tuned on the answers (``train``). ``tests/test_scheme_contract.py`` adds :data:`SCHEME` to
the list of schemes and drives it through ``agents run``, ``--resume``, the report and
``agents export`` without any edit to a shared module.
"""

from agents.schemes.base import Scheme
from toy_scheme.config import ToyJob
from toy_scheme.graph import ToyDistillation

SCHEME = Scheme(
    run=ToyDistillation,
    help="Toy self-distillation: a teacher answers, a student is fine-tuned on the answers",
    export_roles=("student",),
)

__all__ = ["SCHEME", "ToyDistillation", "ToyJob"]

"""Config files validate strictly; flags and dotted overrides win over file values."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from agents.config import (
    CONFIG_DIR,
    ConfigError,
    StrictModel,
    config_flags,
    load_config,
    parse_override,
)
from agents.jobs import SCHEMES
from agents.schemes.eval import EvalJob
from agents.schemes.sft import SFTJob
from agents.schemes.socratic import SocraticJob


def test_every_scheme_ships_a_config_that_validates() -> None:
    for scheme in SCHEMES:
        assert scheme.default_config is not None, scheme.name
        load_config(scheme.config, scheme.default_config)


def test_flags_come_from_the_config_fields_and_their_descriptions() -> None:
    flags = {flag.name: flag for flag in config_flags(SocraticJob)}
    assert flags["rounds"].key == "rounds" and flags["rounds"].kind is int
    assert flags["rounds"].help == SocraticJob.model_fields["rounds"].description
    assert flags["seeds"].key == "seeds.count"  # a short flag the config declares in FLAGS
    assert flags["use-generator"].kind is bool
    assert "engine" not in flags  # a mapping has no flag: --set engine.teacher.x=... sets it
    sft = {flag.name: flag for flag in config_flags(SFTJob)}
    # a dataclass setting's help is its line under "Attributes:"
    assert (
        sft["max-steps"].key == "training.max_steps" and "Optimizer steps" in sft["max-steps"].help
    )


def test_overrides_win_and_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("base: builtin:smollm2-135m\ntraining:\n  learning_rate: 1.0e-4\n")
    key, value = parse_override("training.batch_size=8")
    config = load_config(SFTJob, path, {key: value, "training.learning_rate": 3e-4})
    assert config.training.batch_size == 8
    assert config.training.learning_rate == 3e-4
    assert config.lora.r == 8  # a key left out keeps its default


def test_a_null_override_sets_null() -> None:
    """``--set transfer_student=null`` turns an optional role off (flags not given never reach
    the overrides, so None is only ever asked for)."""
    from agents.cli import _overrides, scheme_parser
    from agents.jobs import scheme_named
    from agents.schemes.strategy_teaching import StrategyTeachingJob

    assert StrategyTeachingJob().transfer_student is not None
    key, value = parse_override("transfer_student=null")
    assert load_config(StrategyTeachingJob, None, {key: value}).transfer_student is None
    args = scheme_parser(scheme_named("strategy-teaching")).parse_args(["--rounds", "1"])
    assert _overrides(args) == {"rounds": 1}  # flags not given are left out


def test_unknown_keys_are_rejected_with_their_path() -> None:
    with pytest.raises(ConfigError, match=r"training\.learnig_rate"):
        load_config(SFTJob, None, {"training.learnig_rate": 1e-4})


def test_wrong_types_are_rejected_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("samples: many\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: samples"):
        load_config(EvalJob, path)


def test_a_top_level_list_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(SFTJob, path)


def test_override_without_equals_is_rejected() -> None:
    with pytest.raises(ConfigError, match="key.sub=value"):
        parse_override("training.batch_size")


def test_socratic_partial_sections_keep_the_scheme_defaults() -> None:
    job = SocraticJob(solve={"samples": 4}, solver_training={"max_steps": 2}, eval={"samples": 1})
    assert (job.solve.samples, job.solve.temperature, job.solve.top_p) == (4, 0.8, 0.95)
    assert (job.eval.temperature, job.eval.top_p) == (0.7, 0.9)
    # the scheme's DPO learning rate and length, not DPOSettings' plain defaults
    assert (job.solver_training.learning_rate, job.solver_training.max_length) == (5e-5, 512)
    assert job.solver_training.max_steps == 2
    assert SocraticJob(warmup=None).warmup is None


def test_shipped_socratic_configs_validate() -> None:
    full = load_config(SocraticJob, CONFIG_DIR / "socratic.yaml", {"seeds.count": 100})
    quick = load_config(SocraticJob, CONFIG_DIR / "socratic_quick.yaml")
    assert full.seeds.count == 100 and full.calibrate.samples == 8 and full.rounds == 3
    assert full.seeds.transfer and full.seeds.heldout >= 100
    assert quick.rounds == 1 and quick.seeds.count < full.seeds.count
    # README command 1 shows a paired test on at least 100 held-out questions.
    assert quick.seeds.heldout * quick.eval.samples >= 100
    # --seed-data replaces a config's mixture with the one family it names.
    flagged = load_config(SocraticJob, CONFIG_DIR / "socratic.yaml", {"seeds.source": "x.jsonl"})
    assert [f.name for f in flagged.seeds.mixture()] == ["x.jsonl"]
    assert [f.name for f in full.seeds.mixture()] == [
        "chain_sum",
        "basic_arithmetic",
        "simple_equations",
    ]


def test_shipped_strategy_teaching_configs_validate() -> None:
    from agents.schemes.strategy_teaching import StrategyTeachingJob

    default = load_config(StrategyTeachingJob, CONFIG_DIR / "strategy_teaching.yaml")
    served = load_config(StrategyTeachingJob, CONFIG_DIR / "strategy_teaching_vllm.yaml")
    for job in (default, served):
        assert not job.judge_is_teacher  # a sceptic's evaluation: the judge is another model
        assert job.role_model("transfer_student") != job.teacher
    assert all(served.role_model(r).startswith("vllm:") for r in ("teacher", "student", "judge"))
    # roles on one model share a server only when their engine options are equal
    assert served.engine["teacher"] == served.engine["customer"]
    assert served.engine["judge"] == served.engine["transfer_student"]
    assert served.tasks.heldout >= 15 and served.heldout_turns == 2


def test_a_percent_sign_in_a_description_is_escaped_for_argparse() -> None:
    class Job(StrictModel):
        share: float = Field(0.5, description="share of items (50% by default)")

    (flag,) = config_flags(Job)
    assert flag.help == "share of items (50%% by default)"

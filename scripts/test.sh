#!/usr/bin/env bash
# Set up (if needed) and run the whole offline test suite. Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
.venv/bin/python -m pytest -q --durations=15 "$@"
status=$?
# pytest exits 5 when it collected no tests: that is a failure here, never a silent pass.
if [ "$status" -eq 5 ]; then
    echo "no tests were collected" >&2
    exit 1
fi
exit "$status"

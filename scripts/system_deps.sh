#!/usr/bin/env bash
# Installs bubblewrap, which the sandbox uses to isolate model-written code.
# Outside CI it never fails: without bubblewrap the sandbox falls back to `unshare` or refuses to
# run code. On CI (CI set) a missing bubblewrap fails the setup: its tests must run, not skip.
set -u

if command -v bwrap >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    fi
fi

if command -v apt-get >/dev/null 2>&1 \
    && $SUDO apt-get update -qq >/dev/null 2>&1 \
    && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq bubblewrap >/dev/null 2>&1 \
    && command -v bwrap >/dev/null 2>&1; then
    exit 0
fi

echo "bubblewrap could not be installed; the sandbox will fall back to unshare or refuse to run code."
if [ -n "${CI:-}" ]; then
    echo "CI needs bubblewrap so the sandbox tests run on it; failing." >&2
    exit 1
fi
exit 0

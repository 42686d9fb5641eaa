#!/usr/bin/env bash
# Create .venv (Python 3.11) and install regimeflow with its test extras. Re-running is cheap:
# the install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
stamp=.venv/.regimeflow-installed
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing dependencies (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned in pyproject (torch==2.13.*): the CPU wheel, not the multi-GB CUDA build.
  .venv/bin/python -m pip install -q -e ".[dev]"
  echo "$want" > "$stamp"
fi

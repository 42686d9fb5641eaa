#!/usr/bin/env bash
# Quickstart 1: set up, then run the main job (whole pipeline on the default data source).
# Data: $REGIMEFLOW_DATA_DIR (a CSV snapshot directory) if set, else ./data/market, else Yahoo if
# online, else the synthetic market (labelled synthetic everywhere). Extra args go to `regimeflow run`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/regimeflow run "$@"

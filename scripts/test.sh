#!/usr/bin/env bash
# Quickstart 2: set up, then run the test suite (never touches the network). Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh   # PostgreSQL and Redis for the scale-out tests, when missing
set +e
.venv/bin/python -m pytest "$@"
rc=$?
# pytest exits 5 when it collected no tests: that is a broken suite, not a pass.
if [ $rc -eq 5 ]; then echo "[test] pytest collected no tests" >&2; fi
exit $rc

"""Layer rule: ``ml`` never imports dagster or duckdb (it is reusable from a notebook)."""
import pkgutil
import subprocess
import sys
from pathlib import Path

import ml

REPO = Path(__file__).resolve().parents[1]


def test_ml_imports_neither_dagster_nor_duckdb():
    modules = sorted(m.name for m in pkgutil.walk_packages(ml.__path__, "ml."))
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "bad = sorted(k for k in sys.modules if k.split('.')[0] in ('dagster', 'duckdb'))\n"
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert len(modules) > 30
    assert out.stdout.strip() == ""

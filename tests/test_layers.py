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


def _sources(*packages: str):
    for pkg in packages:
        for path in sorted((REPO / pkg).rglob("*.py")):
            yield str(path.relative_to(REPO)), path.read_text()


def test_one_implementation_of_drawdown_atomic_write_sha_check_and_panel_build():
    """The shared mechanisms live in one place each (the rest of the tree calls them)."""
    where = {
        "maximum.accumulate": {"ml/metrics.py"},  # drawdown: ml.metrics.drawdown
        ".cum_max(": set(),
        "os.replace(": {"ml/artifacts.py"},  # atomic writes and copies
        "mkstemp(": {"ml/artifacts.py"},
        "hashlib": {"ml/artifacts.py"},  # file hashes and the panels' data hashes (sha256_arrays)
        "torch.load(": {"ml/artifacts.py"},  # verified, weights_only loads
        "joblib.load(": {"ml/artifacts.py"},
        "def allocation_panel(": {"ml/dataset.py"},  # the one panel build
    }
    found: dict[str, set[str]] = {k: set() for k in where}
    for name, text in _sources("ml", "warehouse", "infra", "assets", "orchestration", "benchmarks"):
        for needle in where:
            if needle in text:
                found[needle].add(name)
    assert found == where


def test_assets_import_no_orchestration():
    """Resources, IO managers, partitions and automation conditions live in the leaf package ``infra``."""
    for name, text in _sources("assets", "infra"):
        for line in text.splitlines():
            if line.startswith(("import ", "from ")):
                assert "orchestration" not in line, (name, line)

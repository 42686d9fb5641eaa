"""Benchmark / comparison: the sector book's regimes from the fold's HMMs (default, lineage) vs the reference
design's weekly refit (basket HMMs refit every 5 sessions on the trailing 252), on an existing warehouse whose
folds are trained (e.g. after ``regimeflow run``).

Usage: python benchmarks/sector_book.py --warehouse data/regimeflow.duckdb [--regime-source weekly_refit]

Works on a COPY of the warehouse (the original is only read; the fold artifacts are read in place): runs
``eval/sector_book`` for every yearly fold with the chosen regime source, then the walk-forward asset, and
prints the walk-forward metrics next to the original warehouse's (the fold-HMM book) and the wall time per
fold. Writes ``benchmarks/results/sector_book_<source>.md``.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import polars as pl  # noqa: E402

from assets.keys import EVAL_SECTOR_BOOK, EVAL_SECTOR_BOOK_WALK_FORWARD  # noqa: E402
from infra.partitions import FOLDS  # noqa: E402
from infra.resources import SectorBookResource, WarehouseResource  # noqa: E402
from ml.folds import yearly_keys  # noqa: E402
from orchestration.definitions import definitions_with  # noqa: E402
from warehouse.db import Warehouse  # noqa: E402
from warehouse.tables import read_table  # noqa: E402

COLUMNS = ["strategy", "sharpe", "sharpe_ci_low", "sharpe_ci_high", "cagr", "max_drawdown", "win_rate",
           "profit_factor", "trades", "avg_hold_days"]


def _table(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    fmt = (lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    return head + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in frame.iter_rows())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warehouse", required=True, help="primary DuckDB file of a trained run")
    ap.add_argument("--regime-source", default="weekly_refit", choices=["fold", "weekly_refit"])
    args = ap.parse_args()
    src = Path(args.warehouse).resolve()
    tmp = Path(tempfile.mkdtemp(prefix="sector_book_bench_"))
    copy = tmp / src.name
    shutil.copy2(src, copy)
    if Path(f"{src}.wal").exists():
        shutil.copy2(f"{src}.wal", f"{copy}.wal")
    resource = WarehouseResource(path=str(copy), artifacts_dir=str(src.parent / "artifacts"),
                                 reports_dir=str(tmp / "reports"), publish_snapshot=False)
    defs = definitions_with(warehouse=resource, sector_book=SectorBookResource(regime_source=args.regime_source))
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    keys = yearly_keys(read_table(resource.get(), "ref.folds"))
    instance.add_dynamic_partitions(FOLDS, keys)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    t_all = time.perf_counter()
    for key in keys:
        t0 = time.perf_counter()
        ok = job.execute_in_process(instance=instance, partition_key=key, asset_selection=[EVAL_SECTOR_BOOK],
                                    run_config=quiet).success
        print(f"eval/sector_book {key} ({args.regime_source}) {'ok' if ok else 'FAILED'} "
              f"{time.perf_counter() - t0:6.1f} s", flush=True)
    ok = job.execute_in_process(instance=instance, asset_selection=[EVAL_SECTOR_BOOK_WALK_FORWARD],
                                run_config=quiet).success
    total = time.perf_counter() - t_all
    new = read_table(resource.get(), "eval.sector_book_walk_forward_metrics").filter(pl.col("cost_multiplier") == 1.0)
    old = read_table(Warehouse(src, publish_snapshot=False), "eval.sector_book_walk_forward_metrics").filter(
        pl.col("cost_multiplier") == 1.0)
    text = (f"# Sector book: regimes from the fold HMMs vs {args.regime_source}\n\n"
            f"{len(keys)} yearly folds {keys[0]}..{keys[-1]}; {total:.0f} s for the {args.regime_source} evaluation "
            f"({total / len(keys):.1f} s per fold){'' if ok else ' - walk-forward FAILED'}.\n\n"
            f"## fold HMMs (the default: the fold's regimes/sector_hmm by lineage)\n\n{_table(old.select(COLUMNS))}\n"
            f"## {args.regime_source}\n\n{_table(new.select(COLUMNS))}")
    print(text)
    out = Path(__file__).parent / "results" / f"sector_book_{args.regime_source}.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

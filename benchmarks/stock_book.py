"""The stock book's walk-forward on an existing trained warehouse (e.g. after ``regimeflow run``), with the time
of each of its steps: the prescreen refit in causal generations, the funnel and its blocking look-ahead check,
the stock RL ensemble, the book's evaluation - then the walk-forward asset.

Usage: python benchmarks/stock_book.py --data-dir /path/to/data [--workdir /tmp/stock_book_bench] [--folds 2012,2013]

Works on a COPY of the warehouse and its artifact folder (``<data-dir>/warehouse``; the original is only read) in
``--workdir``; keeps the copy (warehouse, report ``reports/stock_book.html``, Dagster instance ``.dagster_home``)
so the results can be queried afterwards. Prints per-fold step seconds and the walk-forward metrics at 1x costs
and writes ``benchmarks/results/stock_book.md``. Run it alone on the machine (torch threads).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402
import polars as pl  # noqa: E402

from assets.keys import (  # noqa: E402
    EVAL_STOCK_BOOK,
    EVAL_STOCK_BOOK_WALK_FORWARD,
    MODELS_PRESCREEN,
    MODELS_STOCK_FUNNEL,
    MODELS_STOCK_RL,
)
from infra.partitions import FOLDS  # noqa: E402
from infra.resources import WarehouseResource  # noqa: E402
from ml.folds import yearly_keys  # noqa: E402
from orchestration.definitions import definitions_with  # noqa: E402
from warehouse.tables import read_table  # noqa: E402

STEPS = [MODELS_PRESCREEN, MODELS_STOCK_FUNNEL, MODELS_STOCK_RL, EVAL_STOCK_BOOK]
COLUMNS = ["strategy", "sharpe", "sharpe_ci_low", "sharpe_ci_high", "cagr", "ann_vol", "max_drawdown", "avg_turnover",
           "cost_drag", "trades", "win_rate", "profit_factor", "avg_hold_days"]


def _table(frame: pl.DataFrame) -> str:
    head = "| " + " | ".join(frame.columns) + " |\n|" + "---|" * len(frame.columns) + "\n"
    fmt = (lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    return head + "".join("| " + " | ".join(fmt(v) for v in row) + " |\n" for row in frame.iter_rows())


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Seconds per step key of one run (step start -> success / failure events)."""
    start, out = {}, {}
    for rec in instance.all_logs(run_id):
        ev = rec.dagster_event
        if ev is None or rec.step_key is None:
            continue
        if ev.event_type_value == "STEP_START":
            start[rec.step_key] = rec.timestamp
        elif ev.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and rec.step_key in start:
            out[rec.step_key] = rec.timestamp - start[rec.step_key]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", required=True, help="data folder of a trained run (holds warehouse/)")
    ap.add_argument("--workdir", default="/tmp/stock_book_bench")
    ap.add_argument("--folds", default=None, help="comma-separated fold keys (default: every yearly fold)")
    args = ap.parse_args()
    src = Path(args.data_dir).resolve() / "warehouse"
    work = Path(args.workdir).resolve()
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(src, work / "warehouse", ignore=shutil.ignore_patterns("*.lock", "regimeflow_read.duckdb"))
    (work / ".dagster_home").mkdir()
    os.environ["DAGSTER_HOME"] = str(work / ".dagster_home")
    resource = WarehouseResource(path=str(work / "warehouse" / "regimeflow.duckdb"),
                                 reports_dir=str(work / "reports"))
    defs = definitions_with(warehouse=resource)
    job = defs.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.get()
    keys = yearly_keys(read_table(resource.get(), "ref.folds"))
    if args.folds:
        keys = [k for k in keys if k in set(args.folds.split(","))]
    instance.add_dynamic_partitions(FOLDS, keys)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    per_step: dict[str, float] = defaultdict(float)
    lines = []
    t_all = time.perf_counter()
    for key in keys:
        t0 = time.perf_counter()
        res = job.execute_in_process(instance=instance, partition_key=key, asset_selection=STEPS, run_config=quiet,
                                     raise_on_error=False)
        secs = step_seconds(instance, res.run_id)
        for k, v in secs.items():
            per_step[k] += v
        line = (f"fold {key} {'ok' if res.success else 'FAILED'} {time.perf_counter() - t0:6.1f} s: "
                + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
        print(line, flush=True)
        lines.append(line)
    res = job.execute_in_process(instance=instance, asset_selection=[EVAL_STOCK_BOOK_WALK_FORWARD], run_config=quiet,
                                 raise_on_error=False)
    total = time.perf_counter() - t_all
    wh = resource.get()
    metrics = read_table(wh, "eval.stock_book_walk_forward_metrics")
    base = metrics.filter(pl.col("cost_multiplier") == 1.0)
    stress = (metrics.select("strategy", "cost_multiplier", "sharpe", "cagr", "cost_drag")
              .sort("strategy", "cost_multiplier"))
    attribution = read_table(wh, "eval.stock_book_walk_forward_attribution")
    text = (f"# Stock book walk-forward ({len(keys)} folds {keys[0]}..{keys[-1]})\n\n"
            f"{total:.0f} s in all{'' if res.success else ' - walk-forward FAILED'}. Step seconds summed over the "
            "folds:\n\n" + "\n".join(f"- {k}: {v:.0f} s ({v / len(keys):.1f} s per fold)"
                                    for k, v in sorted(per_step.items(), key=lambda kv: -kv[1]))
            + f"\n\n## 1x costs\n\n{_table(base.select([c for c in COLUMNS if c in base.columns]))}\n"
            f"## Cost stress\n\n{_table(stress)}\n## P&L per signal source (sum over folds)\n\n{_table(attribution)}\n"
            "## Per fold\n\n" + "\n".join(f"- {x}" for x in lines) + "\n")
    print(text)
    out = Path(__file__).parent / "results" / "stock_book.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()

"""Benchmark: the cluster-state Q-learning experiment (the thesis reproduction) on the real snapshot.

    python benchmarks/qlearning.py                 # timings + the reproduction's headline rows
    python benchmarks/qlearning.py --seeds 0 1 2 3 4   # and the seed spread of every headline row

Measures, on this machine:

* the compiled epsilon-greedy loop: updates per second (9 M updates = one Simulation-1 model);
* the whole reproduction end to end - load SPY + VIX from 1993 through the CSV source, features, 32 members
  (4 simulations x K-means / GMM x 4 cluster counts, 2,000 / 1,000 epochs), validation choice, switcher grid,
  thesis metrics, KDE Monte Carlo (10,000 x 252) - target < 2 minutes;
* with ``--seeds``: the reproduction per seed (clustering init and exploration), mean and std of the headline
  rows' total log return and full-period SR, so a difference from the thesis can be read against the seed
  noise. Nothing is chosen on the test window; the seeds are only reported.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks._data import market_dir  # noqa: E402
from ml.agents.qlearning import QLearningConfig, train_q  # noqa: E402
from ml.data.csv_source import CsvMarketSource  # noqa: E402
from ml.data.universe import Universe  # noqa: E402
from ml.features import compute_features  # noqa: E402
from ml.reports.thesis import HEADLINE  # noqa: E402
from ml.research.thesis import ThesisProtocol, reproduce  # noqa: E402

SHOWN = ["strategy", "total_log_return", "thesis_total_log_return", "std", "max_drawdown_log",
         "thesis_max_drawdown_log", "sr_annual", "sr_full", "thesis_sr_full", "sortino", "information_ratio",
         "mann_whitney_p", "mean_exposure"]


def update_rate() -> float:
    rng = np.random.default_rng(0)
    s, r = rng.integers(0, 10, 4500), rng.normal(size=(4500, 5))
    train_q(s, r, 10, 2)  # compile (or load the cache)
    t0 = time.perf_counter()
    train_q(s, r, 10, 2000)
    return 2000 * 4500 / (time.perf_counter() - t0)


def run(root: Path, seed: int) -> tuple[float, pl.DataFrame, object]:
    t0 = time.perf_counter()
    u = Universe(allocation=["SPY"], sector_etfs=[], include_stocks=False, indices=["VIX"], history_start=None)
    m = CsvMarketSource(root).load(u)
    feats = compute_features(m.bars, m.index_bars)
    res = reproduce(feats, ThesisProtocol(seed=seed), QLearningConfig(seed=seed))
    return time.perf_counter() - t0, res.table, res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="*", default=[])
    args = ap.parse_args()
    root = market_dir()
    if root is None:
        print("real snapshot not found (../shared/data/market or $REGIMEFLOW_TEST_DATA_DIR): nothing to measure")
        return 0
    pl.Config.set_tbl_rows(60)
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(220)
    print(f"compiled Q update loop: {update_rate() / 1e6:.1f} M updates/s")
    elapsed, table, res = run(root, 0)
    print(f"reproduction end to end (seed 0): {elapsed:.1f} s  (target < 120 s)")
    print(f"best single member {res.book.best}; model of models {', '.join(res.book.stack)}; switcher {res.book.switch}")
    print(table.filter(pl.col("strategy").is_in(list(HEADLINE))).select(SHOWN).with_columns(pl.col(pl.Float64).round(2)))
    print(table.filter(pl.col("simulation") != "").select("strategy", "validation_sharpe", *SHOWN[1:])
          .with_columns(pl.col(pl.Float64).round(2)))
    print(res.switch_grid.with_columns(pl.col(pl.Float64).round(3)))
    if args.seeds:
        rows = []
        for seed in args.seeds:
            t, tab, r = run(root, seed)
            print(f"seed {seed}: {t:.1f} s, best {r.book.best}, stack {', '.join(r.book.stack)}")
            rows.append(tab.filter(pl.col("strategy").is_in(list(HEADLINE))).select(
                "strategy", "total_log_return", "max_drawdown_log", "sr_full").with_columns(pl.lit(seed).alias("seed")))
        spread = (pl.concat(rows).group_by("strategy", maintain_order=True)
                  .agg([f(c).round(2).alias(f"{c}_{n}") for c in ("total_log_return", "max_drawdown_log", "sr_full")
                        for n, f in (("mean", pl.mean), ("std", pl.std))]))
        print(f"seed spread over seeds {args.seeds}:")
        print(spread)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

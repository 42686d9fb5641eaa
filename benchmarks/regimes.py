"""Benchmark: per-fold regime + prescreen fitting on the real snapshot (a script, not a test).

    python benchmarks/regimes.py                    # fold 2020, 2 worker processes
    python benchmarks/regimes.py --fold seed-2008-2019 --n-jobs 1 --mode basket

Times (wall and CPU) for one fold:

* 11 sector HMMs (3 states, 5 restarts each, EM on the train window) + causal filter over all dates;
* 6 prescreen slots ({buy, sell} × {low, moderate, high} VIX regime; RF + HGB, purged-CV tuned,
  every 5th session per ticker) on ~115 tickers × ~5,000 days;
* test-window evaluation: ROC AUC / precision@top-10% / Brier per slot.

Target (issue "regimes and prescreen classifiers per fold"): HMMs + prescreen fit <= 60 s on a
2-core machine. The machine may be shared: the load average is printed, and the sum of per-task
CPU seconds (each fit is single-threaded) gives the idle-machine estimate
``HMM CPU / hmm_jobs + max(prescreen CPU / n_jobs, longest slot)``. Data loading, features and labels are not part of the
target (they come from the warehouse in the pipeline) and are reported separately.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import polars as pl  # noqa: E402

from ml.data.csv_source import CsvMarketSource  # noqa: E402
from ml.data.universe import Universe  # noqa: E402
from ml.features import compute_features  # noqa: E402
from ml.folds import default_folds, first_usable_date, get_fold  # noqa: E402
from ml.labels import MAX_LABEL_HORIZON, compute_labels  # noqa: E402
from ml.prescreen import PrescreenConfig, evaluate_prescreen, train_prescreen  # noqa: E402
from ml.regimes.hmm import (  # noqa: E402
    HmmConfig,
    fit_sector_hmms,
    hmm_observations,
    sector_filtered_probabilities,
    sector_groups,
)
from ml.regimes.vix import vix_regimes  # noqa: E402


def _t() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "market")
    ap.add_argument("--fold", default="2020")
    ap.add_argument("--n-jobs", type=int, default=2, help="prescreen worker processes (one per slot)")
    ap.add_argument("--hmm-jobs", type=int, default=1, help="HMM worker processes (1: in-process, no spawn cost)")
    ap.add_argument("--mode", choices=["etf", "basket"], default="etf")
    ap.add_argument("--restarts", type=int, default=5)
    args = ap.parse_args()
    if not (args.data_dir / "ohlcv").is_dir():
        sys.exit(f"no snapshot at {args.data_dir}")
    logging.basicConfig(level=logging.ERROR)

    w0, _ = _t()
    md = CsvMarketSource(args.data_dir).load(Universe(), on_progress=lambda _: None)
    feats = compute_features(md.bars, md.index_bars)
    labels = compute_labels(md.bars)
    cal = md.bars.filter(pl.col("ticker") == "SPY").get_column("date")
    vr = vix_regimes(md.index_bars, cal)
    fold = get_fold(default_folds(cal, first_usable_date(cal), MAX_LABEL_HORIZON), args.fold)
    prep = time.perf_counter() - w0
    print(f"snapshot: {args.data_dir}  tickers {md.bars['ticker'].n_unique()}  rows {md.bars.height:,}")
    print(f"fold {fold.key}: train {fold.train_start}..{fold.train_end}  embargo {fold.embargo_days}  "
          f"test {fold.test_start}..{fold.test_end}")
    print(f"prep (load + features + labels + VIX regimes, not in target): {prep:.1f} s")

    # ---- sector HMMs
    w, c = _t()
    obs = hmm_observations(md.bars, sector_groups(md.bars, md.sectors, args.mode))
    t_obs = time.perf_counter() - w
    cfg = HmmConfig(mode=args.mode, restarts=args.restarts, n_jobs=args.hmm_jobs)
    w1, _ = _t()
    fitted = fit_sector_hmms(obs, fold.train_start, fold.train_end, cfg)
    t_fit = time.perf_counter() - w1
    w2, _ = _t()
    probs = sector_filtered_probabilities(fitted, obs)
    t_filter = time.perf_counter() - w2
    hmm_cpu = [f.meta["fit_cpu_seconds"] for f in fitted.values()]
    print(f"\nHMM ({args.mode}, {len(fitted)} sectors x {args.restarts} restarts, n_jobs={args.hmm_jobs}): "
          f"observations {t_obs:.2f} s, fit {t_fit:.1f} s wall (sum of fit CPU {sum(hmm_cpu):.1f} s), "
          f"filter {t_filter:.2f} s ({probs.height:,} rows)")
    for sector, f in fitted.items():
        print(f"  {sector:<24} n={f.n_obs:5d} ll={f.log_likelihood:10.1f} converged={f.converged!s:5} "
              f"restarts converged {sum(f.restart_converged)}/{len(f.restart_converged)} "
              f"iters {list(f.restart_iterations)} cpu {f.meta['fit_cpu_seconds']:.2f} s")

    # ---- prescreen
    pcfg = PrescreenConfig(n_jobs=args.n_jobs)
    w3, _ = _t()
    models = train_prescreen(feats, labels, vr, fold, pcfg)
    t_pre = time.perf_counter() - w3
    summ = models.summary_frame()
    pre_cpu = summ.get_column("fit_cpu_seconds").to_list()
    print(f"\nprescreen (6 slots, n_jobs={args.n_jobs}, sample_every={pcfg.sample_every}): {t_pre:.1f} s wall "
          f"(sum of slot CPU {sum(pre_cpu):.1f} s)")
    with pl.Config(tbl_cols=20, tbl_width_chars=200, tbl_hide_dataframe_shape=True):
        print(summ.select("side", "regime", "n_train", "base_rate", "cv_auc_rf", "cv_auc_hgb", "rf_params",
                          "hgb_params", "fit_seconds", "fit_cpu_seconds"))
        w4, _ = _t()
        ev = evaluate_prescreen(models, feats, labels, vr, top_fraction=0.1)
        t_eval = time.perf_counter() - w4
        print(f"\ntest-window evaluation ({fold.test_start}..{fold.test_end}, {t_eval:.1f} s):")
        print(ev["metrics"].select("side", "regime", "n_rows", "n_days", "base_rate", "roc_auc", "precision_at_k",
                                   "lift_at_k", "brier", "brier_climatology", "baseline_roc_auc"))

    total = t_obs + t_fit + t_filter + t_pre
    cpu = sum(hmm_cpu) + sum(pre_cpu)
    longest = max(pre_cpu)
    load = os.getloadavg()
    print(f"\nmachine: {os.cpu_count()} CPUs, load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f}")
    est = sum(hmm_cpu) / args.hmm_jobs + max(sum(pre_cpu) / args.n_jobs, longest)
    print(f"TOTAL HMM + prescreen: {total:.1f} s wall; fit CPU {cpu:.1f} s -> idle-machine estimate "
          f"{est:.1f} s (HMM CPU / {args.hmm_jobs} + prescreen CPU / {args.n_jobs}; target <= 60 s)")


if __name__ == "__main__":
    main()

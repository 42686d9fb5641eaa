"""Walk-forward ablation of the PPO observation: what do the VIX term structure, the fold's sector-HMM
probabilities and the prescreen scores add to the base inputs?

Usage (after the main job, e.g. ``REGIMEFLOW_DATA_DIR=../shared/data/market bash scripts/run.sh``)::

    .venv/bin/python benchmarks/observation_ablation.py [--variants base,term,hmm,prescreen,all] [--folds 2012,...]

For every yearly fold (2012 → last complete year) and observation variant (``ml.dataset.OBSERVATION_VARIANTS``)
it trains PPO exactly as ``models/policy_ppo`` does (default ``PPOConfig``, seed 0, the fold's train window,
the panel from ``ml.dataset.policy_panel`` with the fold's stored sector-HMM probabilities and prescreen
models), rolls the policy out deterministically over the test window and backtests it (5 bps), then stitches
the test windows. Nothing is chosen on a test window here: every variant trains with the same settings.
The prescreen variants need causal train-window scores: when the fold's stored prescreen models have a single
generation, the fold's prescreen is retrained with ``--prescreen-generations`` (cached in ``--work``).

Output: one table (stdout and ``benchmarks/results/observation_ablation.md``): Sharpe with its 95% stationary-
bootstrap interval, CAGR, max drawdown, corr(equity weight, VIX) (SPY+QQQ weight vs the decision-day VIX), the
Sharpe difference vs ``base`` with its paired 95% interval; equal weight (the pipeline's baseline, same days) for
reference; and per-fold test Sharpes (``observation_ablation_folds.csv``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from ml import metrics  # noqa: E402
from ml.agents.ppo import PPOConfig, evaluate_policy, train_ppo  # noqa: E402
from ml.artifacts import load_joblib  # noqa: E402
from ml.backtest import backtest  # noqa: E402
from ml.data.universe import ALLOCATION_ASSETS, EQUITY_ASSETS  # noqa: E402
from ml.dataset import ABLATION_VARIANTS, OBSERVATION_VARIANTS, policy_panel  # noqa: E402
from ml.envs.portfolio import EnvConfig  # noqa: E402
from ml.folds import fold_from_frame, yearly_keys  # noqa: E402
from warehouse import Warehouse  # noqa: E402
from warehouse.catalog import artifact_records, read_asset, storage  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def _prescreen(wh: Warehouse, root: Path, fold, features, labels, vix, generations: int, work: Path):
    """The fold's stored prescreen models, or (single generation) a retrain with causal generations, cached."""
    from ml.prescreen import load_models, save_models, train_prescreen

    rec = artifact_records(wh, "prescreen", [fold.key]).row(0, named=True)
    stored = load_joblib(root / rec["path"], rec["sha256"])
    if len(stored.generations) > 1:
        return stored
    cache = work / f"prescreen_{fold.key}_g{generations}.joblib"
    if cache.exists():
        return load_models(cache, None)
    t0 = time.perf_counter()
    cfg = stored.config.model_copy(update={"generations": generations})
    models = train_prescreen(features.filter(pl.col("date") <= fold.test_end),
                             labels.filter(pl.col("date") <= fold.test_end), vix, fold, cfg)
    save_models(models, cache)
    print(f"  fold {fold.key}: prescreen retrained with {generations} generations ({time.perf_counter() - t0:.0f} s)",
          flush=True)
    return models


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default=None, help="warehouse file (default $REGIMEFLOW_WAREHOUSE or ./data/...)")
    parser.add_argument("--variants", default=",".join(ABLATION_VARIANTS))
    parser.add_argument("--folds", default="all", help="'all' yearly folds or keys like 2019,2020")
    parser.add_argument("--prescreen-generations", type=int, default=3)
    parser.add_argument("--work", default="/tmp/regimeflow-ablation")
    args = parser.parse_args()
    wh = Warehouse(args.warehouse) if args.warehouse else Warehouse()
    root = wh.path.parent / "artifacts"
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    variants = [v for v in args.variants.split(",") if v]
    folds = read_asset(wh, storage(("ref", "folds")))
    keys = yearly_keys(folds) if args.folds == "all" else args.folds.split(",")
    features_all = read_asset(wh, storage(("features", "daily")), tickers=None)  # prescreen retrains need all
    features = features_all.filter(pl.col("ticker").is_in(list(ALLOCATION_ASSETS)))
    vix = read_asset(wh, storage(("regimes", "vix")))
    needs_prescreen = any(OBSERVATION_VARIANTS[v].prescreen for v in variants)
    labels = read_asset(wh, storage(("labels", "forward"))) if needs_prescreen else None
    rows: dict[str, list[pl.DataFrame]] = {v: [] for v in variants}
    fold_rows = []
    ppo_cfg = PPOConfig()
    t_all = time.perf_counter()
    for key in keys:
        fold = fold_from_frame(folds, key)
        probs = read_asset(wh, storage(("regimes", "sector_hmm")), folds=[key])
        models = _prescreen(wh, root, fold, features_all.drop("source", "computed_at", strict=False),
                            labels.drop("source", "computed_at", strict=False), vix, args.prescreen_generations,
                            work) if needs_prescreen else None
        for v in variants:
            spec = OBSERVATION_VARIANTS[v]
            t0 = time.perf_counter()
            panel = policy_panel(features, spec, sector_probabilities=probs, prescreen=models, vix_regimes=vix,
                                 end=fold.test_end)
            lo, hi = panel.index_range(fold.train_start, fold.train_end)
            env = EnvConfig(observation=spec)
            policy = train_ppo(panel, lo, hi, env, ppo_cfg).policy
            tlo, thi = panel.index_range(fold.test_start, fold.test_end)
            weights = evaluate_policy(policy, panel, tlo, thi).weights
            res = backtest(weights, panel, tlo, thi, env.cost_rate)
            eq_cols = [panel.assets.index(a) for a in EQUITY_ASSETS]
            rows[v].append(pl.DataFrame({"date": pl.Series(res.dates).cast(pl.Date), "net_return": res.net_returns,
                                         "equity_weight": res.weights_held[:, eq_cols].sum(1),
                                         "vix": panel.vix[tlo:thi]}))
            sharpe = metrics.sharpe(res.net_returns)
            fold_rows.append({"fold": key, "variant": v, "inputs": len(panel.feature_names), "test_sharpe": sharpe,
                              "seconds": time.perf_counter() - t0})
            print(f"fold {key} {v:<10} {len(panel.feature_names):>2} inputs  test Sharpe {sharpe:5.2f}  "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    tracks = {v: pl.concat(rows[v]).sort("date") for v in variants}
    base = tracks[variants[0]]["net_return"].to_numpy()
    equal = (read_asset(wh, storage(("eval", "fold")), folds=keys)
             .filter(pl.col("strategy") == "equal_weight").sort("date"))
    out = []
    for v, t in tracks.items():
        r = t["net_return"].to_numpy()
        lo, hi = metrics.sharpe_ci(r)
        diff, dlo, dhi = metrics.sharpe_diff_ci(r, base)
        corr = float(np.corrcoef(t["equity_weight"].to_numpy(), t["vix"].to_numpy())[0, 1])
        out.append({"observation": v, "inputs": int(pl.DataFrame(fold_rows).filter(pl.col("variant") == v)["inputs"].max()),
                    "sharpe": metrics.sharpe(r), "ci_low": lo, "ci_high": hi, "cagr": metrics.cagr(r),
                    "max_drawdown": metrics.max_drawdown(r), "corr_equity_vix": corr,
                    "diff_vs_base": diff, "diff_ci_low": dlo, "diff_ci_high": dhi})
    if equal.height == tracks[variants[0]].height:
        r = equal["net_return"].to_numpy()
        lo, hi = metrics.sharpe_ci(r)
        diff, dlo, dhi = metrics.sharpe_diff_ci(r, base)
        out.append({"observation": "equal_weight (baseline)", "inputs": 0, "sharpe": metrics.sharpe(r), "ci_low": lo,
                    "ci_high": hi, "cagr": metrics.cagr(r), "max_drawdown": metrics.max_drawdown(r),
                    "corr_equity_vix": float("nan"), "diff_vs_base": diff, "diff_ci_low": dlo, "diff_ci_high": dhi})
    table = pl.DataFrame(out)
    RESULTS.mkdir(exist_ok=True)
    pl.DataFrame(fold_rows).write_csv(RESULTS / "observation_ablation_folds.csv")
    lines = ["| observation | inputs | Sharpe [95% CI] | CAGR | max DD | corr(equity, VIX) | Sharpe − base [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for r in table.iter_rows(named=True):
        lines.append(f"| {r['observation']} | {r['inputs'] or '–'} | {r['sharpe']:.2f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}] "
                     f"| {r['cagr']:.1%} | {r['max_drawdown']:.1%} | "
                     f"{'–' if np.isnan(r['corr_equity_vix']) else format(r['corr_equity_vix'], '+.2f')} | "
                     f"{r['diff_vs_base']:+.2f} [{r['diff_ci_low']:+.2f}, {r['diff_ci_high']:+.2f}] |")
    text = "\n".join(lines)
    (RESULTS / "observation_ablation.md").write_text(text + "\n")
    print(f"\n{len(keys)} folds {keys[0]}..{keys[-1]}, {tracks[variants[0]].height} test days, "
          f"{time.perf_counter() - t_all:.0f} s\n{text}")


if __name__ == "__main__":
    main()

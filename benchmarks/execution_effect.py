"""Walk-forward effect of the execution model: orders filling at the decision's close vs the next open.

Usage (after the main job or ``regimeflow run --folds none``: it needs ``features.daily`` with
``ret_intraday`` and ``ref.folds``)::

    .venv/bin/python benchmarks/execution_effect.py [--folds 2012,...] [--seed 0]

For every yearly fold (2012 → last complete year) it trains PPO as ``models/policy_ppo`` does (default
``PPOConfig`` and ``EnvConfig``, base observation, the fold's train window) once per execution model
(``close``, ``next_open``), rolls each policy out deterministically over the test window and backtests it
under the model it was trained for; the close-trained policy is also backtested with ``next_open`` fills
(the pure fill effect on the same weights). The baselines run under both models. Test windows are stitched.
Nothing is chosen on a test window.

Output: ``benchmarks/results/execution_effect.md`` (and stdout): per strategy, Sharpe [95% CI], CAGR and max
drawdown under each model, and the Sharpe difference next_open − close with its paired 95% interval.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ml import metrics  # noqa: E402
from ml.agents.ppo import PPOConfig, evaluate_policy, train_ppo  # noqa: E402
from ml.backtest import backtest  # noqa: E402
from ml.backtest.baselines import run_baselines  # noqa: E402
from ml.data.universe import ALLOCATION_ASSETS  # noqa: E402
from ml.dataset import policy_panel  # noqa: E402
from ml.envs.portfolio import EnvConfig  # noqa: E402
from ml.folds import fold_from_frame, yearly_keys  # noqa: E402
from warehouse import Warehouse  # noqa: E402
from warehouse.catalog import read_asset, storage  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
EXECUTIONS = ("close", "next_open")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", default=None, help="warehouse file (default $REGIMEFLOW_WAREHOUSE or ./data/...)")
    parser.add_argument("--folds", default="all", help="'all' yearly folds or keys like 2019,2020")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    wh = Warehouse(args.warehouse) if args.warehouse else Warehouse()
    folds = read_asset(wh, storage(("ref", "folds")))
    keys = yearly_keys(folds) if args.folds == "all" else args.folds.split(",")
    features = read_asset(wh, storage(("features", "daily")), tickers=list(ALLOCATION_ASSETS))
    ppo_cfg = PPOConfig(seed=args.seed)
    tracks: dict[tuple[str, str], list[np.ndarray]] = {}
    t_all = time.perf_counter()
    for key in keys:
        fold = fold_from_frame(folds, key)
        panel = policy_panel(features, end=fold.test_end)
        lo, hi = panel.index_range(fold.train_start, fold.train_end)
        tlo, thi = panel.index_range(fold.test_start, fold.test_end)
        for ex in EXECUTIONS:
            t0 = time.perf_counter()
            env = EnvConfig(execution=ex)
            policy = train_ppo(panel, lo, hi, env, ppo_cfg).policy
            weights = evaluate_policy(policy, panel, tlo, thi).weights
            fills = EXECUTIONS if ex == "close" else (ex,)
            for fill in fills:
                name = f"ppo (trained {ex})"
                res = backtest(weights, panel, tlo, thi, env.cost_rate, execution=fill)
                tracks.setdefault((name, fill), []).append(res.net_returns)
            for name, res in run_baselines(panel, tlo, thi, env.cost_rate, execution=ex).items():
                tracks.setdefault((name, ex), []).append(res.net_returns)
            sharpe = metrics.sharpe(tracks[(f"ppo (trained {ex})", ex)][-1])
            print(f"fold {key} trained+filled {ex:<9} test Sharpe {sharpe:5.2f} ({time.perf_counter() - t0:.0f} s)",
                  flush=True)
    series = {k: np.concatenate(v) for k, v in tracks.items()}
    names = list(dict.fromkeys(n for n, _ in series))
    lines = ["| strategy | close: Sharpe [95% CI] | CAGR | max DD | next_open: Sharpe [95% CI] | CAGR | max DD "
             "| Sharpe next_open − close [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for n in names:
        cells = []
        for ex in EXECUTIONS:
            r = series.get((n, ex))
            if r is None:
                cells.append("– | – | –")
                continue
            lo, hi = metrics.sharpe_ci(r)
            cells.append(f"{metrics.sharpe(r):.2f} [{lo:.2f}, {hi:.2f}] | {metrics.cagr(r):.1%} | "
                         f"{metrics.max_drawdown(r):.1%}")
        if all((n, ex) in series for ex in EXECUTIONS):
            d, dlo, dhi = metrics.sharpe_diff_ci(series[(n, "next_open")], series[(n, "close")])
            diff = f"{d:+.3f} [{dlo:+.3f}, {dhi:+.3f}]"
        else:
            diff = "–"
        lines.append(f"| {n} | {cells[0]} | {cells[1]} | {diff} |")
    n_days = next(iter(series.values())).size
    text = "\n".join(lines)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "execution_effect.md").write_text(text + "\n")
    print(f"\n{len(keys)} folds {keys[0]}..{keys[-1]}, {n_days} test days, seed {args.seed}, "
          f"{time.perf_counter() - t_all:.0f} s\n{text}")


if __name__ == "__main__":
    main()

"""Backtest arithmetic shared by the RL environments and the backtester (pure NumPy/Torch).

:mod:`ml.backtest.costs` is the one cost/turnover/drift implementation; :mod:`ml.backtest.engine` runs
target weights through it over a panel window; :mod:`ml.backtest.baselines` (imported explicitly) holds
the rule-based benchmark strategies.
"""
from ml.backtest.costs import RebalanceResult, drift_weights, net_returns, rebalance
from ml.backtest.engine import BacktestResult, backtest, month_start_mask, start_weights

__all__ = [
    "BacktestResult",
    "RebalanceResult",
    "backtest",
    "drift_weights",
    "month_start_mask",
    "net_returns",
    "rebalance",
    "start_weights",
]

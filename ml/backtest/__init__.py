"""The backtester (pure NumPy) over a panel window.

:mod:`ml.costs` (below both this package and the RL environments) is the one cost/turnover/drift
implementation; :mod:`ml.backtest.engine` runs
target weights through it over a panel window; :mod:`ml.backtest.baselines` (imported explicitly) holds
the rule-based benchmark strategies.
"""
from ml.backtest.engine import BacktestResult, backtest, month_start_mask, start_weights

__all__ = ["BacktestResult", "backtest", "month_start_mask", "start_weights"]

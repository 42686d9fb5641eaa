"""Backtest arithmetic shared by the RL environments and the backtester (pure NumPy/Torch)."""
from ml.backtest.costs import RebalanceResult, drift_weights, net_returns, rebalance

__all__ = ["RebalanceResult", "drift_weights", "net_returns", "rebalance"]

"""Reinforcement-learning environments over the aligned market panel (pure NumPy/Polars/Torch)."""
from ml.envs.market_panel import MarketPanel, build_panel
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig, PortfolioEnv, softmax_weights

__all__ = ["BatchedPortfolioEnv", "EnvConfig", "MarketPanel", "PortfolioEnv", "build_panel", "softmax_weights"]

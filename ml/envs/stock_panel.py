"""The aligned arrays the stock environment, the stock policies and the stock book run on.

A :class:`StockPanel` is a view of the dataset for ``S`` stocks over ``T`` sessions (built by
:func:`ml.stock_book.build_stock_panel` from the feature store, the fold's prescreen scores and raw bars); it
computes nothing itself.

Timing (project convention): row t holds what is known at the close of t - the per-stock feature columns
dated t, the prescreen probabilities dated t, the market columns (VIX) dated t, the close of t. A decision
at the close of t trades at the open of t+1 and earns row t+1: the old weights earn ``gap[t+1]`` (close t
-> open t+1), the new ones ``session[t+1]`` (open t+1 -> close t+1). A missing bar earns 0 (frozen).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["StockPanel"]


@dataclass(frozen=True, eq=False)
class StockPanel:
    """Per-session arrays for ``S`` stocks.

    ``dates`` ``[T]`` datetime64[D] increasing; ``features`` ``[T, S, F]`` per-stock observation columns named
    ``feature_names`` (raw units, NaN = unknown: warm-up or no bar); ``buy_prob``/``sell_prob`` ``[T, S]`` the
    prescreen probabilities (NaN = unscored); ``gap``/``session`` ``[T, S]`` simple returns of day t's overnight
    and session parts (finite, 0 where no bar); ``close`` ``[T, S]`` adjusted closes (NaN = no bar);
    ``valid`` ``[T, S]`` bool - a bar and every feature at t, so the stock can be a candidate at the close of t;
    ``market`` ``[T, M]`` market-wide columns named ``market_names`` (finite); ``vix`` ``[T]`` the VIX close
    known at t (index points); ``benchmark`` ``[T]`` SPY's close-to-close simple return of day t (0 on row 0)."""

    dates: np.ndarray
    tickers: tuple[str, ...]
    features: np.ndarray
    feature_names: tuple[str, ...]
    buy_prob: np.ndarray
    sell_prob: np.ndarray
    gap: np.ndarray
    session: np.ndarray
    close: np.ndarray
    valid: np.ndarray
    market: np.ndarray
    market_names: tuple[str, ...]
    vix: np.ndarray
    benchmark: np.ndarray

    def __post_init__(self) -> None:
        t, s = self.gap.shape
        shapes = {"dates": (t,), "features": (t, s, len(self.feature_names)), "buy_prob": (t, s),
                  "sell_prob": (t, s), "session": (t, s), "close": (t, s), "valid": (t, s),
                  "market": (t, len(self.market_names)), "vix": (t,), "benchmark": (t,)}
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"StockPanel.{name} has shape {getattr(self, name).shape}, expected {shape}")
        if len(self.tickers) != s:
            raise ValueError(f"{len(self.tickers)} tickers for {s} stock columns")
        for name in ("gap", "session", "market", "vix", "benchmark"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"StockPanel.{name} contains NaN/inf")
        if (self.gap <= -1).any() or (self.session <= -1).any():
            raise ValueError("StockPanel returns must be > -1")
        if t > 1 and not (np.diff(self.dates.astype("int64")) > 0).all():
            raise ValueError("StockPanel.dates must be strictly increasing")

    @property
    def n_dates(self) -> int:
        return int(self.gap.shape[0])

    @property
    def n_stocks(self) -> int:
        return int(self.gap.shape[1])

    def index_range(self, start, end) -> tuple[int, int]:
        """Rows ``(lo, hi)``: decisions at ``lo .. hi-1`` earn the days dated in ``[start, end]`` (``lo`` is the
        last row before ``start``, ``hi`` the last row <= ``end``)."""
        d = self.dates
        lo = max(int(np.searchsorted(d, np.datetime64(start, "D"), side="left")) - 1, 0)
        hi = int(np.searchsorted(d, np.datetime64(end, "D"), side="right")) - 1
        if hi <= lo:
            raise ValueError(f"window [{start}, {end}] has no tradable day in the stock panel ({d[0]} .. {d[-1]})")
        return lo, hi

    @classmethod
    def synthetic(cls, n_dates: int = 300, n_stocks: int = 12, n_features: int = 4, seed: int = 0) -> StockPanel:
        """A small random panel for tests: stock returns with a weak signal in feature 0 (it predicts the next
        session's return), prescreen probabilities correlated with it, VIX around 20."""
        rng = np.random.default_rng(seed)
        t, s, f = n_dates, n_stocks, n_features
        feats = rng.normal(size=(t, s, f))
        nxt = np.zeros((t, s))
        nxt[1:] = 0.002 * feats[:-1, :, 0]
        session = np.clip(nxt + 0.012 * rng.normal(size=(t, s)), -0.5, 0.5)
        gap = np.clip(0.004 * rng.normal(size=(t, s)), -0.5, 0.5)
        close = 100.0 * np.cumprod((1 + gap) * (1 + session), axis=0)
        p_buy = 1.0 / (1.0 + np.exp(-(feats[:, :, 0] + 0.5 * rng.normal(size=(t, s)))))
        vix = np.clip(20 + np.cumsum(rng.normal(size=t)) * 0.5, 10, 60)
        return cls(
            dates=np.busday_offset(np.datetime64("2010-01-04"), np.arange(t), roll="forward"),
            tickers=tuple(f"S{i:02d}" for i in range(s)), features=feats,
            feature_names=tuple(f"f{j}" for j in range(f)), buy_prob=p_buy, sell_prob=1.0 - p_buy,
            gap=gap, session=session, close=close, valid=np.ones((t, s), dtype=bool),
            market=np.stack([(vix - 20) / 10, np.zeros(t)], axis=1), market_names=("vix_centered", "vix_term"),
            vix=vix, benchmark=np.r_[0.0, session.mean(1)[1:]],
        )

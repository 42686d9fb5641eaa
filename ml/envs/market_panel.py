"""The aligned NumPy arrays the allocation environments, the backtester and the daily decisions run on.

A :class:`MarketPanel` is a *view* of the dataset (built by :func:`ml.dataset.allocation_panel` from the
feature store and, for some observation variants, a fold's regime and prescreen outputs); it computes no
feature itself.

Timing (project convention, see docs/architecture.md): every value in row t uses only data known at the
close of t. ``returns[t]`` is the simple return of day t (close of the previous panel row -> close of t),
so a decision taken at the close of row t earns ``returns[t+1]``. ``features[t]`` are the observation
columns named ``feature_names`` (e.g. ``SPY.ret_5d``, ``vix_centered``); ``vix[t]`` is the VIX close known
at the decision (index points; the VIX-shaped reward, the VIX baselines and the circuit breaker read it).
``gaps[t]`` (optional) is the overnight part of ``returns[t]``: close of the previous panel row -> open of t
(from adjusted opens), what the old weights earn when orders fill at the next open (``ml.costs``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np

from ml.artifacts import sha256_arrays

__all__ = ["MarketPanel"]

_HASH_VERSION = b"regimeflow.market_panel/2"


@dataclass(frozen=True, eq=False)
class MarketPanel:
    """Per-date arrays for ``A`` assets over ``T`` trading days.

    ``dates``: ``datetime64[D] [T]``, strictly increasing; ``returns``: ``[T, A]`` simple returns (> -1);
    ``features``: ``[T, F]`` named by ``feature_names``; ``vix``: ``[T]``; ``gaps``: ``[T, A]`` overnight
    simple returns or ``None`` (no opens: only ``execution="close"``/``"next_close"``). All float64 and finite.
    Use :meth:`from_arrays` for toy panels (tests)."""

    dates: np.ndarray
    assets: tuple[str, ...]
    returns: np.ndarray
    features: np.ndarray
    feature_names: tuple[str, ...]
    vix: np.ndarray
    gaps: np.ndarray | None = None
    _hash_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        t, a = self.returns.shape
        expect = {"dates": (self.dates, (t,)), "features": (self.features, (t, len(self.feature_names))),
                  "vix": (self.vix, (t,))}
        for name, (arr, shape) in expect.items():
            if arr.shape != shape:
                raise ValueError(f"MarketPanel.{name} has shape {arr.shape}, expected {shape}")
        if len(self.assets) != a:
            raise ValueError(f"{len(self.assets)} asset names for {a} return columns")
        if len(set(self.feature_names)) != len(self.feature_names):
            raise ValueError(f"duplicate feature names in {self.feature_names}")
        if self.gaps is not None:
            if self.gaps.shape != (t, a):
                raise ValueError(f"MarketPanel.gaps has shape {self.gaps.shape}, expected {(t, a)}")
            if not np.isfinite(self.gaps).all() or (self.gaps <= -1.0).any():
                raise ValueError("MarketPanel.gaps must be finite and > -1")
        if t < 2:
            raise ValueError("a panel needs at least 2 dates")
        for name in ("returns", "features", "vix"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"MarketPanel.{name} contains NaN/inf")
        if (self.returns <= -1.0).any():
            raise ValueError("MarketPanel.returns must be > -1")
        if not (np.diff(self.dates.astype("int64")) > 0).all():
            raise ValueError("MarketPanel.dates must be strictly increasing")

    @classmethod
    def from_arrays(
        cls,
        returns: np.ndarray,
        features: np.ndarray | None = None,
        *,
        feature_names: Sequence[str] | None = None,
        assets: Sequence[str] | None = None,
        dates: np.ndarray | None = None,
        vix: np.ndarray | None = None,
        gaps: np.ndarray | None = None,
    ) -> MarketPanel:
        """Panel from raw arrays (float64 copies). Defaults: no features (``[T, 0]``), names ``f0, f1, ...``,
        assets ``A0, A1, ...``, business days from 2000-01-03, ``vix = 20``."""
        returns = np.asarray(returns, dtype=np.float64)
        t, a = returns.shape
        feats = np.zeros((t, 0)) if features is None else np.asarray(features, dtype=np.float64).reshape(t, -1)
        return cls(
            dates=np.asarray(dates, dtype="datetime64[D]") if dates is not None
            else np.busday_offset(np.datetime64("2000-01-03"), np.arange(t), roll="forward"),
            assets=tuple(assets) if assets is not None else tuple(f"A{i}" for i in range(a)),
            returns=returns,
            features=feats,
            feature_names=tuple(feature_names) if feature_names is not None
            else tuple(f"f{j}" for j in range(feats.shape[1])),
            vix=np.asarray(vix, dtype=np.float64) if vix is not None else np.full(t, 20.0),
            gaps=None if gaps is None else np.asarray(gaps, dtype=np.float64).reshape(t, a),
        )

    @property
    def n_dates(self) -> int:
        return int(self.returns.shape[0])

    @property
    def n_assets(self) -> int:
        return int(self.returns.shape[1])

    def index_range(self, start: date | np.datetime64 | str | None, end: date | np.datetime64 | str | None) -> tuple[int, int]:
        """Panel rows ``(start_idx, end_idx)`` whose *earned* returns are the days dated in ``[start, end]``.

        Decisions are taken at rows ``start_idx .. end_idx-1`` and earn ``returns[start_idx+1 .. end_idx]``.
        ``start_idx`` is the last row dated before ``start`` (row 0 if there is none, in which case the
        first day is not earned); ``end_idx`` the last row dated <= ``end``.
        """
        d = self.dates
        lo = 0 if start is None else max(int(np.searchsorted(d, np.datetime64(start, "D"), side="left")) - 1, 0)
        hi = self.n_dates - 1 if end is None else int(np.searchsorted(d, np.datetime64(end, "D"), side="right")) - 1
        if hi <= lo:
            raise ValueError(f"window [{start}, {end}] has no tradable day in the panel ({d[0]} .. {d[-1]})")
        return lo, hi

    def data_hash(self, start_idx: int = 0, end_idx: int | None = None) -> str:
        """sha256 (hex) of rows ``start_idx .. end_idx`` (inclusive; default all) of every array plus the
        asset and feature names: identifies the data a policy was trained on."""
        end_idx = self.n_dates - 1 if end_idx is None else end_idx
        key = (start_idx, end_idx)
        if key not in self._hash_cache:
            sl = slice(start_idx, end_idx + 1)
            names = "|".join(self.assets).encode() + b"#" + "|".join(self.feature_names).encode()
            arrays = (self.returns, self.features, self.vix, *(() if self.gaps is None else (self.gaps,)))
            self._hash_cache[key] = sha256_arrays(
                _HASH_VERSION + names,
                [self.dates[sl].astype("int64"), *(np.asarray(a[sl], dtype=np.float64) for a in arrays)],
            )
        return self._hash_cache[key]

    def gaps_for(self, execution: str) -> np.ndarray | None:
        """The overnight gaps when orders fill at the next open (``execution="next_open"``), else None; a
        clear error when this panel has none (no opens: feature store column ``ret_intraday``)."""
        if execution != "next_open":
            return None
        if self.gaps is None:
            raise ValueError("execution='next_open' needs the panel's overnight gaps (feature store column "
                             "ret_intraday for every asset); this panel has none")
        return self.gaps

    def date_of(self, idx: int) -> date:
        return self.dates[idx].astype(object)

    def column(self, name: str) -> np.ndarray:
        """The feature column ``name`` (a view)."""
        try:
            return self.features[:, self.feature_names.index(name)]
        except ValueError:
            raise KeyError(f"{name!r} is not a panel column; have {list(self.feature_names)}") from None

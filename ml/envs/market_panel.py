"""The aligned NumPy panel the allocation environments run on, built from canonical bars.

Timing (project convention, see ARCHITECTURE.md): every value in row t of the panel uses only data
timestamped <= the close of day t. ``returns[t]`` is the simple close-to-close return of day t,
``adj_close_t / adj_close_{t-1} - 1`` where t-1 is the previous panel row, so a decision taken at the
close of row t earns ``returns[t+1]``.

Calendar: the trading days on which *every* asset has a bar (inner join of the assets' dates). The VIX
(and VIX3M) are joined onto that calendar as-of (last close dated <= t, at most
``vix_max_staleness_days`` calendar days old), so CBOE rows on exchange holidays never become rows.
``vix_lag_days`` (default 0) lags the index values by that many calendar rows; 0 means the VIX close
of t (16:15 ET) is known when the decision for t is taken in the end-of-day batch, as in
:class:`ml.features.config.FeatureConfig`. Rows whose features are not yet warm (the first ~63 rows of
history) or whose VIX is missing are dropped, and ``returns`` are computed between consecutive kept rows.

Feature blocks (all float64, per row t):

* asset features ``[T, A, 3]``: ``ret_5d = close_t/close_{t-5} - 1``, ``ret_21d = close_t/close_{t-21} - 1``
  (fractions), ``vol_21d`` = sample std of the last 21 daily log returns x sqrt(252) (annualised fraction);
* VIX features ``[T, 4]``: ``vix_centered = (VIX-20)/10``, ``vix_chg_5d = (VIX_t - VIX_{t-5})/10``,
  ``vix_rel_21 = VIX_t / mean(VIX over the 21 rows ending at t) - 1``,
  ``vix_high_63`` = 1 if VIX_t > its 80th percentile (linear interpolation) over the 63 rows ending at t;
* term structure ``[T, 2]`` (optional in the observation): ``VIX/VIX3M - 1`` and its 5-row change
  (0 where VIX3M is missing, i.e. before 2006-07-17);
* extra ``[T, K]`` (optional): per-date columns passed in as a frame (e.g. sector-HMM filtered
  probabilities or prescreen scores, already causal), left-joined on date, missing values -> 0.

``vix`` ``[T]`` is the (lagged) VIX level in index points used by the ``vix_shaped`` reward.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from ml.data.universe import ALLOCATION_ASSETS

__all__ = ["ASSET_FEATURES", "MarketPanel", "TERM_FEATURES", "VIX_FEATURES", "build_panel"]

ASSET_FEATURES: tuple[str, ...] = ("ret_5d", "ret_21d", "vol_21d")
VIX_FEATURES: tuple[str, ...] = ("vix_centered", "vix_chg_5d", "vix_rel_21", "vix_high_63")
TERM_FEATURES: tuple[str, ...] = ("vix_term", "vix_term_chg_5d")
_HASH_VERSION = b"regimeflow.market_panel/1"


@dataclass(frozen=True, eq=False)
class MarketPanel:
    """Aligned per-date arrays for ``A`` assets over ``T`` trading days (see the module docstring).

    ``dates``: ``datetime64[D]`` ``[T]``; ``returns``: ``[T, A]``; ``asset_features``: ``[T, A, 3]``;
    ``vix_features``: ``[T, 4]``; ``vix``: ``[T]``; ``term_features``: ``[T, 2]``; ``extra``: ``[T, K]``.
    Use :meth:`from_arrays` to build toy panels directly (tests).
    """

    dates: np.ndarray
    assets: tuple[str, ...]
    returns: np.ndarray
    asset_features: np.ndarray
    vix_features: np.ndarray
    vix: np.ndarray
    term_features: np.ndarray
    extra: np.ndarray
    extra_names: tuple[str, ...] = ()
    _hash_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        t, a = self.returns.shape
        expect = {
            "dates": (self.dates, (t,)),
            "asset_features": (self.asset_features, (t, a, len(ASSET_FEATURES))),
            "vix_features": (self.vix_features, (t, len(VIX_FEATURES))),
            "vix": (self.vix, (t,)),
            "term_features": (self.term_features, (t, len(TERM_FEATURES))),
            "extra": (self.extra, (t, len(self.extra_names))),
        }
        for name, (arr, shape) in expect.items():
            if arr.shape != shape:
                raise ValueError(f"MarketPanel.{name} has shape {arr.shape}, expected {shape}")
        if len(self.assets) != a:
            raise ValueError(f"{len(self.assets)} asset names for {a} return columns")
        if t < 2:
            raise ValueError("a panel needs at least 2 dates")
        for name in ("returns", "asset_features", "vix_features", "vix", "term_features", "extra"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"MarketPanel.{name} contains NaN/inf")
        if (self.returns <= -1.0).any():
            raise ValueError("MarketPanel.returns must be > -1")
        if self.dates.size > 1 and not (np.diff(self.dates.astype("int64")) > 0).all():
            raise ValueError("MarketPanel.dates must be strictly increasing")

    @classmethod
    def from_arrays(
        cls,
        returns: np.ndarray,
        asset_features: np.ndarray,
        vix_features: np.ndarray,
        *,
        assets: Sequence[str] | None = None,
        dates: np.ndarray | None = None,
        vix: np.ndarray | None = None,
        term_features: np.ndarray | None = None,
        extra: np.ndarray | None = None,
        extra_names: Sequence[str] = (),
    ) -> MarketPanel:
        """Panel from raw arrays (float64 copies); defaults: business-day dates from 2000-01-03,
        ``vix = 20 + 10 * vix_features[:, 0]``, zero term structure, no extra columns."""
        returns = np.asarray(returns, dtype=np.float64)
        t, a = returns.shape
        vf = np.asarray(vix_features, dtype=np.float64)
        return cls(
            dates=np.asarray(dates, dtype="datetime64[D]") if dates is not None
            else np.busday_offset(np.datetime64("2000-01-03"), np.arange(t), roll="forward"),
            assets=tuple(assets) if assets is not None else tuple(f"A{i}" for i in range(a)),
            returns=returns,
            asset_features=np.asarray(asset_features, dtype=np.float64),
            vix_features=vf,
            vix=np.asarray(vix, dtype=np.float64) if vix is not None else 20.0 + 10.0 * vf[:, 0],
            term_features=np.asarray(term_features, dtype=np.float64) if term_features is not None
            else np.zeros((t, len(TERM_FEATURES))),
            extra=np.asarray(extra, dtype=np.float64) if extra is not None else np.zeros((t, 0)),
            extra_names=tuple(extra_names),
        )

    @property
    def n_dates(self) -> int:
        return int(self.returns.shape[0])

    @property
    def n_assets(self) -> int:
        return int(self.returns.shape[1])

    def feature_names(self, term_structure: bool = False, extra: bool = False) -> list[str]:
        """Names of the per-date observation columns of :meth:`features` (asset-major, then VIX ...)."""
        names = [f"{a}.{f}" for a in self.assets for f in ASSET_FEATURES] + list(VIX_FEATURES)
        if term_structure:
            names += list(TERM_FEATURES)
        if extra:
            names += list(self.extra_names)
        return names

    def features(self, term_structure: bool = False, extra: bool = False) -> np.ndarray:
        """Per-date observation block ``[T, F]`` (unclipped): asset features flattened asset-major
        (``A0.ret_5d, A0.ret_21d, A0.vol_21d, A1.ret_5d, ...``), the 4 VIX features, then the
        optional term-structure and extra blocks."""
        blocks = [self.asset_features.reshape(self.n_dates, -1), self.vix_features]
        if term_structure:
            blocks.append(self.term_features)
        if extra:
            blocks.append(self.extra)
        return np.ascontiguousarray(np.concatenate(blocks, axis=1))

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
        """sha256 (hex) of the rows ``start_idx .. end_idx`` (inclusive; default all) of every array,
        plus asset/extra names: identifies the data a policy was trained on."""
        end_idx = self.n_dates - 1 if end_idx is None else end_idx
        key = (start_idx, end_idx)
        if key not in self._hash_cache:
            h = hashlib.sha256(_HASH_VERSION)
            h.update("|".join(self.assets).encode() + b"#" + "|".join(self.extra_names).encode())
            sl = slice(start_idx, end_idx + 1)
            h.update(np.ascontiguousarray(self.dates[sl].astype("int64")).tobytes())
            for arr in (self.returns, self.asset_features, self.vix_features, self.vix, self.term_features, self.extra):
                h.update(np.ascontiguousarray(arr[sl], dtype=np.float64).tobytes())
            self._hash_cache[key] = h.hexdigest()
        return self._hash_cache[key]

    def date_of(self, idx: int) -> date:
        return self.dates[idx].astype(object)


def _rolling_windows(x: np.ndarray, w: int) -> np.ndarray:
    """``[T, ...] -> [T, ..., w]`` trailing windows (rows < w-1 padded with NaN)."""
    pad = np.full((w - 1, *x.shape[1:]), np.nan)
    xp = np.concatenate([pad, x], axis=0)
    return np.lib.stride_tricks.sliding_window_view(xp, w, axis=0)


def _lag_rows(x: np.ndarray, k: int) -> np.ndarray:
    if k == 0:
        return x
    out = np.full_like(x, np.nan)
    out[k:] = x[:-k]
    return out


def _vix_block(v: np.ndarray) -> np.ndarray:
    """``[T] -> [T, 4]`` VIX features (NaN while a window is incomplete)."""
    centered = (v - 20.0) / 10.0
    chg5 = (v - _lag_rows(v, 5)) / 10.0
    rel21 = v / _rolling_windows(v, 21).mean(axis=-1) - 1.0
    win = _rolling_windows(v, 63)
    with np.errstate(invalid="ignore"):
        q80 = np.quantile(win, 0.8, axis=-1, method="linear")
        high = np.where(np.isnan(q80) | np.isnan(v), np.nan, (v > q80).astype(np.float64))
    return np.stack([centered, chg5, rel21, high], axis=1)


def build_panel(
    bars: pl.DataFrame,
    index_bars: pl.DataFrame,
    assets: Sequence[str] = ALLOCATION_ASSETS,
    start: date | None = None,
    end: date | None = None,
    *,
    extra: pl.DataFrame | None = None,
    vix_lag_days: int = 0,
    vix_max_staleness_days: int = 5,
) -> MarketPanel:
    """Aligned panel for ``assets`` from canonical ``bars`` (ticker, date, ..., adj_close) and
    ``index_bars`` (symbol 'VIX'/'VIX3M', date, ..., close), restricted to rows dated in ``[start, end]``.

    Features are computed on the full history first (so rows from ``start`` on are warm when earlier
    history exists), then the window is cut. ``extra``: optional frame ``date`` + numeric columns
    (per-date, causal) joined on date; missing values become 0. See the module docstring for timing.
    """
    assets = tuple(assets)
    if not assets:
        raise ValueError("no assets")
    sub = bars.filter(pl.col("ticker").is_in(list(assets)) & pl.col("adj_close").is_not_null())
    missing = set(assets) - set(sub.get_column("ticker").unique().to_list())
    if missing:
        raise ValueError(f"no bars for assets {sorted(missing)}")
    wide = (
        sub.select("date", "ticker", "adj_close")
        .unique(["ticker", "date"], keep="last")
        .pivot(on="ticker", index="date", values="adj_close")
        .drop_nulls()
        .sort("date")
        .select("date", *assets)
    )
    # VIX / VIX3M as-of onto the asset calendar (holiday-only CBOE rows never become rows)
    cal = wide.select("date")
    tol = f"{vix_max_staleness_days}d"
    for sym, name in (("VIX", "_vix"), ("VIX3M", "_vix3m")):
        ser = (
            index_bars.filter((pl.col("symbol") == sym) & pl.col("close").is_not_null())
            .select(pl.col("date").cast(pl.Date), pl.col("close").cast(pl.Float64).alias(name))
            .unique("date", keep="last")
            .sort("date")
        )
        cal = cal.join_asof(ser, on="date", strategy="backward", tolerance=tol)
    close = wide.select(assets).to_numpy().astype(np.float64)  # [T0, A]
    vix = _lag_rows(cal.get_column("_vix").to_numpy().astype(np.float64), vix_lag_days)
    vix3m = _lag_rows(cal.get_column("_vix3m").to_numpy().astype(np.float64), vix_lag_days)

    lc = np.log(close)
    lr = np.vstack([np.full((1, len(assets)), np.nan), np.diff(lc, axis=0)])
    feats = np.stack(
        [
            np.exp(lc - _lag_rows(lc, 5)) - 1.0,
            np.exp(lc - _lag_rows(lc, 21)) - 1.0,
            _rolling_windows(lr, 21).std(axis=-1, ddof=1) * np.sqrt(252.0),
        ],
        axis=2,
    )  # [T0, A, 3]
    vixf = _vix_block(vix)
    term = vix / vix3m - 1.0
    term_f = np.nan_to_num(np.stack([term, term - _lag_rows(term, 5)], axis=1), nan=0.0, posinf=0.0, neginf=0.0)

    ok = np.isfinite(feats).all(axis=(1, 2)) & np.isfinite(vixf).all(axis=1) & np.isfinite(vix)
    idx = np.flatnonzero(ok)
    # returns between consecutive kept rows; the first kept row has no predecessor -> dropped
    rets = close[idx[1:]] / close[idx[:-1]] - 1.0
    idx = idx[1:]
    dates = wide.get_column("date").to_numpy().astype("datetime64[D]")[idx]
    keep = np.ones(idx.size, dtype=bool)
    if start is not None:
        keep &= dates >= np.datetime64(start, "D")
    if end is not None:
        keep &= dates <= np.datetime64(end, "D")
    sel = idx[keep]

    extra_names: tuple[str, ...] = ()
    extra_arr = np.zeros((sel.size, 0))
    if extra is not None:
        cols = [c for c in extra.columns if c != "date"]
        extra_names = tuple(cols)
        joined = (
            pl.DataFrame({"date": pl.Series(dates[keep]).cast(pl.Date)})
            .join(extra.select(pl.col("date").cast(pl.Date), *[pl.col(c).cast(pl.Float64) for c in cols])
                  .unique("date", keep="last"), on="date", how="left", maintain_order="left")
        )
        extra_arr = np.nan_to_num(joined.select(cols).to_numpy().astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)

    return MarketPanel(
        dates=dates[keep],
        assets=assets,
        returns=np.ascontiguousarray(rets[keep]),
        asset_features=np.ascontiguousarray(feats[sel]),
        vix_features=np.ascontiguousarray(vixf[sel]),
        vix=np.ascontiguousarray(vix[sel]),
        term_features=np.ascontiguousarray(term_f[sel]),
        extra=np.ascontiguousarray(extra_arr),
        extra_names=extra_names,
    )

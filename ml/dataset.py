"""The allocation dataset: what a policy observes, selected by name from the feature store and a fold's
regime and prescreen outputs, laid out as a :class:`~ml.envs.market_panel.MarketPanel`.

Like Qlib's ``DatasetH``, this module computes nothing new: every observation column is a column of
``features.daily`` (one formula per name, registered in ``features.registry`` and covered by the blocking
look-ahead check) or a fold's forward-filtered sector-HMM probabilities / causal prescreen scores. An
:class:`ObservationSpec` (part of :class:`ml.envs.portfolio.EnvConfig`, saved with every policy) names
the columns; :func:`allocation_panel` joins them on the dates where every allocation asset has a row.

Timing: every column of row t is known at the close of t. ``returns[t]`` (what the environment pays
for the decision taken at the previous row) comes from the feature store's ``ret_1d`` (log return of
day t over the ticker's own previous bar), compounded across any dropped row.

Panel columns (``MarketPanel.feature_names``):

* ``<ASSET>.<feature>`` for each allocation asset and each ``asset_features`` name (default ``ret_5d``,
  ``ret_21d``: log returns; ``rv_21d_ann``: annualised 21-day volatility of log returns);
* each ``market_features`` name (per date; default the VIX block ``vix_centered``, ``vix_chg_5d`` (index
  points), ``vix_rel_21``, ``vix_high_63``; ``+term`` adds ``vix_term`` (VIX/VIX3M) and ``vix_term_chg_5d``);
* ``sector_regimes="breadth"``: ``sectors.p_bull`` and ``sectors.p_bear``, the mean over the fold's
  sector HMMs of P(Bull) / P(Bear) at t (forward-filtered); ``"probabilities"``: ``sector.<name>.p_<state>``
  for every fitted sector (11 x 3 in ETF mode);
* ``prescreen=True``: ``<ASSET>.prescreen`` = P(buy) - P(sell) of the fold's prescreen models (causal
  generations, see :mod:`ml.prescreen.models`), in [-1, 1].

Missing values: rows where a feature-store column is null (warm-up) are dropped; regime and prescreen
columns are fold outputs that may be absent on some dates (a sector listed after the train start, the
first prescreen generation block) and are filled with their uninformative value (P = 1/n_states,
prescreen 0).
"""
from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from ml.data.universe import ALLOCATION_ASSETS
from ml.envs.market_panel import MarketPanel

__all__ = ["OBSERVATION_VARIANTS", "ObservationSpec", "allocation_panel", "observation_variant", "policy_panel"]

RETURN_COLUMN = "ret_1d"  # log return of day t (feature store): the source of the panel's returns
INTRADAY_COLUMN = "ret_intraday"  # log open -> close of day t: splits each return into overnight gap + session
VIX_COLUMN = "vix_level"  # VIX close known at the decision (feature store): rewards, baselines, breaker
TERM_FEATURES: tuple[str, ...] = ("vix_term", "vix_term_chg_5d")


class ObservationSpec(BaseModel):
    """Which dataset columns a policy observes at the close of t (see the module docstring for names)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    asset_features: tuple[str, ...] = ("ret_5d", "ret_21d", "rv_21d_ann")
    market_features: tuple[str, ...] = ("vix_centered", "vix_chg_5d", "vix_rel_21", "vix_high_63")
    sector_regimes: Literal["none", "breadth", "probabilities"] = "none"
    prescreen: bool = False

    def feature_store_columns(self) -> tuple[str, ...]:
        """Every ``features.daily`` column the panel reads (observations, returns and the VIX level)."""
        return tuple(dict.fromkeys([*self.asset_features, *self.market_features, RETURN_COLUMN, VIX_COLUMN]))

    @property
    def uses_fold_outputs(self) -> bool:
        return self.sector_regimes != "none" or self.prescreen


#: The observation variants (base = the default; base..all: the README's ablation; seed_faithful: the seed
#: article's definitions - daily std of simple returns, VIX percent change - for the seed-faithful profile).
OBSERVATION_VARIANTS: dict[str, ObservationSpec] = {
    "base": ObservationSpec(),
    "term": ObservationSpec(market_features=(*ObservationSpec().market_features, *TERM_FEATURES)),
    "hmm": ObservationSpec(sector_regimes="breadth"),
    "prescreen": ObservationSpec(prescreen=True),
    "all": ObservationSpec(market_features=(*ObservationSpec().market_features, *TERM_FEATURES),
                           sector_regimes="breadth", prescreen=True),
    "seed_faithful": ObservationSpec(asset_features=("ret_5d", "ret_21d", "rv_21d_simple"),
                                     market_features=("vix_centered", "vix_pct_chg_5d", "vix_rel_21", "vix_high_63")),
}
ABLATION_VARIANTS: tuple[str, ...] = ("base", "term", "hmm", "prescreen", "all")


def observation_variant(name: str) -> ObservationSpec:
    try:
        return OBSERVATION_VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown observation variant {name!r}; choose one of {sorted(OBSERVATION_VARIANTS)}") from None


def _wide_asset_columns(features: pl.DataFrame, assets: Sequence[str], columns: Sequence[str]) -> pl.DataFrame:
    """``date`` + ``<ASSET>.<col>`` for every asset (inner join: dates where every asset has a row), plus
    ``<ASSET>._cum``: cumulative log return over the ticker's own rows (differences = returns across gaps)."""
    wide = None
    for a in assets:
        rows = features.filter(pl.col("ticker") == a).sort("date")
        if rows.is_empty():
            raise ValueError(f"no feature rows for allocation asset {a!r}")
        part = rows.select(
            pl.col("date").cast(pl.Date),
            *[pl.col(c).cast(pl.Float64).alias(f"{a}.{c}") for c in columns],
            pl.col(RETURN_COLUMN).cast(pl.Float64).fill_null(0.0).cum_sum().alias(f"{a}._cum"),
            pl.col(RETURN_COLUMN).is_not_null().alias(f"{a}._has_ret"),
            (pl.col(INTRADAY_COLUMN).cast(pl.Float64) if INTRADAY_COLUMN in rows.columns
             else pl.lit(None, dtype=pl.Float64)).alias(f"{a}._intraday"),
        )
        wide = part if wide is None else wide.join(part, on="date", how="inner")
    return wide.sort("date")


def _sector_columns(probs: pl.DataFrame, mode: str) -> pl.DataFrame:
    """Per date: the breadth summary or every sector's probabilities (``date`` + columns)."""
    pcols = [c for c in probs.columns if c.startswith("p_")]
    if not pcols:
        raise ValueError("sector probabilities need p_<state> columns (regimes.sector_hmm)")
    p = probs.select(pl.col("date").cast(pl.Date), "sector", *[pl.col(c).cast(pl.Float64) for c in pcols])
    if mode == "breadth":
        missing = [c for c in ("p_bull", "p_bear") if c not in pcols]
        if missing:
            raise ValueError(f"breadth needs {missing} in the sector probabilities")
        return p.group_by("date").agg(pl.col("p_bull").mean().alias("sectors.p_bull"),
                                      pl.col("p_bear").mean().alias("sectors.p_bear"))
    wide = p.pivot(on="sector", index="date", values=pcols, aggregate_function="first")
    rename = {f"{c}_{s}": f"sector.{s}.{c}" for c in pcols for s in p["sector"].unique().to_list()}
    wide = wide.rename({k: v for k, v in rename.items() if k in wide.columns})
    return wide.select("date", *sorted(c for c in wide.columns if c != "date"))


def _prescreen_columns(scores: pl.DataFrame, assets: Sequence[str]) -> pl.DataFrame:
    net = (scores.filter(pl.col("ticker").is_in(list(assets)))
           .select(pl.col("date").cast(pl.Date), "ticker",
                   (pl.col("buy_probability") - pl.col("sell_probability")).alias("net")))
    wide = net.pivot(on="ticker", index="date", values="net", aggregate_function="first")
    return wide.select("date", *[pl.col(a).alias(f"{a}.prescreen") if a in wide.columns
                                 else pl.lit(None, pl.Float64).alias(f"{a}.prescreen") for a in assets])


def allocation_panel(
    features: pl.DataFrame,
    spec: ObservationSpec | None = None,
    assets: Sequence[str] = ALLOCATION_ASSETS,
    *,
    sector_probabilities: pl.DataFrame | None = None,
    prescreen_scores: pl.DataFrame | None = None,
    start: date | None = None,
    end: date | None = None,
) -> MarketPanel:
    """The panel a policy with observation ``spec`` trains, is evaluated and decides on.

    ``features``: ``features.daily`` rows (``ticker, date`` + columns) of at least ``assets``;
    ``sector_probabilities``: the fold's ``regimes.sector_hmm`` rows (``sector, date, p_*``), needed when
    ``spec.sector_regimes != "none"``; ``prescreen_scores``: the fold's prescreen scores (``ticker, date,
    buy_probability, sell_probability``) when ``spec.prescreen``. Columns are computed on the whole
    history given, then rows are cut to dates in ``[start, end]``.
    """
    spec = spec or ObservationSpec()
    assets = tuple(assets)
    needed = spec.feature_store_columns()
    absent = [c for c in needed if c not in features.columns]
    if absent:
        raise ValueError(f"the feature frame lacks {absent}: observation columns must be features.daily columns "
                         "(see features.registry)")
    wide = _wide_asset_columns(features, assets, spec.asset_features)
    market = (features.filter(pl.col("ticker") == assets[0])
              .select(pl.col("date").cast(pl.Date), *[pl.col(c).cast(pl.Float64) for c in spec.market_features],
                      pl.col(VIX_COLUMN).cast(pl.Float64).alias("_vix")))
    wide = wide.join(market, on="date", how="left", maintain_order="left")
    obs_cols = [f"{a}.{c}" for a in assets for c in spec.asset_features] + list(spec.market_features)
    neutral: dict[str, float] = {}
    if spec.sector_regimes != "none":
        if sector_probabilities is None or sector_probabilities.is_empty():
            raise ValueError(f"observation spec sector_regimes={spec.sector_regimes!r} needs the fold's sector "
                             "HMM probabilities (regimes/sector_hmm)")
        sec = _sector_columns(sector_probabilities, spec.sector_regimes)
        n_states = sum(c.startswith("p_") for c in sector_probabilities.columns)
        neutral |= {c: 1.0 / n_states for c in sec.columns if c != "date"}
        wide = wide.join(sec, on="date", how="left", maintain_order="left")
        obs_cols += [c for c in sec.columns if c != "date"]
    if spec.prescreen:
        if prescreen_scores is None or prescreen_scores.is_empty():
            raise ValueError("observation spec prescreen=True needs the fold's prescreen scores (models/prescreen)")
        pre = _prescreen_columns(prescreen_scores, assets)
        neutral |= {c: 0.0 for c in pre.columns if c != "date"}
        wide = wide.join(pre, on="date", how="left", maintain_order="left")
        obs_cols += [c for c in pre.columns if c != "date"]
    wide = wide.with_columns([pl.col(c).fill_null(v).fill_nan(v) for c, v in neutral.items()])

    required = [c for c in obs_cols if c not in neutral] + ["_vix"] + [f"{a}._has_ret" for a in assets]
    ok = wide.select(pl.all_horizontal([pl.col(c).is_not_null() & (pl.col(c).cast(pl.Float64).is_finite())
                                        for c in required])).to_series().to_numpy()
    idx = np.flatnonzero(ok)
    if idx.size < 3:
        raise ValueError(f"fewer than 3 dates with every observation column known ({wide.height} dates in total)")
    cum = wide.select([f"{a}._cum" for a in assets]).to_numpy()
    log_ret = cum[idx[1:]] - cum[idx[:-1]]  # log return between consecutive kept rows
    returns = np.expm1(log_ret)
    intraday = wide.select([f"{a}._intraday" for a in assets]).to_numpy().astype(np.float64)[idx[1:]]
    # overnight gap: close of the previous kept row -> open of this one (None without every open)
    gaps = np.expm1(log_ret - intraday) if np.isfinite(intraday).all() else None
    idx = idx[1:]  # the first kept row has no predecessor
    dates = wide.get_column("date").to_numpy().astype("datetime64[D]")[idx]
    keep = np.ones(idx.size, dtype=bool)
    if start is not None:
        keep &= dates >= np.datetime64(start, "D")
    if end is not None:
        keep &= dates <= np.datetime64(end, "D")
    rows = idx[keep]
    return MarketPanel(
        dates=dates[keep],
        assets=assets,
        returns=np.ascontiguousarray(returns[keep]),
        features=np.ascontiguousarray(wide.select(obs_cols).to_numpy().astype(np.float64)[rows]),
        feature_names=tuple(obs_cols),
        vix=np.ascontiguousarray(wide.get_column("_vix").to_numpy().astype(np.float64)[rows]),
        gaps=None if gaps is None else np.ascontiguousarray(gaps[keep]),
    )


def policy_panel(
    features: pl.DataFrame,
    spec: ObservationSpec | None = None,
    assets: Sequence[str] = ALLOCATION_ASSETS,
    *,
    sector_probabilities: pl.DataFrame | None = None,
    prescreen: object | None = None,
    vix_regimes: pl.DataFrame | None = None,
    start: date | None = None,
    end: date | None = None,
) -> MarketPanel:
    """:func:`allocation_panel` from a fold's outputs as they are stored: its sector-HMM probabilities and
    its prescreen models (``ml.prescreen.PrescreenModels``), which are scored on the assets with each
    date's VIX band (``vix_regimes``) when ``spec.prescreen``. Inputs a spec does not observe are ignored.
    Training, evaluation, the daily decision and the drift statistics all build their panel here."""
    spec = spec or ObservationSpec()
    scores = None
    if spec.prescreen:
        if prescreen is None or vix_regimes is None:
            raise ValueError("observation spec prescreen=True needs the fold's prescreen models and the VIX regimes")
        if len(prescreen.generations) < 2:
            raise ValueError("observation spec prescreen=True needs causal train-window scores: the fold's prescreen "
                             "models have a single generation (train window unscored); materialize models/prescreen "
                             "with generations >= 2 (it uses 3 when resources.policy observes prescreen scores)")
        from ml.prescreen import score_prescreen

        scores = score_prescreen(prescreen, features.filter(pl.col("ticker").is_in(list(assets))), vix_regimes)
    probs = sector_probabilities if spec.sector_regimes != "none" else None
    return allocation_panel(features, spec, assets, sector_probabilities=probs, prescreen_scores=scores,
                            start=start, end=end)

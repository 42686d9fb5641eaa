"""The stock book for one fold and over the walk-forward track: the funnel frame, the panel the RL policies and
the book run on, the book's variants and comparisons, the position-cap search, metrics, attribution and the
replay of the decision log.

Funnel -> RL -> engine (the ensemble-that-trades design): each day the prescreen model of the day's VIX regime
scores every stock; the top N by P(buy) plus the names held are the candidates; the RL ensemble acts on the
candidates (:mod:`ml.agents.stock_policy`); the decision engine merges the prescreen, RL and technical signals
with regime weights and sizes the positions by the VIX band (:mod:`ml.decision_engine`); the fills follow
:mod:`ml.backtest.stock_book`.

Variants (the same earned days, costs and timing):

* ``stock_book``: regime weights by VIX band, positions by conviction;
* ``stock_book_max_sharpe``: the same signals, positions by a long-only max-Sharpe optimiser on a Ledoit-Wolf
  covariance of the trailing 252 sessions (expected returns = conviction x volatility);
* ``stock_book_equal_weights``: the ablation - every band weighs the three signals equally;
* comparisons: ``spy_buy_hold``; ``ew_stocks`` (equal weight over every stock with a bar, rebalanced on the
  first session of each month); ``prescreen_only`` (equal weight over the day's top N by P(buy), rebalanced
  daily with the engine's minimum trade as the band).

The position cap ``max_position_pct(vix)`` has its calm-market level searched in [3 %, 10 %] on the fold's
validation slice (the last year of the train window, which the RL members do not train on) by the
``stock_book`` variant's Sharpe; the test window only evaluates.

Survivorship bias: the real snapshot's stocks are today's 100 large caps (:data:`SURVIVORSHIP_NOTE`).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ml import metrics
from ml.backtest.sector_book import month_starts
from ml.backtest.stock_book import (
    DECISION_SCHEMA,
    TRADE_SCHEMA,
    StockBookInputs,
    run_stock_book,
    run_weights,
)
from ml.decision_engine import SOURCES, EngineConfig, combine, technical_signal
from ml.envs.stock_panel import StockPanel
from ml.sector_book import SURVIVORSHIP_NOTE, book_metrics, wide_column
from ml.strategies.funnel import DEFAULT_TOP_N

__all__ = ["BENCHMARKS", "MARKET_FEATURES", "STOCK_FEATURES", "STOCK_VARIANTS", "SURVIVORSHIP_NOTE",
           "StockBookData", "StockBookSettings", "build_stock_data", "funnel_frame", "replay_decisions",
           "run_fold_stock_book", "stock_metrics", "stock_universe"]

#: Per-stock observation columns of the RL policies (feature store, known at the close of t).
STOCK_FEATURES: tuple[str, ...] = ("ret_5d", "ret_21d", "ret_63d", "rv_21d_ann", "rsi_14", "macd_hist", "bb_pctb_20",
                                   "close_to_sma_50", "adx_14", "rel_volume_20", "beta_spy_63", "rs_spy_21")
#: Market-wide observation columns (SPY's rows of the feature store).
MARKET_FEATURES: tuple[str, ...] = ("vix_centered", "vix_term", "vix_chg_5d")
#: Inputs of the technical composite (:func:`ml.decision_engine.technical_signal`), in its argument order.
TECHNICAL_INPUTS: tuple[str, ...] = ("rsi_14", "macd_hist", "bb_pctb_20", "adx_14", "plus_di_14", "minus_di_14",
                                     "sma_cross_50_200", "rel_volume_20", "ret_1d")
ATR_COLUMN = "atr_pct_14"
#: Every feature-store column the stock book reads.
BOOK_FEATURES: tuple[str, ...] = tuple(dict.fromkeys((*STOCK_FEATURES, *TECHNICAL_INPUTS, ATR_COLUMN)))

STOCK_VARIANTS: tuple[str, ...] = ("stock_book", "stock_book_max_sharpe", "stock_book_equal_weights")
BENCHMARKS: tuple[str, ...] = ("spy_buy_hold", "ew_stocks", "prescreen_only")
CAP_GRID: tuple[float, ...] = (0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10)
FUNNEL_SCHEMA = {"ticker": pl.Utf8, "date": pl.Date, "generation": pl.Utf8, "regime": pl.Utf8,
                 "buy_probability": pl.Float64, "sell_probability": pl.Float64, "technical": pl.Float64,
                 "rank": pl.Int64, "top_n": pl.Boolean}


class StockBookSettings(BaseModel):
    """Stock-book settings: the funnel's N, the engine, costs per side, the position-cap grid."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top_n: int = Field(default=DEFAULT_TOP_N, ge=1, description="candidates per day by P(buy) (plus names held)")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    slippage_bps: float = Field(default=5.0, ge=0)
    commission_bps: float = Field(default=1.0, ge=0)
    cap_grid: tuple[float, ...] = Field(default=CAP_GRID, description="calm-market position caps searched on the "
                                        "validation slice (fractions of equity)")
    calendar_ticker: str = "SPY"

    @property
    def cost_rate(self) -> float:
        """Cost per unit of equity traded, per side (fraction)."""
        return (self.slippage_bps + self.commission_bps) * 1e-4


def stock_universe(sectors: pl.DataFrame, bars: pl.DataFrame) -> list[str]:
    """The stocks: tickers with a GICS sector (``ref/sectors``) and bars, sorted."""
    have = set(bars["ticker"].unique())
    return sorted(t for t in sectors["ticker"].unique() if t in have)


def funnel_frame(scores: pl.DataFrame, features: pl.DataFrame, stocks: list[str], top_n: int) -> pl.DataFrame:
    """The funnel per (stock, date): the prescreen probabilities of the day's regime model (``scores``:
    :func:`ml.prescreen.score_prescreen` output), the technical composite of the day's features, the rank by
    P(buy) among the scored stocks (1 = highest; ties by ticker) and whether it is in the top ``top_n``.
    Everything in a row dated t is known at the close of t."""
    tech_in = features.filter(pl.col("ticker").is_in(stocks)).select("ticker", "date", *TECHNICAL_INPUTS)
    tech = technical_signal(*(tech_in[c].cast(pl.Float64).to_numpy() for c in TECHNICAL_INPUTS))
    tech_frame = tech_in.select("ticker", "date").with_columns(pl.Series("technical", tech, dtype=pl.Float64))
    base = (scores.filter(pl.col("ticker").is_in(stocks))
            .select("ticker", "date", "generation", "regime", "buy_probability", "sell_probability")
            .join(tech_frame, on=["ticker", "date"], how="left").sort("date", "ticker"))
    scored = pl.col("buy_probability").is_not_null() & pl.col("sell_probability").is_not_null()
    ranks = (base.filter(scored).with_columns(
        pl.col("buy_probability").rank("ordinal", descending=True).over("date").cast(pl.Int64).alias("rank"))
        .select("ticker", "date", "rank"))
    out = base.join(ranks, on=["ticker", "date"], how="left").with_columns(
        pl.col("rank").fill_null(0), ((pl.col("rank") >= 1) & (pl.col("rank") <= top_n)).fill_null(False).alias("top_n"))
    return out.select(list(FUNNEL_SCHEMA)).cast(FUNNEL_SCHEMA)


@dataclass
class StockBookData:
    """The book's inputs on one date axis plus SPY's gap / session returns (the SPY comparison)."""

    inputs: StockBookInputs
    spy_gap: np.ndarray
    spy_session: np.ndarray

    @property
    def panel(self) -> StockPanel:
        return self.inputs.panel


def _gap_session(close: np.ndarray, open_: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row t's overnight (close t-1 -> open t) and session (open t -> close t) simple returns and the
    close-to-close return; a missing bar earns 0 (gap and session), the close-to-close is NaN then."""
    gap, session = np.zeros_like(close), np.zeros_like(close)
    cc = np.full_like(close, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = close[1:] / close[:-1] - 1.0
        g = open_[1:] / close[:-1] - 1.0
        i = close[1:] / open_[1:] - 1.0
    miss = ~np.isfinite(g) | ~np.isfinite(i)
    gap[1:] = np.where(miss, 0.0, g)
    session[1:] = np.where(miss, np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0), i)
    cc[1:] = r
    return np.nan_to_num(gap), np.nan_to_num(session), cc


def build_stock_data(bars: pl.DataFrame, features: pl.DataFrame, funnel: pl.DataFrame, vix: pl.DataFrame,
                     stocks: list[str], start: date, end: date, calendar_ticker: str = "SPY") -> StockBookData:
    """Arrays of the stock book on the ``calendar_ticker`` sessions in [start, end]: the stocks' features,
    prescreen probabilities, funnel ranks, technical signal, ATR, gap / session returns, the VIX close and band
    (``vix``: ``regimes/vix``), the market columns (``calendar_ticker``'s feature rows) and SPY's returns."""
    dates = (bars.filter((pl.col("ticker") == calendar_ticker) & pl.col("date").is_between(start, end))
             .get_column("date").unique().sort())
    if dates.len() < 2:
        raise ValueError(f"fewer than 2 {calendar_ticker} sessions in {start} .. {end}")
    close = wide_column(bars, dates, stocks, "close")
    open_ = wide_column(bars, dates, stocks, "open")
    gap, session, cc = _gap_session(close, open_)
    feats = np.stack([wide_column(features, dates, stocks, c) for c in STOCK_FEATURES], axis=2)
    buy = wide_column(funnel, dates, stocks, "buy_probability")
    sell = wide_column(funnel, dates, stocks, "sell_probability")
    rank = np.nan_to_num(wide_column(funnel, dates, stocks, "rank"), nan=0.0).astype(np.int64)
    technical = wide_column(funnel, dates, stocks, "technical")
    atr = wide_column(features, dates, stocks, ATR_COLUMN)
    top_n = wide_column(funnel.with_columns(pl.col("top_n").cast(pl.Float64)), dates, stocks, "top_n") == 1.0
    spy = [calendar_ticker]
    spy_close, spy_open = wide_column(bars, dates, spy, "close"), wide_column(bars, dates, spy, "open")
    spy_gap, spy_session, spy_cc = _gap_session(spy_close, spy_open)
    market = (pl.DataFrame({"date": dates}).join(
        features.filter(pl.col("ticker") == calendar_ticker).select("date", *MARKET_FEATURES), on="date", how="left")
        .select(MARKET_FEATURES).fill_null(strategy="forward").fill_null(0.0).to_numpy().astype(float))
    v = pl.DataFrame({"date": dates}).join(vix.select("date", "vix", "band"), on="date", how="left")
    vix_close = v["vix"].fill_null(strategy="forward").fill_null(20.0).to_numpy().astype(float)
    panel = StockPanel(
        dates=dates.to_numpy().astype("datetime64[D]"), tickers=tuple(stocks), features=feats,
        feature_names=STOCK_FEATURES, buy_prob=buy, sell_prob=sell, gap=gap, session=session, close=close,
        valid=np.isfinite(buy) & np.isfinite(sell) & np.isfinite(close), market=np.nan_to_num(market),
        market_names=MARKET_FEATURES, vix=vix_close, benchmark=np.nan_to_num(spy_cc[:, 0]))
    inputs = StockBookInputs(panel=panel, technical=technical, atr_pct=atr, band=np.array(v["band"].to_list(), dtype=object),
                             rank=rank, top_n=top_n, returns=cc)
    return StockBookData(inputs, spy_gap, spy_session)


@dataclass
class FoldStockBook:
    daily: pl.DataFrame
    trades: pl.DataFrame
    attribution: pl.DataFrame
    decisions: pl.DataFrame
    metrics: pl.DataFrame
    cap_search: pl.DataFrame
    position_cap: float


def search_position_cap(data: StockBookData, lo: int, hi: int, settings: StockBookSettings) -> tuple[float, pl.DataFrame]:
    """The calm-market position cap (``max_position_base``) from ``settings.cap_grid`` with the best Sharpe of
    the ``stock_book`` variant over decision rows ``[lo, hi)`` (the validation slice); ties -> the smaller cap."""
    rows = []
    for cap in settings.cap_grid:
        cfg = settings.engine.model_copy(update={"max_position_base": float(cap)})
        r = run_stock_book(data.inputs, lo, hi, cfg, settings.cost_rate, "stock_book").daily["net_return"].to_numpy()
        rows.append({"position_cap": float(cap), "val_sharpe": metrics.sharpe(r), "val_return": metrics.total_return(r)})
    table = pl.DataFrame(rows)
    score = np.nan_to_num(table["val_sharpe"].to_numpy(), nan=-np.inf)
    best = float(table["position_cap"][int(np.argmax(score))])
    return best, table.with_columns((pl.col("position_cap") == best).alias("chosen"))


def run_fold_stock_book(data: StockBookData, test: tuple[int, int], validation: tuple[int, int] | None,
                        settings: StockBookSettings | None = None) -> FoldStockBook:
    """Every variant and comparison over decision rows ``test = (lo, hi)`` (earned rows lo+1 .. hi) after the
    position-cap search on ``validation`` rows (None: the engine's default cap). ``data.inputs.rl_action`` is
    the RL ensemble (None: the engine runs on prescreen + technical, renormalised)."""
    cfg = settings or StockBookSettings()
    if data.panel.n_stocks == 0:  # no stock in the universe: only SPY (the stock comparisons hold cash)
        validation = None
        variant_engines = {}
    if validation is not None:
        cap, cap_table = search_position_cap(data, *validation, cfg)
    else:
        cap, cap_table = cfg.engine.max_position_base, pl.DataFrame()
    engine = cfg.engine.model_copy(update={"max_position_base": cap})
    variants = {"stock_book": engine,
                "stock_book_max_sharpe": engine.model_copy(update={"weighting": "max_sharpe"}),
                "stock_book_equal_weights": engine.model_copy(update={"equal_regime_weights": True})}
    if data.panel.n_stocks == 0:
        variants = variant_engines
    lo, hi = test
    runs = {name: run_stock_book(data.inputs, lo, hi, e, cfg.cost_rate, name, log_decisions=name == "stock_book")
            for name, e in variants.items()}
    p = data.panel
    n_s = p.n_stocks

    def ew(t: int) -> np.ndarray:
        ok = np.isfinite(p.close[t])
        return ok / max(ok.sum(), 1)

    def top(t: int) -> np.ndarray:
        m = data.inputs.top_n[t]
        return m / max(m.sum(), 1)

    every = np.ones(p.n_dates, dtype=bool)
    comps = [run_weights(data.spy_gap, data.spy_session, p.dates, lo, hi, lambda t: np.ones(1),
                         np.zeros(p.n_dates, dtype=bool), cfg.cost_rate, "spy_buy_hold"),
             run_weights(p.gap, p.session, p.dates, lo, hi, ew, month_starts(p.dates), cfg.cost_rate, "ew_stocks"),
             run_weights(p.gap, p.session, p.dates, lo, hi, top, every, cfg.cost_rate, "prescreen_only",
                         band=engine.min_trade)]
    if n_s == 0:
        comps = comps[:1]
    daily = pl.concat([*(r.daily for r in runs.values()), *comps])
    trades = pl.concat([r.trades for r in runs.values()]) if runs else pl.DataFrame(schema=TRADE_SCHEMA)
    attribution = (pl.concat([r.attribution for r in runs.values()]) if runs
                   else pl.DataFrame(schema={"strategy": pl.Utf8, "source": pl.Utf8, "pnl": pl.Float64}))
    decisions = runs["stock_book"].decisions if runs else pl.DataFrame(schema=DECISION_SCHEMA)
    return FoldStockBook(daily=daily, trades=trades, attribution=attribution, decisions=decisions,
                         metrics=stock_metrics(daily, trades), cap_search=cap_table, position_cap=cap)


def stock_metrics(daily: pl.DataFrame, trades: pl.DataFrame, cost_multipliers=(1.0, 2.0, 3.0)) -> pl.DataFrame:
    """Metrics per strategy at 1x / 2x / 3x costs (Sharpe CIs, differences vs the three comparisons) plus the
    closed-trade statistics of the book variants (:func:`ml.sector_book.book_metrics`)."""
    return book_metrics(daily.select(pl.exclude("band", "vix", "candidates")), trades, cost_multipliers,
                        variants=STOCK_VARIANTS, benchmarks=BENCHMARKS)


def replay_decisions(decisions: pl.DataFrame, engine: EngineConfig) -> pl.DataFrame:
    """Recompute score, agreement, conviction and action of logged decisions from their logged signals and band
    (:func:`ml.decision_engine.combine`): the log is replayable. Returns ``decisions`` with ``replay_*`` columns."""
    out = []
    for (band,), part in decisions.group_by(["band"], maintain_order=True):
        sig = np.column_stack([part[f"signal_{s}"].cast(pl.Float64).fill_null(np.nan).to_numpy() for s in SOURCES[:3]]
                              + [np.full(part.height, np.nan)])
        res = combine(sig, band, engine)
        out.append(part.with_columns(pl.Series("replay_score", res.score), pl.Series("replay_agreement", res.agreement),
                                     pl.Series("replay_conviction", res.conviction),
                                     pl.Series("replay_action", [{1: "BUY", 0: "HOLD", -1: "SELL"}[int(a)]
                                                                 for a in res.action])))
    return pl.concat(out) if out else decisions


def rl_action_fn(policy, panel: StockPanel, env_config=None):
    """The RL ensemble as the book's ``rl_action(t, held) -> [S]``: its deterministic action for a decision at
    the close of row ``t`` given the weights held then (observation as in training: the policy's own env config
    and NaN fill values; float64), 0 for non-candidates."""
    import torch

    from ml.envs.stock_env import BatchedStockEnv

    cfg = getattr(policy, "env_config", None) or env_config
    env = BatchedStockEnv(panel, cfg.model_copy(update={"dtype": "float64"}), 0, panel.n_dates - 1, num_envs=1,
                          device="cpu", fill=policy.fill_values)
    policy = policy.cpu().eval()

    def act(t: int, held: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            obs = env.observe(torch.tensor([int(t)]), torch.as_tensor(held[None], dtype=torch.float64))
            return policy.act(obs)[0].to(torch.float64).numpy()

    return act


@dataclass
class StockEnsembleResult:
    policy: object
    table: list[dict]
    curves: pl.DataFrame
    seconds: dict[str, float]
    train_days: int
    validation_days: int


def train_stock_ensemble(panel: StockPanel, validation_start: date | None, members: list[str], env_config,
                         ppo_config, offpolicy_config, log=print) -> StockEnsembleResult:
    """Train the RL members (``ppo``, ``sac``, ``td3``) on the panel's rows before ``validation_start`` and weigh
    them by their composite score on the validation rows (``validation_start`` .. the panel's end; equal weights
    without one). The panel must end at the fold's train end."""
    from ml.agents.stock_offpolicy import train_stock_sac, train_stock_td3
    from ml.agents.stock_policy import stock_composite_ensemble
    from ml.agents.stock_ppo import train_stock_ppo

    last = panel.dates[-1].astype(object)
    if validation_start is not None and validation_start <= last:
        v_lo, v_hi = panel.index_range(validation_start, last)
        validation = (v_lo, v_hi)
    else:
        v_lo, validation = panel.n_dates - 1, None
    if v_lo < 2:
        raise ValueError(f"too few scored training sessions before the validation slice ({v_lo})")
    trainers = {"ppo": (train_stock_ppo, ppo_config), "sac": (train_stock_sac, offpolicy_config),
                "td3": (train_stock_td3, offpolicy_config)}
    trained, curves, seconds = {}, [], {}
    for name in members:
        fn, cfg = trainers[name]
        log(f"stock RL {name}: {v_lo} training sessions x {panel.n_stocks} stocks, {cfg.total_steps:,} transitions")
        res = fn(panel, 0, v_lo, env_config, cfg, validation=validation)
        trained[name], seconds[name] = res.policy, res.wall_s
        if res.curve:
            curves.append(pl.DataFrame(res.curve).with_row_index("row").with_columns(
                pl.col("row").cast(pl.Int64), pl.lit(name).alias("member")))
        log(f"stock RL {name}: {res.wall_s:.1f} s, best validation Sharpe {res.selection.get('best_val_sharpe')}")
    ensemble, table = stock_composite_ensemble(trained, panel, validation)
    log("stock RL ensemble weights: " + ", ".join(f"{r['member']} {r['weight']:.2f}" for r in table))
    curve = pl.concat(curves, how="diagonal_relaxed") if curves else pl.DataFrame()
    return StockEnsembleResult(ensemble, table, curve.select("member", "row", pl.exclude("member", "row"))
                               if curve.height else curve, seconds, v_lo,
                               0 if validation is None else validation[1] - validation[0])

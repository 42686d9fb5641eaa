"""The stock book's daily loop, funnel and fold runner (ml level): accounting, causality of the funnel and of
the decisions, attribution, the decision log's replay, stops and the extreme band, the fold's variants."""
from dataclasses import replace
from datetime import date

import numpy as np
import polars as pl
import pytest

from ml.backtest.stock_book import StockBookInputs, run_stock_book
from ml.decision_engine import EngineConfig, technical_signal
from ml.envs.stock_panel import StockPanel
from ml.stock_book import (
    BENCHMARKS,
    STOCK_VARIANTS,
    TECHNICAL_INPUTS,
    StockBookData,
    StockBookSettings,
    funnel_frame,
    replay_decisions,
    run_fold_stock_book,
)
from ml.strategies.funnel import daily_top_n, top_n_ranks

COST = 0.0006


def _inputs(panel: StockPanel, n: int = 4, band: str = "low", rl=None) -> StockBookInputs:
    t, s = panel.n_dates, panel.n_stocks
    rng = np.random.default_rng(1)
    cc = np.full((t, s), np.nan)
    cc[1:] = panel.close[1:] / panel.close[:-1] - 1
    return StockBookInputs(panel=panel, technical=np.clip(rng.normal(0, 0.3, (t, s)), -1, 1),
                           atr_pct=np.full((t, s), 0.01), band=np.array([band] * t, dtype=object),
                           rank=top_n_ranks(panel.buy_prob, panel.valid), top_n=daily_top_n(panel.buy_prob, panel.valid, n),
                           returns=cc, rl_action=rl)


@pytest.fixture(scope="module")
def panel() -> StockPanel:
    return StockPanel.synthetic(n_dates=260, n_stocks=10, seed=3)


def test_net_returns_follow_the_fills(panel):
    data = _inputs(panel)
    res = run_stock_book(data, 20, 120, EngineConfig(), COST)
    w_held = res.weights  # after each fill (earned the session)
    net = res.daily["net_return"].to_numpy()
    # replay: the weights after day e's fill earn the session of e; the previous after-close weights the gap
    w_prev = np.zeros(panel.n_stocks)
    for k, e in enumerate(range(21, 121)):
        g, i = panel.gap[e], panel.session[e]
        eq_on = 1 + w_prev @ g
        w_open = w_prev * (1 + g) / eq_on
        cost = COST * np.abs(w_held[k] - w_open).sum()
        assert net[k] == pytest.approx(eq_on * (1 - cost) * (1 + w_held[k] @ i) - 1, abs=1e-12)
        w_prev = w_held[k] * (1 + i) / (1 + w_held[k] @ i)
    assert (res.daily["long_exposure"] <= 0.80 + 1e-9).all()  # low band: at most 80 % invested
    assert res.daily["positions"].max() > 0


def test_attribution_adds_up_to_the_names_pnl(panel):
    res = run_stock_book(_inputs(panel), 20, 200, EngineConfig(), COST)
    attr = res.attribution
    assert set(attr["source"]) == {"prescreen", "rl", "technical", "fundamental", "unattributed"}
    assert attr.filter(pl.col("source") == "fundamental")["pnl"][0] == 0.0  # not in the data
    assert attr.filter(pl.col("source") == "rl")["pnl"][0] == 0.0  # no RL policy: its signal is missing
    # per-trade P&L (open and closed) = attributed P&L: both are the sum of the names' daily P&L
    assert attr["pnl"].sum() == pytest.approx(res.trades["pnl"].sum(), abs=1e-12)
    assert res.trades.height and res.trades["closed"].any()


def test_decisions_use_only_data_known_at_the_close(panel):
    """Perturbing every input after row t (probabilities, technical signal, closes, returns) leaves every decision
    up to t - and so every earned day up to t+1 - unchanged."""
    data = _inputs(panel)
    base = run_stock_book(data, 20, 200, EngineConfig(), COST, log_decisions=True)
    cut = 120
    rng = np.random.default_rng(9)
    p2 = replace(panel, buy_prob=np.where(np.arange(panel.n_dates)[:, None] > cut, rng.random(panel.buy_prob.shape),
                                          panel.buy_prob),
                 close=np.where(np.arange(panel.n_dates)[:, None] > cut, panel.close * 0.5, panel.close))
    d2 = replace(data, panel=p2, technical=np.where(np.arange(panel.n_dates)[:, None] > cut, -data.technical,
                                                    data.technical),
                 top_n=daily_top_n(p2.buy_prob, p2.valid, 4), rank=top_n_ranks(p2.buy_prob, p2.valid),
                 returns=np.where(np.arange(panel.n_dates)[:, None] > cut, 0.0, data.returns))
    pert = run_stock_book(d2, 20, 200, EngineConfig(), COST, log_decisions=True)
    cut_day = panel.dates[cut + 1].astype(object)
    a = base.daily.filter(pl.col("date") <= cut_day)
    b = pert.daily.filter(pl.col("date") <= cut_day)
    assert a.equals(b)
    da = base.decisions.filter(pl.col("date") <= panel.dates[cut].astype(object))
    db = pert.decisions.filter(pl.col("date") <= panel.dates[cut].astype(object))
    assert da.height and da.equals(db)
    assert not base.daily.equals(pert.daily)  # the perturbation does reach the later days


def test_funnel_ranks_only_scores_of_the_day():
    """The funnel of day t is a function of the scores dated t: changing other days' scores changes nothing."""
    dates = [date(2020, 1, 1), date(2020, 1, 2)]
    scores = pl.DataFrame({"ticker": ["A", "B", "C"] * 2, "date": [dates[0]] * 3 + [dates[1]] * 3,
                           "generation": ["final"] * 6, "regime": ["low"] * 6,
                           "buy_probability": [0.2, 0.5, 0.5, 0.9, None, 0.1],
                           "sell_probability": [0.1] * 6})
    feats = pl.DataFrame({"ticker": ["A", "B", "C"] * 2, "date": [dates[0]] * 3 + [dates[1]] * 3,
                          **{c: [50.0 if c == "rsi_14" else 0.0] * 6 for c in TECHNICAL_INPUTS}})
    f = funnel_frame(scores, feats, ["A", "B", "C"], 1).sort("date", "ticker")
    assert f["rank"].to_list() == [3, 1, 2, 1, 0, 2]  # ties by ticker; unscored B ranks 0
    assert f["top_n"].to_list() == [False, True, False, True, False, False]
    changed = scores.with_columns(pl.when(pl.col("date") == dates[1]).then(0.0).otherwise(pl.col("buy_probability"))
                                  .alias("buy_probability"))
    f2 = funnel_frame(changed, feats, ["A", "B", "C"], 1).sort("date", "ticker")
    assert f2.filter(pl.col("date") == dates[0]).equals(f.filter(pl.col("date") == dates[0]))
    expect = technical_signal(*(np.array([50.0 if c == "rsi_14" else 0.0]) for c in TECHNICAL_INPUTS))[0]
    assert f["technical"].to_list() == pytest.approx([expect] * 6)


def test_decision_log_replays(panel):
    res = run_stock_book(_inputs(panel), 20, 150, EngineConfig(), COST, log_decisions=True)
    log = res.decisions
    assert log.height > 0 and set(log["action"]) <= {"BUY", "HOLD", "SELL"}
    replayed = replay_decisions(log, EngineConfig())
    assert np.allclose(replayed["replay_conviction"], replayed["conviction"], atol=1e-12)
    assert (replayed["replay_action"] == replayed["action"]).all()
    # every candidate of a day is logged: the day's top 4 plus what was held
    per_day = log.group_by("date").agg(pl.col("top_n").sum().alias("top"), pl.len().alias("n"))
    assert (per_day["top"] == 4).all() and (per_day["n"] >= 4).all()


def test_extreme_band_holds_cash_and_stops_exit(panel):
    flat = run_stock_book(_inputs(panel, band="extreme"), 20, 80, EngineConfig(), COST)
    assert (flat.daily["positions"] == 0).all() and flat.daily["net_return"].abs().max() == 0.0
    # a crash of every stock right after entry triggers the 5 % stop at the next close
    crash = panel.close.copy()
    crash[40:] *= 0.5
    p2 = replace(panel, close=crash)
    res = run_stock_book(replace(_inputs(panel), panel=p2), 30, 60, EngineConfig(), COST)
    d40 = panel.dates[40].astype(object)
    open_at_crash = res.trades.filter((pl.col("entry_date") < d40) & (pl.col("exit_date") >= d40))
    assert open_at_crash.height and (open_at_crash["exit_reason"] == "stop").all()
    assert (open_at_crash["exit_date"] == d40).all()  # the first close below the stop: exit at the next open


def test_rl_signal_enters_the_engine(panel):
    always_buy = run_stock_book(_inputs(panel, rl=lambda t, held: np.ones(panel.n_stocks)), 20, 120,
                                EngineConfig(), COST, log_decisions=True)
    log = always_buy.decisions
    assert (log["signal_rl"] == 1.0).all() and (log["weight_rl"] > 0).all()
    none = run_stock_book(_inputs(panel), 20, 120, EngineConfig(), COST, log_decisions=True)
    assert none.decisions["signal_rl"].is_null().all() and (none.decisions["weight_rl"] == 0).all()
    assert always_buy.daily["long_exposure"].mean() > none.daily["long_exposure"].mean()


def test_fold_runner_variants_comparisons_and_cap_search(panel):
    spy = np.zeros(panel.n_dates)
    data = StockBookData(_inputs(panel), spy_gap=spy[:, None], spy_session=panel.benchmark[:, None])
    book = run_fold_stock_book(data, (150, 250), (100, 149), StockBookSettings(top_n=4))
    assert set(book.daily["strategy"]) == set(STOCK_VARIANTS) | set(BENCHMARKS)
    assert book.daily.group_by("strategy").len()["len"].to_list() == [100] * 6
    assert book.position_cap in StockBookSettings().cap_grid
    assert book.cap_search.filter(pl.col("chosen"))["position_cap"][0] == book.position_cap
    best = book.cap_search.sort("val_sharpe", descending=True)["val_sharpe"][0]
    assert book.cap_search.filter(pl.col("chosen"))["val_sharpe"][0] == best
    m = book.metrics.filter(pl.col("cost_multiplier") == 1.0)
    assert m.filter(pl.col("strategy") == "stock_book")["trades"][0] > 0
    assert m.filter(pl.col("strategy") == "spy_buy_hold")["trades"][0] is None
    spy_row = book.daily.filter(pl.col("strategy") == "spy_buy_hold")
    assert spy_row["net_return"][1:].to_numpy() == pytest.approx(panel.benchmark[152:251])
    # cost stress: 3x costs lower every book variant's return
    r1 = book.metrics.filter((pl.col("cost_multiplier") == 1.0) & pl.col("strategy").is_in(STOCK_VARIANTS))
    r3 = book.metrics.filter((pl.col("cost_multiplier") == 3.0) & pl.col("strategy").is_in(STOCK_VARIANTS))
    assert (r3.sort("strategy")["total_return"] < r1.sort("strategy")["total_return"]).all()

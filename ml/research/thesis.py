"""Reproduction of the Q-learning thesis (asset allocation with RL on SPY) on its own protocol.

Protocol (the thesis's): SPY only, history from 1993; train 1995-10-16 .. 2014-12-31, test the returns
dated 2015-01-01 .. 2023-12-31 (2015-01-02 .. 2023-12-29, 2,264 sessions); no costs; the portfolio's daily
log return is ``exposure decided at the close of t × SPY's log return of t+1``. Metrics in the thesis's
conventions (``ml.metrics``: Σ log returns, MDD in log points, SR Anl with a 2 % hurdle, full-period SR).

What this project adds, to keep the test window untouched: the members fit on the train window before its
last ``validation_sessions`` sessions; the best single model, the model of models' members (the best of each
simulation) and nothing else are chosen on that validation slice; the VIX switcher's window and threshold
on the whole train window (:func:`ml.strategies.vix_switcher.choose_switch`). Every member's test row is
reported, chosen or not.

Reference values: the headline figures of the thesis as quoted in the project's issue (SPY row; model of
models full-period SR 2.2; leveraged stack with the switcher 231 log points at ~41 % drawdown; Simulation-4
agents 20.7 % drawdown). The per-model values of its Tables 2-10 are not available to this project.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ml import metrics
from ml.agents.qlearning import QLearningBook, QLearningConfig, choose, fit_book, member_table, state_frame
from ml.strategies.stacking import extra_leverage, model_of_models
from ml.strategies.vix_switcher import apply_switch, choose_switch, switch_mask

__all__ = ["THESIS_REFERENCE", "ThesisProtocol", "ThesisResult", "reproduce"]

#: Published headline numbers (thesis, as quoted in issue 15): strategy -> {metric: value}. Percent / log points.
THESIS_REFERENCE: dict[str, dict[str, float]] = {
    "spy": {"total_log_return": 100.0, "std": 18.16, "max_drawdown_log": -41.12, "sr_full": 1.5},
    "stack": {"sr_full": 2.2},
    "stack_el_switch": {"total_log_return": 231.0, "max_drawdown_log": -41.0},
    "sim4": {"max_drawdown_log": -20.7},
}


class ThesisProtocol(BaseModel):
    """Windows (inclusive dates of the EARNED returns for the test), the validation slice, the hurdle."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    train_start: date = date(1995, 10, 16)
    train_end: date = date(2014, 12, 31)
    test_start: date = date(2015, 1, 1)
    test_end: date = date(2023, 12, 31)
    validation_sessions: int = Field(default=252, ge=20)
    risk_free: float = 0.02
    mc_paths: int = Field(default=10_000, ge=100)
    mc_days: int = Field(default=252, ge=5)
    seed: int = 0


@dataclass(frozen=True)
class ThesisResult:
    """``table``: one row per strategy (thesis metrics + reference values); ``daily``: strategy, date,
    exposure, log_return, cum_log_return over the test; ``switch_grid``: the switcher sensitivity (train
    Sharpe used for the choice, test Sharpe of the switched model of models for information only);
    ``monte_carlo``: strategy, day, q05, q50, q95 of the KDE paths; ``members``: the member table."""

    table: pl.DataFrame
    daily: pl.DataFrame
    switch_grid: pl.DataFrame
    monte_carlo: pl.DataFrame
    members: pl.DataFrame
    book: QLearningBook


def reproduce(features: pl.DataFrame, protocol: ThesisProtocol | None = None,
              config: QLearningConfig | None = None, log=None) -> ThesisResult:
    """Run the protocol on ``features`` (feature-store rows of SPY with ``vix_level``, from 1993)."""
    p = protocol or ThesisProtocol()
    cfg = config or QLearningConfig()
    say = log or (lambda _m: None)
    st = state_frame(features, extra=("vix_level",)).filter(pl.col("date") >= p.train_start)
    dates = st["date"].to_list()
    if not dates or dates[0] > p.train_start + timedelta(days=10) or dates[-1] < p.test_end:
        raise ValueError(f"the thesis protocol needs SPY features from {p.train_start} to {p.test_end}; "
                         f"got {dates[0] if dates else None} .. {dates[-1] if dates else None} (the source's "
                         "history must start by 1994 for the 200-day warm-up)")
    lr = st["ret_1d"].to_numpy().astype(float)
    nxt = np.append(lr[1:], np.nan)  # log return earned by the decision of row t
    d = np.array(dates, dtype="datetime64[D]")
    train_end_i = int(np.searchsorted(d, np.datetime64(p.train_end), side="right"))  # rows [0, train_end_i)
    val_i = train_end_i - p.validation_sessions
    # decisions whose earned day lies in the test window: rows first_test-1 .. last_test-1
    first = int(np.searchsorted(d, np.datetime64(p.test_start), side="left"))
    last = int(np.searchsorted(d, np.datetime64(p.test_end), side="right")) - 1
    dec = slice(first - 1, last)

    book = fit_book(st, val_i, cfg, log=say)
    val = st.slice(val_i, train_end_i - val_i - 1)  # decisions whose earned day is still in train
    val_next = nxt[val_i: train_end_i - 1]
    scores = {n: metrics.sharpe(m.exposure(val) * val_next) for n, m in book.members.items()}
    vix = st["vix_level"].to_numpy().astype(float)
    switch, grid = choose_switch(vix[: train_end_i - 1], nxt[: train_end_i - 1], default=cfg.default_action)
    book = choose(book, scores, switch.model_dump())
    say(f"best single model on validation: {book.best}; model of models: {', '.join(book.stack)}; "
        f"VIX switcher chosen on train: window {switch.window}, threshold {switch.threshold:g}")

    test = st.slice(dec.start, dec.stop - dec.start)
    expo = book.exposures(test)
    on = switch_mask(vix, switch)[dec]
    stack = model_of_models({n: expo[n] for n in book.stack})
    proposals = {
        "spy": np.ones(test.height),
        **expo,
        "best": expo[book.best],
        "best_switch": apply_switch(expo[book.best], on, switch.default),
        "stack": stack,
        "stack_switch": apply_switch(stack, on, switch.default),
        "stack_el": extra_leverage(stack),
        "stack_el_switch": apply_switch(extra_leverage(stack), on, switch.default),
    }
    r_spy = nxt[dec]
    earned = d[first: last + 1]
    rows, daily = [], []
    for name, e in proposals.items():
        r = e * r_spy
        s = metrics.thesis_summary(r, None if name == "spy" else r_spy, risk_free=p.risk_free)
        ref = THESIS_REFERENCE.get(name, {})
        member = book.members.get(name)
        rows.append({
            "strategy": name, "simulation": member.simulation if member else "",
            "chosen": name in book.stack or name == book.best,
            "validation_sharpe": scores.get(name, float("nan")),
            "total_log_return": 100 * s["total_log_return"], "std": 100 * s["std"],
            "max_drawdown_log": 100 * s["max_drawdown_log"], "sr_annual": s["sr_annual"], "sr_full": s["sr_full"],
            "sortino": s["sortino"], "information_ratio": s.get("information_ratio", float("nan")),
            "mann_whitney_p": s.get("mann_whitney_p", float("nan")), "mean_exposure": float(e.mean()),
            "days": int(r.size),
            **{f"thesis_{k}": float(ref.get(k, float("nan"))) for k in
               ("total_log_return", "std", "max_drawdown_log", "sr_full")},
        })
        daily.append(pl.DataFrame({"strategy": name, "date": pl.Series(earned).cast(pl.Date), "exposure": e,
                                   "log_return": r, "cum_log_return": np.cumsum(r)}))
    table = pl.DataFrame(rows)
    test_sr = []
    for w, th in grid.select("window", "threshold").iter_rows():
        m = switch_mask(vix, switch.model_copy(update={"window": w, "threshold": th}))[dec]
        test_sr.append(metrics.sr_full_period(apply_switch(stack, m, switch.default) * r_spy, p.risk_free))
    grid = grid.with_columns(pl.Series("sr_full_test_stack", test_sr),
                             ((pl.col("window") == switch.window) & (pl.col("threshold") == switch.threshold))
                             .alias("chosen"))
    mc = []
    for name in ("spy", "stack", "stack_el_switch"):
        sim = metrics.kde_monte_carlo(proposals[name] * r_spy, n_paths=p.mc_paths, horizon=p.mc_days, seed=p.seed)
        b = sim["bands"]
        mc.append(pl.DataFrame({"strategy": name, "day": np.arange(1, p.mc_days + 1),
                                "q05": b[0], "q50": b[1], "q95": b[2]}))
    return ThesisResult(table=table, daily=pl.concat(daily), switch_grid=grid, monte_carlo=pl.concat(mc),
                        members=member_table(book, scores), book=book)

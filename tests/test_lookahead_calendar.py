"""Calendar-aware look-ahead coverage: leaks that peek one session ahead only on some calendar dates.

A one-session peek on date d is caught only by a cutoff *on* d, so these leaks are the hardest case for
the checker. Full mode must catch every calendar-tied leak on every run; fast mode catches each within
3 consecutive nights; a leak on a random 1-in-21 share of sessions is caught with probability
1 - (20/21)^K (K = cutoffs), which the tests measure.
"""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from benchmarks._data import synthetic_bars
from ml.lookahead import (
    CALENDAR_CLASSES,
    FAST_CUTOFFS,
    FULL_CUTOFFS,
    calendar_classes,
    check_lookahead,
    plan_cutoffs,
    row_boundaries,
    sparse_leak_detection,
)

N_DAYS = 900
C = pl.col("close")
CONTROL = (C / C.rolling_mean(5) - 1).over("ticker")


@pytest.fixture(scope="module")
def bars() -> pl.DataFrame:
    return synthetic_bars(n_tickers=6, n_days=N_DAYS, seed=11)


@pytest.fixture(scope="module")
def sessions(bars) -> list[date]:
    return bars["date"].unique().sort().to_list()


def leak_on_dates(firing: set[date]):
    """A feature equal to the honest control except on ``firing`` dates, where it is the next close."""
    fire = pl.Series(sorted(firing), dtype=pl.Date)

    def fn(b: pl.DataFrame) -> pl.DataFrame:
        return b.select("ticker", "date", pl.when(pl.col("date").is_in(fire.implode()))
                        .then(C.shift(-1).over("ticker")).otherwise(CONTROL).alias("leak"))

    return fn


def leak_on_first_rows(b: pl.DataFrame) -> pl.DataFrame:
    """Each ticker's first row holds its second close (a back-filled start)."""
    first = pl.int_range(pl.len()).over("ticker") == 0
    return b.select("ticker", "date", pl.when(first).then(C.shift(-1).over("ticker")).otherwise(CONTROL)
                    .alias("leak"))


def leak_on_last_rows(last_rows: pl.DataFrame):
    """On each ticker's last row (fixed by the full history): the next session's cross-sectional mean close."""

    def fn(b: pl.DataFrame) -> pl.DataFrame:
        nxt = (b.group_by("date").agg(C.mean().alias("m")).sort("date")
               .with_columns(pl.col("m").shift(-1).alias("next_mean")).drop("m"))
        out = b.join(nxt, on="date", how="left").join(last_rows.with_columns(pl.lit(True).alias("last")),
                                                      on=["ticker", "date"], how="left")
        return out.sort("ticker", "date").select(
            "ticker", "date",
            pl.when(pl.col("last").fill_null(False)).then(pl.col("next_mean")).otherwise(CONTROL).alias("leak"))

    return fn


def calendar_leaks(bars: pl.DataFrame, sessions: list[date]) -> dict[str, object]:
    """One planted leak per calendar class (the class's sessions are where it peeks)."""
    classes = calendar_classes(sessions)
    leaks = {name: leak_on_dates({sessions[i] for i in classes[name]})
             for name in CALENDAR_CLASSES if not name.startswith("ticker")}
    leaks["ticker first row"] = leak_on_first_rows
    last = bars.group_by("ticker").agg(pl.col("date").max()).filter(pl.col("date") < sessions[-1])
    leaks["ticker last row"] = leak_on_last_rows(last)
    return leaks


def test_calendar_classes_on_a_known_calendar():
    days = [date(2024, 12, 27) + timedelta(days=i) for i in range(12)]
    days = [d for d in days if d.weekday() < 5 and d != date(2025, 1, 1)]  # New Year's Day closed
    cls = {k: [days[i] for i in v] for k, v in calendar_classes(days).items()}
    assert cls["year end"] == [date(2024, 12, 31)] and cls["year start"] == [date(2025, 1, 2)]
    assert cls["pre-holiday"] == [date(2024, 12, 31)] and cls["post-holiday"] == [date(2025, 1, 2)]
    assert cls["quarter end"] == [date(2024, 12, 31)] and cls["month start"] == [date(2025, 1, 2)]
    assert cls["Friday"] == [date(2024, 12, 27), date(2025, 1, 3)]
    assert date(2024, 12, 27) not in cls["month start"]  # the history's first session starts no period


def test_full_mode_covers_every_class_and_every_ticker_boundary(bars, sessions):
    bounds = row_boundaries(bars)
    plan = plan_cutoffs(sessions, [sessions[60]], mode="full", boundaries=bounds)
    assert len(plan.dates) == FULL_CUTOFFS and sessions[-1] not in plan.dates
    covered = {w for ws in plan.reasons.values() for w in ws}
    assert set(CALENDAR_CLASSES) - {"ticker first row", "ticker last row"} <= covered
    for d, labels in bounds.items():
        if d < sessions[-1]:
            assert d in plan.dates and set(labels) <= set(plan.reasons[d])
    assert {"end", "pre-warm-up", "warm-up done", "random"} <= covered


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_mode_catches_every_calendar_tied_leak_on_every_run(bars, sessions, seed):
    for name, fn in calendar_leaks(bars, sessions).items():
        report = check_lookahead(fn, bars, seed=seed, mode="full")
        assert not report.passed, f"{name} leak escaped the full-mode check (seed {seed})"
        assert report["leak"].first_offending_date is not None
        assert report["leak"].n_cutoffs == FULL_CUTOFFS


def test_an_honest_feature_passes_full_mode(bars):
    fn = lambda b: b.select("ticker", "date", CONTROL.alias("control"))  # noqa: E731
    report = check_lookahead(fn, bars, mode="full")
    assert report.passed and len(report.cutoffs) == FULL_CUTOFFS
    assert report.classes_covered == [c for c in CALENDAR_CLASSES if c in report.classes_available]
    assert "full mode" in report.summary() and "99.1%" in report.summary()


def test_fast_mode_rotates_through_every_class_in_three_nights(bars, sessions):
    """Nights = the history growing by one session; each night 8 cutoffs, 5 classes, the next 5 the night after."""
    covered, per_night = set(), []
    for extra in range(3):
        night = bars.filter(pl.col("date") <= sessions[-3 + extra])
        days = sessions[: len(sessions) - 2 + extra]
        plan = plan_cutoffs(days, [days[60]], mode="fast", boundaries=row_boundaries(night))
        assert len(plan.dates) == FAST_CUTOFFS
        classes = {w if " row of " not in w else "ticker " + w.split(" of ")[0] for ws in plan.reasons.values()
                   for w in ws} & set(CALENDAR_CLASSES)
        per_night.append(classes)
        covered |= classes
    assert all(len(c) == 5 for c in per_night)
    assert covered == set(CALENDAR_CLASSES)


def test_fast_mode_catches_each_calendar_tied_leak_within_three_nights(bars, sessions):
    leaks = calendar_leaks(bars, sessions)
    caught = dict.fromkeys(leaks, 0)
    for extra in range(3):
        night = bars.filter(pl.col("date") <= sessions[-3 + extra])
        for name, fn in leaks.items():
            caught[name] += not check_lookahead(fn, night, mode="fast").passed
    assert all(n >= 1 for n in caught.values()), caught


def _firing_set(sessions: list[date], seed: int, rate: float = 1 / 21) -> set[date]:
    rng = np.random.default_rng(10_000 + seed)
    return {d for d in sessions if rng.random() < rate}


@pytest.mark.parametrize(("mode", "k"), [("fast", FAST_CUTOFFS), ("full", FULL_CUTOFFS)])
def test_random_one_in_21_leak_detection_matches_the_stated_probability(bars, sessions, mode, k):
    """Caught iff a cutoff lands on a firing session, so the planner alone gives the detection rate; over 400
    independent leaks it matches 1 - (20/21)^K within 4 binomial standard errors."""
    bounds = row_boundaries(bars)
    runs = 400
    hits = 0
    for s in range(runs):
        plan = plan_cutoffs(sessions, [sessions[60]], mode=mode, seed=s, boundaries=bounds)
        hits += bool(set(plan.dates) & _firing_set(sessions, s))
    p = sparse_leak_detection(k)
    assert abs(hits / runs - p) <= 4 * np.sqrt(p * (1 - p) / runs) + 1 / runs, (hits / runs, p)
    assert round(sparse_leak_detection(FAST_CUTOFFS), 3) == 0.323
    assert round(sparse_leak_detection(FULL_CUTOFFS), 3) == 0.991


def test_the_checker_catches_a_sparse_leak_exactly_when_a_cutoff_lands_on_it(bars, sessions):
    """The premise of the probability: run the real check (fast mode) on leaks it is predicted to catch / miss."""
    bounds = row_boundaries(bars)
    predicted = {}
    for s in range(40):
        plan = plan_cutoffs(sessions, [], mode="fast", seed=s, boundaries=bounds)
        predicted.setdefault(bool(set(plan.dates) & _firing_set(sessions, s)), s)
        if len(predicted) == 2:
            break
    assert set(predicted) == {True, False}
    for caught, s in predicted.items():
        report = check_lookahead(leak_on_dates(_firing_set(sessions, s)), bars, seed=s, mode="fast")
        assert report.passed is not caught


def test_the_nightly_runs_fast_mode_and_prepare_full_unless_the_resource_says_otherwise():
    from infra.resources import LOOKAHEAD_MODE_TAG, FeatureStoreResource
    from orchestration.definitions import defs

    nightly, prepare = (defs.resolve_job_def(j).tags for j in ("nightly", "prepare"))
    assert nightly[LOOKAHEAD_MODE_TAG] == "fast" and prepare[LOOKAHEAD_MODE_TAG] == "full"
    assert FeatureStoreResource().lookahead_kwargs(nightly) == {"mode": "fast"}
    assert FeatureStoreResource().lookahead_kwargs({}) == {"mode": "full"}
    assert FeatureStoreResource(lookahead_mode="full", lookahead_cutoffs=12).lookahead_kwargs(nightly) == {
        "mode": "full", "k": 12}


def test_the_feature_store_passes_full_mode_on_the_synthetic_market():
    """What the prepare job runs (96 calendar-aware cutoffs), on every feature of the store, in CI."""
    from benchmarks._data import synthetic_index_bars
    from ml.features import compute_features

    bars = synthetic_bars(n_tickers=6, n_days=N_DAYS, seed=11)
    report = check_lookahead(compute_features, bars, synthetic_index_bars(n_days=N_DAYS, seed=5), mode="full")
    assert report.passed, report.to_markdown()
    assert len(report.cutoffs) == FULL_CUTOFFS and len(report.checks) >= 45

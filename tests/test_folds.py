"""Walk-forward folds: embargo, non-overlap, keys, serialisation, partial folds (a year that has begun)."""
from __future__ import annotations

import json
from datetime import date

import numpy as np
import polars as pl
import pytest

from ml.data.synthetic import trading_calendar
from ml.folds import (
    SEED_FOLD_KEY,
    VALIDATION_SESSIONS,
    Fold,
    default_folds,
    deployed_fold,
    first_usable_date,
    fold_label,
    fold_masks,
    folds_frame,
    get_fold,
    pipeline_folds,
    seed_fold,
    yearly_keys,
)

H = 21


@pytest.fixture(scope="module")
def calendar() -> np.ndarray:
    return trading_calendar(date(2005, 1, 3), date(2025, 12, 31))


@pytest.fixture(scope="module")
def folds(calendar) -> list[Fold]:
    return default_folds(calendar, first_usable_date(calendar), H)


def _pos(cal: np.ndarray, d: date) -> int:
    i = int(np.searchsorted(cal, np.datetime64(d, "D")))
    assert cal[i] == np.datetime64(d, "D"), f"{d} is not a calendar date"
    return i


def test_keys_and_years(folds, calendar):
    assert [f.key for f in folds] == [str(y) for y in range(2012, 2026)] + [SEED_FOLD_KEY]
    first_usable = first_usable_date(calendar)
    assert first_usable == calendar[252].astype(date)
    for f in folds[:-1]:
        year = int(f.key)
        assert f.train_start == first_usable  # expanding window
        yd = calendar[(calendar >= np.datetime64(f"{year}-01-01")) & (calendar <= np.datetime64(f"{year}-12-31"))]
        assert f.test_start == yd[0].astype(date) and f.test_end == yd[-1].astype(date)


def test_embargo_and_no_overlap(folds, calendar):
    for f in folds:
        assert f.embargo_days >= H
        i_tr, i_te = _pos(calendar, f.train_end), _pos(calendar, f.test_start)
        assert i_te - i_tr - 1 >= f.embargo_days  # sessions strictly between the windows
        train, test = fold_masks(calendar, f)
        assert train.any() and test.any()
        assert not (train & test).any()
        idx_train = np.flatnonzero(train)
        # no train date within `embargo` sessions of test_start, and every train label ends before it
        assert (i_te - idx_train > f.embargo_days).all()
        assert (idx_train + H < i_te).all()
        assert calendar[idx_train].max() < calendar[np.flatnonzero(test)].min()


def test_validation_slice_is_the_last_252_train_sessions(folds, calendar):
    for f in folds:
        i_val, i_end = _pos(calendar, f.validation_start), _pos(calendar, f.train_end)
        assert i_end - i_val + 1 == VALIDATION_SESSIONS
        fit_start, fit_end = f.fit_window()
        assert fit_start == f.train_start and fit_end < f.validation_start
        assert calendar[i_val - 1].astype(date) <= fit_end  # the fit window ends the session before
    frame = folds_frame(folds)
    assert frame["validation_start"].to_list() == [f.validation_start for f in folds]
    assert Fold.from_dict(folds[0].to_dict()) == folds[0]
    # a train window shorter than two slices has none; then the policy fits on all of it
    short = default_folds(calendar[:800], first_usable_date(calendar[:800]), H, first_test_year=2007)
    assert short and short[0].validation_start is None and short[0].fit_window() == (short[0].train_start,
                                                                                        short[0].train_end)
    with pytest.raises(ValueError, match="validation_start"):
        Fold("x", date(2010, 1, 4), date(2011, 1, 3), 21, date(2011, 3, 1), date(2011, 12, 30), date(2011, 2, 1))


def test_seed_fold(folds, calendar):
    f = get_fold(folds, SEED_FOLD_KEY)
    assert f.train_start == date(2008, 1, 2)
    assert f.test_start == date(2020, 1, 2) and f.test_end == date(2025, 12, 31)
    assert _pos(calendar, f.test_start) - _pos(calendar, f.train_end) - 1 == H
    assert seed_fold(calendar, first_usable_date(calendar), H) == f


def test_last_complete_year_and_options(calendar):
    partial = calendar[calendar <= np.datetime64("2024-06-30")]
    folds = default_folds(partial, first_usable_date(partial), 5, include_seed=False)
    assert [f.key for f in folds][-2:] == ["2023", "2024"] and folds[-1].partial and not folds[-2].partial
    keys = [f.key for f in default_folds(partial, first_usable_date(partial), 5, include_seed=False,
                                         include_partial=False)]
    assert keys[-1] == "2023"
    dec = calendar[calendar <= np.datetime64("2023-12-29")]  # last weekday of 2023 (a Friday)
    last = default_folds(dec, first_usable_date(dec), 5, include_seed=False)[-1]
    assert last.key == "2023" and not last.partial
    fs = default_folds(calendar, first_usable_date(calendar), 5, first_test_year=2020, last_complete_year=2021, embargo_days=30)
    assert [f.key for f in fs] == ["2020", "2021", SEED_FOLD_KEY]
    assert all(f.embargo_days == 30 for f in fs)
    # no calendar coverage of a test year -> no fold; too-short history -> no train window
    assert default_folds(calendar[:10], calendar[0].astype(date), 1) == []


def test_roundtrip_and_masks(folds):
    f = folds[3]
    d = json.loads(json.dumps(f.to_dict()))
    assert Fold.from_dict(d) == f
    frame = folds_frame(folds)
    assert frame.height == len(folds) and frame.schema["train_end"] == pl.Date
    assert frame.schema["partial"] == pl.Boolean and not frame["partial"].any()  # the calendar ends 2025-12-31
    dates = [date(2014, 12, 31), f.train_end, f.test_start, f.test_end, date(2030, 1, 1)]
    m1 = fold_masks(dates, f)
    m2 = fold_masks(pl.Series(dates), f)
    m3 = fold_masks(np.array(dates, dtype="datetime64[D]"), f)
    for a, b in zip(m1, m2):
        assert (a == b).all()
    for a, b in zip(m1, m3):
        assert (a == b).all()
    assert m1[0].tolist() == [d <= f.train_end for d in dates]
    df = pl.DataFrame({"date": dates})
    assert df.filter(f.test_expr()).height == int(m1[1].sum())
    with pytest.raises(ValueError):
        Fold("bad", date(2020, 1, 1), date(2021, 1, 1), 5, date(2020, 6, 1), date(2020, 12, 31))
    with pytest.raises(KeyError):
        get_fold(folds, "1999")


@pytest.mark.real_data
def test_real_calendar(real_data_dir):
    spy = pl.read_csv(real_data_dir / "ohlcv" / "SPY.csv", columns=["date"]).with_columns(pl.col("date").str.to_date())
    cal = spy.filter(pl.col("date") >= date(2005, 1, 1)).get_column("date")
    cal = cal.filter(cal <= date(2025, 12, 31))
    folds = default_folds(cal, first_usable_date(cal), H)
    f = get_fold(folds, "2020")
    assert f.test_start == date(2020, 1, 2) and f.test_end == date(2020, 12, 31)
    assert f.train_end == date(2019, 11, 29)  # 21 sessions strictly between it and 2020-01-02
    assert folds[-2].key == "2025"


# ------------------------------------------------------------------------------------------------ partial folds
@pytest.fixture(scope="module")
def calendar_2026() -> np.ndarray:
    return trading_calendar(date(2005, 1, 3), date(2026, 12, 31))


def _through(cal: np.ndarray, last: str) -> np.ndarray:
    return cal[cal <= np.datetime64(last)]


def test_the_first_session_of_a_year_makes_its_fold_partial(calendar_2026):
    cal = _through(calendar_2026, "2026-01-02")  # 2026-01-01 is a holiday: 2026-01-02 is the first session
    folds = default_folds(cal, first_usable_date(cal), H)
    f = get_fold(folds, "2026")
    assert f.partial and f.test_start == f.test_end == date(2026, 1, 2)
    i = _pos(cal, date(2026, 1, 2))
    assert f.train_end == cal[i - H - 1].astype(date)  # H sessions strictly between train_end and test_start
    assert f.train_start == first_usable_date(cal) and f.validation_start is not None
    assert f.label == "2026 (partial, through 2026-01-02)" and Fold.from_dict(f.to_dict()) == f
    assert not any(g.partial for g in folds if g.key != "2026")  # 2025 and the seed fold are complete
    assert get_fold(folds, "2025").test_end == date(2025, 12, 31)
    train, test = fold_masks(cal, f)
    assert int(test.sum()) == 1 and cal[train].max() < np.datetime64(f.test_start)


def test_a_partial_fold_grows_its_test_window_only(calendar_2026):
    first = _through(calendar_2026, "2026-01-02")
    june = _through(calendar_2026, "2026-06-30")
    a = get_fold(default_folds(first, first_usable_date(first), H), "2026")
    b = get_fold(default_folds(june, first_usable_date(june), H), "2026")
    assert b.partial and b.test_end == date(2026, 6, 30)
    assert (b.train_start, b.train_end, b.validation_start, b.test_start, b.embargo_days) == (
        a.train_start, a.train_end, a.validation_start, a.test_start, a.embargo_days)


def test_the_year_s_last_weekday_completes_the_fold(calendar_2026):
    full = _through(calendar_2026, "2026-12-31")  # a Thursday
    f = get_fold(default_folds(full, first_usable_date(full), H), "2026")
    assert not f.partial and f.test_end == date(2026, 12, 31) and f.label == "2026"
    fri = trading_calendar(date(2005, 1, 3), date(2022, 12, 30))  # 2022-12-31 is a Saturday
    assert not get_fold(default_folds(fri, first_usable_date(fri), H), "2022").partial
    early = _through(calendar_2026, "2026-12-30")
    assert get_fold(default_folds(early, first_usable_date(early), H), "2026").partial


def test_seed_fold_is_partial_until_2025_ends(calendar):
    cal = _through(calendar, "2024-06-28")
    seed = seed_fold(cal, first_usable_date(cal), H)
    assert seed.partial and seed.test_end == date(2024, 6, 28)
    assert not seed_fold(calendar, first_usable_date(calendar), H).partial


def test_pipeline_folds_on_the_main_calendar_and_on_the_first_session_of_2026(calendar_2026):
    """The main job's snapshot ends 2025-12-31: no partial fold. One more session adds fold 2026 (partial),
    every other fold unchanged."""
    dec = pipeline_folds(_through(calendar_2026, "2025-12-31"))
    jan = pipeline_folds(_through(calendar_2026, "2026-01-02"))
    assert [f.key for f in dec] == [str(y) for y in range(2012, 2026)] + [SEED_FOLD_KEY]
    assert not any(f.partial for f in dec)
    assert [f.key for f in jan] == [str(y) for y in range(2012, 2027)] + [SEED_FOLD_KEY]
    assert {f.key: f for f in jan if f.key != "2026"} == {f.key: f for f in dec}
    new = get_fold(jan, "2026")
    assert new.partial and new.test_start == new.test_end == date(2026, 1, 2)
    frame = folds_frame(jan)
    assert frame.filter(pl.col("partial"))["key"].to_list() == ["2026"]
    assert yearly_keys(frame)[-1] == "2026"
    # the decision deploys the newest training window among the trained folds: the partial one once trained
    assert deployed_fold(frame, ["2024", "2025"]).key == "2025"
    assert deployed_fold(frame, ["2025", "2026", SEED_FOLD_KEY]).key == "2026"


def test_fold_label():
    assert fold_label("2026", True, date(2026, 3, 2)) == "2026 (partial, through 2026-03-02)"
    assert fold_label("2025", False, date(2025, 12, 31)) == "2025"
    assert fold_label("2026", True) == "2026 (partial)"
    # rows read back from an older ref.folds (no partial column, or NULL) are complete folds
    assert not Fold.from_dict({"key": "2020", "train_start": "2010-01-04", "train_end": "2019-11-29",
                               "embargo_days": 21, "test_start": "2020-01-02", "test_end": "2020-12-31",
                               "partial": None}).partial

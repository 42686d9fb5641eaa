"""Walk-forward folds: expanding train window, one-calendar-year test window, embargo between them.

Timing convention. Dates are trading dates of the calendar (the reference ticker's sessions).
A label dated t describes closes t+1 … t+h (h = label horizon, trading days), so a training row
dated t "sees" the market up to the close of t+h. With ``embargo_days = e >= h`` there are exactly
``e`` trading sessions strictly between ``train_end`` and ``test_start``: the label of every
training row ends at or before the session before ``test_start``, so no training label overlaps
the test window. Everything fitted for a fold (scalers, HMMs, classifiers) uses train rows only.

Fold keys: ``"2012"`` … ``"2025"`` for the default yearly folds (key = test year) and
``"seed-2008-2019"`` for the named seed fold (train 2008–2019, test 2020–2025).

Partial folds. The yearly fold of year Y exists as soon as the calendar holds a session of Y: its train
window (everything through ``test_start`` minus the embargo) is complete then, and it never changes as Y
goes on. Until the calendar reaches the year's last weekday the fold is ``partial``: its ``test_end`` is the
calendar's newest session and grows session by session (only ``test_end`` and ``partial`` change), so a
model trained on the first session of Y stays valid all year and the daily decision can deploy it at once.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl

SEED_FOLD_KEY = "seed-2008-2019"
SEED_TRAIN = (date(2008, 1, 1), date(2019, 12, 31))
SEED_TEST = (date(2020, 1, 1), date(2025, 12, 31))
DEFAULT_WARMUP_SESSIONS = 252
#: Sessions at the end of each train window held out for model selection (policies); see :class:`Fold`.
VALIDATION_SESSIONS = 252

DateLike = date | np.datetime64 | str


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold (all bounds inclusive, all dates are trading days of the calendar).

    ``embargo_days``: trading sessions strictly between ``train_end`` and ``test_start``.
    ``validation_start``: first session of the validation slice - the last ``VALIDATION_SESSIONS`` sessions
    of the train window, ``[validation_start, train_end]`` - on which the policies choose their checkpoint
    and the ensemble its weights (they fit on ``[train_start, validation_start)``); None when the train
    window is shorter than twice the slice.
    ``partial``: the calendar ends before the test window's nominal end (the test year's last weekday):
    ``test_end`` is the newest session so far and grows with the calendar; the train window is final.
    """

    key: str
    train_start: date
    train_end: date
    embargo_days: int
    test_start: date
    test_end: date
    validation_start: date | None = None
    partial: bool = False

    def __post_init__(self) -> None:
        if not (self.train_start <= self.train_end < self.test_start <= self.test_end):
            raise ValueError(f"fold {self.key!r}: need train_start <= train_end < test_start <= test_end, got {self}")
        if self.embargo_days < 0:
            raise ValueError(f"fold {self.key!r}: embargo_days must be >= 0")
        if self.validation_start is not None and not self.train_start < self.validation_start <= self.train_end:
            raise ValueError(f"fold {self.key!r}: validation_start must lie in (train_start, train_end]")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (dates as ISO strings)."""
        d = asdict(self)
        return {k: (v.isoformat() if isinstance(v, date) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Fold:
        def _d(v: Any) -> date:
            return v if isinstance(v, date) else date.fromisoformat(str(v))

        return cls(
            key=str(d["key"]),
            train_start=_d(d["train_start"]),
            train_end=_d(d["train_end"]),
            embargo_days=int(d["embargo_days"]),
            test_start=_d(d["test_start"]),
            test_end=_d(d["test_end"]),
            validation_start=None if d.get("validation_start") is None else _d(d["validation_start"]),
            partial=bool(d.get("partial") or False),
        )

    @property
    def label(self) -> str:
        """The key, marked when the test window is partial: ``"2026 (partial, through 2026-01-02)"``."""
        return fold_label(self.key, self.partial, self.test_end)

    def train_expr(self, col: str = "date") -> pl.Expr:
        """Polars predicate: ``col`` in [train_start, train_end]."""
        return pl.col(col).is_between(self.train_start, self.train_end, closed="both")

    def fit_window(self) -> tuple[date, date]:
        """Earned dates a policy fits on: the train window before the validation slice (all of it without one)."""
        if self.validation_start is None:
            return self.train_start, self.train_end
        return self.train_start, self.validation_start - timedelta(days=1)

    def test_expr(self, col: str = "date") -> pl.Expr:
        """Polars predicate: ``col`` in [test_start, test_end]."""
        return pl.col(col).is_between(self.test_start, self.test_end, closed="both")


def as_day_array(dates: Any) -> np.ndarray:
    """Anything date-like (Series, frame with a ``date`` column, list of date, datetime64 array)
    -> ``datetime64[D]`` array."""
    if isinstance(dates, pl.DataFrame):
        dates = dates.get_column("date")
    if isinstance(dates, pl.Series):
        return dates.cast(pl.Date).to_numpy().astype("datetime64[D]")
    if isinstance(dates, np.ndarray) and np.issubdtype(dates.dtype, np.datetime64):
        return dates.astype("datetime64[D]")
    return np.array([np.datetime64(d, "D") for d in dates], dtype="datetime64[D]")


def _to_date(d: np.datetime64) -> date:
    return d.astype("datetime64[D]").astype(date)


def fold_masks(dates: Any, fold: Fold) -> tuple[np.ndarray, np.ndarray]:
    """Boolean ``(train_mask, test_mask)`` over ``dates`` (Series / sequence / datetime64 array)."""
    d = as_day_array(dates)
    ts, te = np.datetime64(fold.train_start, "D"), np.datetime64(fold.train_end, "D")
    vs, ve = np.datetime64(fold.test_start, "D"), np.datetime64(fold.test_end, "D")
    return (d >= ts) & (d <= te), (d >= vs) & (d <= ve)


def first_usable_date(calendar: Sequence[DateLike] | pl.Series, warmup_sessions: int = DEFAULT_WARMUP_SESSIONS) -> date:
    """The calendar date ``warmup_sessions`` sessions after the first one (full feature warm-up)."""
    cal = np.unique(as_day_array(calendar))
    if cal.size <= warmup_sessions:
        raise ValueError(f"calendar has {cal.size} sessions, fewer than the warm-up of {warmup_sessions}")
    return _to_date(cal[warmup_sessions])


def fold_label(key: str, partial: bool | None, through: DateLike | None = None) -> str:
    """``key``, or ``"key (partial, through <date>)"`` for a fold whose test window is not complete."""
    if not partial:
        return key
    return f"{key} (partial, through {through})" if through is not None else f"{key} (partial)"


def _last_weekday(d: date) -> date:
    """``d`` itself on a weekday, else the Friday before it."""
    return d - timedelta(days=max(0, d.weekday() - 4))  # Sat -> Fri, Sun -> Fri


def _last_complete_year(cal: np.ndarray) -> int:
    """Last calendar year fully covered: a later date exists, or the last date is the year's last weekday."""
    last = _to_date(cal[-1])
    return last.year if last >= _last_weekday(date(last.year, 12, 31)) else last.year - 1


def _make_fold(
    cal: np.ndarray,
    key: str,
    train_start: date,
    train_end_cap: date | None,
    test_start: date,
    test_end: date,
    embargo: int,
) -> Fold | None:
    """Snap bounds to the calendar and apply the embargo; None if a window is empty."""
    i_ts = int(np.searchsorted(cal, np.datetime64(test_start, "D"), side="left"))
    i_te = int(np.searchsorted(cal, np.datetime64(test_end, "D"), side="right")) - 1
    if i_ts >= cal.size or i_te < i_ts:
        return None
    i_tr_end = i_ts - embargo - 1
    if train_end_cap is not None:
        i_tr_end = min(i_tr_end, int(np.searchsorted(cal, np.datetime64(train_end_cap, "D"), side="right")) - 1)
    i_tr_start = int(np.searchsorted(cal, np.datetime64(train_start, "D"), side="left"))
    if i_tr_end < i_tr_start:
        return None
    i_val = i_tr_end - VALIDATION_SESSIONS + 1
    # the calendar stops inside the nominal test window: its test_end is the newest session so far
    partial = i_te == cal.size - 1 and _to_date(cal[-1]) < _last_weekday(test_end)
    return Fold(
        key=key,
        train_start=_to_date(cal[i_tr_start]),
        train_end=_to_date(cal[i_tr_end]),
        embargo_days=embargo,
        test_start=_to_date(cal[i_ts]),
        test_end=_to_date(cal[i_te]),
        validation_start=_to_date(cal[i_val]) if i_val - i_tr_start >= VALIDATION_SESSIONS else None,
        partial=partial,
    )


def default_folds(
    calendar: Sequence[DateLike] | pl.Series,
    first_usable: date,
    label_horizon: int,
    first_test_year: int = 2012,
    last_complete_year: int | None = None,
    *,
    embargo_days: int | None = None,
    include_seed: bool = True,
    include_partial: bool = True,
) -> list[Fold]:
    """Yearly walk-forward folds plus the named seed fold.

    ``calendar``: trading dates (any order, duplicates ok). ``first_usable``: first date with full
    feature warm-up (e.g. :func:`first_usable_date`); every train window starts there (expanding).
    ``label_horizon``: longest label horizon h (trading days); the embargo is
    ``max(h, embargo_days or 0)`` sessions. Test window = one calendar year, for years
    ``first_test_year`` … ``last_complete_year`` (default: the calendar's last year when
    ``include_partial``, else the last year fully in the calendar). A year the calendar covers only in part
    gives a ``partial`` fold: its train window is final, its test window runs through the newest session.
    The seed fold ``seed-2008-2019`` trains on 2008-01-01 (or ``first_usable`` if later) …
    2019-12-31 minus the embargo, and tests on 2020-01-01 … 2025-12-31 (clipped to the calendar; partial
    while the calendar ends before 2025-12-31). Folds whose train or test window would be empty are left out.
    """
    if label_horizon < 0:
        raise ValueError("label_horizon must be >= 0")
    embargo = max(int(label_horizon), int(embargo_days or 0))
    cal = np.unique(as_day_array(calendar))
    if cal.size == 0:
        return []
    if last_complete_year is not None:
        last_year = last_complete_year
    else:
        last_year = _to_date(cal[-1]).year if include_partial else _last_complete_year(cal)
    folds: list[Fold] = []
    for year in range(first_test_year, last_year + 1):
        f = _make_fold(cal, str(year), first_usable, None, date(year, 1, 1), date(year, 12, 31), embargo)
        if f is not None:
            folds.append(f)
    if include_seed:
        f = seed_fold(cal, first_usable, label_horizon, embargo_days=embargo)
        if f is not None:
            folds.append(f)
    return folds


def seed_fold(
    calendar: Sequence[DateLike] | pl.Series | np.ndarray,
    first_usable: date,
    label_horizon: int,
    *,
    embargo_days: int | None = None,
) -> Fold | None:
    """The named fold ``seed-2008-2019`` (see :func:`default_folds`); None if the calendar lacks it."""
    embargo = max(int(label_horizon), int(embargo_days or 0))
    cal = np.unique(as_day_array(calendar))
    return _make_fold(
        cal, SEED_FOLD_KEY, max(first_usable, SEED_TRAIN[0]), SEED_TRAIN[1], SEED_TEST[0], SEED_TEST[1], embargo
    )


def folds_frame(folds: Sequence[Fold]) -> pl.DataFrame:
    """One row per fold (key, train_start, train_end, embargo_days, test_start, test_end, validation_start,
    partial)."""
    schema = {
        "key": pl.Utf8,
        "train_start": pl.Date,
        "train_end": pl.Date,
        "embargo_days": pl.Int64,
        "test_start": pl.Date,
        "test_end": pl.Date,
        "validation_start": pl.Date,
        "partial": pl.Boolean,
    }
    return pl.DataFrame([asdict(f) for f in folds], schema=schema)


def get_fold(folds: Sequence[Fold], key: str) -> Fold:
    for f in folds:
        if f.key == key:
            return f
    raise KeyError(f"no fold {key!r}; known: {[f.key for f in folds]}")


def pipeline_folds(calendar: Sequence[DateLike] | pl.Series) -> list[Fold]:
    """The project's folds for a trading calendar: :func:`default_folds` with train windows starting
    after the longest feature warm-up and an embargo of the longest label horizon (sessions).

    Used by the ``ref/folds`` asset and the new-fold sensor, so both always agree on a fold's windows. The
    newest yearly fold is ``partial`` from the first session of its year (see the module docstring)."""
    from ml.features import FEATURE_SPECS
    from ml.labels import MAX_LABEL_HORIZON

    warmup = max(s.warmup for s in FEATURE_SPECS)
    return default_folds(calendar, first_usable_date(calendar, warmup), MAX_LABEL_HORIZON)


def fold_from_frame(folds: pl.DataFrame, key: str) -> Fold:
    """The fold ``key`` of a ``ref.folds`` frame; a clear ``KeyError`` when the folds asset has not produced it."""
    rows = folds.filter(pl.col("key") == key) if folds.height else folds
    if rows.height == 0:
        raise KeyError(f"fold {key!r} is not in ref.folds: materialize ref/folds first (job prepare or nightly)")
    return Fold.from_dict(rows.row(0, named=True))


def deployed_fold(folds: pl.DataFrame, candidates: Sequence[str]) -> Fold | None:
    """The fold the daily decision deploys among ``candidates`` (folds with a trained model): the latest
    training window (train_end, then test_end). A partial fold (its year has begun) has the latest training
    window as soon as it is trained, so it is deployed from then on. None when no candidate is a known fold."""
    rows = folds.filter(pl.col("key").is_in(list(candidates))) if folds.height else folds
    if rows.height == 0:
        return None
    return Fold.from_dict(rows.sort("train_end", "test_end", descending=True).row(0, named=True))


def yearly_keys(folds: pl.DataFrame) -> list[str]:
    """The default yearly folds (key = test year) in time order: the walk-forward track's pieces (the newest
    may be ``partial``: its year so far)."""
    return folds.filter(pl.col("key").str.contains(r"^\d{4}$")).sort("test_start")["key"].to_list()

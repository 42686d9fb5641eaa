"""Look-ahead (future leakage) checker for any feature function.

A feature function is causal when its value dated t depends only on inputs dated <= t. For K
cutoff dates c the checker recomputes the function on

* ``truncated``: bars (and index bars) with every row dated > c removed, and
* ``garbage``: rows dated in (c, c + ``garbage_horizon`` trading dates] replaced by garbage
  (each numeric column shuffled across rows and multiplied by a random factor in [0.5, 2]) and
  rows beyond that removed (keeps the check cheap; any dependence further ahead is caught by
  the truncated variant and by the null pattern at the boundary),

and asserts that every value dated <= c equals the full-history value. Nulls must match
(null vs value is a failure); NaN equals NaN.

Cutoffs (``plan_cutoffs``): three anchors - the last date before any checked column becomes
non-null (catches back-filled warm-ups), the first date at which every column has produced a value,
and the second-to-last date - then one session of each **calendar class** (month / quarter / year
end and start, each weekday, the sessions before and after a holiday, and each ticker's first and
last rows), then random sessions (an even grid with a seeded jitter). A leak that peeks one session
ahead on date d is caught only by a cutoff *on* d, so a leak tied to the calendar needs a cutoff of
its class, and a leak on a random 1-in-21 subset of sessions is caught with probability
``1 - (20/21)^K`` (:func:`sparse_leak_detection`).

* ``mode="full"`` (the ``prepare`` job, CI): ``FULL_CUTOFFS`` = 96 cutoffs, every calendar class and
  every ticker boundary: calendar-tied leaks are caught on every run, a random 1-in-21 leak with
  probability 99.1 %.
* ``mode="fast"`` (the nightly): ``FAST_CUTOFFS`` = 8 cutoffs, the anchors plus 5 calendar classes
  taken in rotation by the length of the history, so 3 consecutive nights cover all 15 classes
  (a calendar-tied leak: 1/3 on a given night, certain within 3 nights); a random 1-in-21 leak:
  32 % per night, 86 % within 5 nights (each night draws new sessions).

Tolerance: ``|full - variant| <= atol + rtol * |full|`` with rtol=1e-9, atol=1e-12 by default.
A causal kernel (recursive ``ewm_mean(adjust=False)``, sliding rolling windows, shifts) performs
the same floating-point operations in the same order on a prefix, so results are normally
bit-identical (max |diff| 0.0). The tolerance absorbs ulp-level effects that depend on the
total length of the arrays: SIMD body vs scalar tail of vectorised kernels, chunked or
re-anchored summation (observed: 2.8e-17 on ``vix_centered`` = (VIX-20)/10, relative ~1e-16).
Real leaks produce differences of the order of the data itself (garbage is a factor 0.5-2
away): a planted leak of only 1e-6 x the next close is still 1000x above the tolerance.

Cost: 1 full run plus 2 runs per cutoff on prefixes of the history; outputs are compared with a
positional fast path (same keys in the same order) and a key join otherwise.
"""
from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import polars as pl

from ml.reports.markdown import markdown_table, plain_value

FeatureFn = Callable[..., pl.DataFrame | pl.LazyFrame]

FULL_CUTOFFS = 96  # the feature store's check in the prepare job and CI
FAST_CUTOFFS = 8  # the feature store's check in the nightly job
MODES = ("full", "fast")
#: The calendar classes, in the order the fast mode rotates through them.
CALENDAR_CLASSES = (
    "month end", "quarter start", "Monday", "pre-holiday", "ticker first row",
    "month start", "quarter end", "Tuesday", "post-holiday", "ticker last row",
    "year end", "year start", "Wednesday", "Thursday", "Friday",
)
MAX_BOUNDARY_CUTOFFS = 32  # full mode: at most this many ticker first/last rows (seeded sample beyond)
FOLD_OUTPUT_CUTOFFS = 4  # a fold's HMM probabilities / prescreen scores: frozen models over causal inputs
DEFAULT_RTOL = 1e-9
DEFAULT_ATOL = 1e-12
VARIANTS: tuple[str, str] = ("truncated", "garbage")
_SUFFIX = "__variant"
_ENGINE = "in-memory"
_MD_COLUMNS = (
    "feature", "status", "max abs diff", "mismatches / compared", "first offending date", "ticker", "cutoff (variant)",
)  # fmt: skip


@dataclass(frozen=True)
class FeatureCheck:
    """Result for one output column."""

    feature: str
    passed: bool
    n_cutoffs: int
    n_compared: int
    n_mismatches: int
    max_abs_diff: float | None
    first_offending_date: date | None = None
    first_offending_ticker: str | None = None
    first_offending_cutoff: date | None = None
    first_offending_variant: str | None = None


@dataclass(frozen=True)
class LookaheadReport:
    """Per-feature results plus the run parameters. ``passed`` is True when every feature passed."""

    checks: tuple[FeatureCheck, ...]
    cutoffs: tuple[date, ...]
    rtol: float
    atol: float
    n_rows: int
    elapsed_s: float
    variants: tuple[str, ...] = VARIANTS
    garbage_horizon: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    mode: str = "full"
    classes_available: tuple[str, ...] = ()
    #: (cutoff, why it was chosen) in date order
    reasons: tuple[tuple[date, tuple[str, ...]], ...] = ()

    @property
    def sparse_leak_detection(self) -> float:
        """Chance these cutoffs catch a one-session peek firing on a random 1 in 21 sessions."""
        return sparse_leak_detection(len(self.cutoffs))

    @property
    def classes_covered(self) -> list[str]:
        """The calendar classes (:data:`CALENDAR_CLASSES`) with at least one cutoff."""
        seen = {"ticker " + w.split(" of ")[0] if " row of " in w else w for _, whys in self.reasons for w in whys}
        return [c for c in CALENDAR_CLASSES if c in seen]

    @property
    def passed(self) -> bool:
        """All features passed on at least one cutoff (an empty check does not pass)."""
        return bool(self.cutoffs) and all(c.passed for c in self.checks)

    @property
    def failed_features(self) -> list[str]:
        return [c.feature for c in self.checks if not c.passed]

    def __getitem__(self, feature: str) -> FeatureCheck:
        for c in self.checks:
            if c.feature == feature:
                return c
        raise KeyError(feature)

    def to_frame(self) -> pl.DataFrame:
        """One row per feature (schema fixed, also when empty)."""
        schema = {
            "feature": pl.Utf8,
            "passed": pl.Boolean,
            "n_cutoffs": pl.Int64,
            "n_compared": pl.Int64,
            "n_mismatches": pl.Int64,
            "max_abs_diff": pl.Float64,
            "first_offending_date": pl.Date,
            "first_offending_ticker": pl.Utf8,
            "first_offending_cutoff": pl.Date,
            "first_offending_variant": pl.Utf8,
        }
        rows = [{k: getattr(c, k) for k in schema} for c in self.checks]
        return pl.DataFrame(rows, schema=schema)

    def summary(self) -> str:
        status = "PASSED" if self.passed else f"FAILED ({len(self.failed_features)} leaking)"
        return (
            f"Look-ahead check {status} ({self.mode} mode): {len(self.checks)} features, {len(self.cutoffs)} "
            f"cutoffs ({len(self.classes_covered)}/{len(self.classes_available)} calendar classes, "
            f"P(catch a 1-in-21-session leak) {self.sparse_leak_detection:.1%}) x {len(self.variants)} variants ({', '.join(self.variants)}), rtol={self.rtol:g}, "
            f"atol={self.atol:g}, {self.n_rows:,} rows, {self.elapsed_s:.1f} s"
        )

    def to_markdown(self, max_rows: int = 80) -> str:
        """Markdown summary for Dagster metadata: status line, cutoffs, table (failures first)."""
        lines = [f"**{self.summary()}**", ""]
        why = dict(self.reasons)
        lines.append("Cutoffs: " + ", ".join(
            d.isoformat() + (f" ({'; '.join(why[d][:3])}{' …' if len(why[d]) > 3 else ''})" if d in why else "")
            for d in self.cutoffs))
        lines += [f"> {n}" for n in self.notes]
        ordered = sorted(self.checks, key=lambda c: (c.passed, c.feature))
        rows = [
            {
                "feature": c.feature,
                "status": "pass" if c.passed else "**LEAK**",
                "max abs diff": "n/a" if c.max_abs_diff is None else f"{c.max_abs_diff:.3g}",
                "mismatches / compared": f"{c.n_mismatches:,} / {c.n_compared:,}",
                "first offending date": c.first_offending_date.isoformat() if c.first_offending_date else None,
                "ticker": c.first_offending_ticker,
                "cutoff (variant)": (
                    f"{c.first_offending_cutoff.isoformat()} ({c.first_offending_variant})"
                    if c.first_offending_cutoff
                    else None
                ),
            }
            for c in ordered[:max_rows]
        ]
        table = pl.DataFrame(rows, schema=dict.fromkeys(_MD_COLUMNS, pl.Utf8))
        lines += ["", markdown_table(table, max_rows=None, formatter=plain_value)]
        rest = ordered[max_rows:]
        if rest:
            leaking = sum(not c.passed for c in rest)
            lines.append(f"\n_… {len(rest)} more features ({f'{leaking} leaking' if leaking else 'all passed'})_")
        return "\n".join(lines)

    def raise_if_failed(self) -> None:
        if not self.passed:
            raise AssertionError(self.summary() + "\n" + self.to_markdown())


# ---------------------------------------------------------------- helpers
def _call(fn: FeatureFn, bars: pl.DataFrame, index_bars: pl.DataFrame | None) -> pl.DataFrame:
    out = fn(bars) if index_bars is None else fn(bars, index_bars)
    if isinstance(out, pl.LazyFrame):
        out = out.collect(engine=_ENGINE)
    if not isinstance(out, pl.DataFrame):
        raise TypeError(f"feature function returned {type(out).__name__}, expected a polars DataFrame")
    return out


def _numeric_columns(frame: pl.DataFrame, keys: Sequence[str]) -> list[str]:
    return [
        c for c, t in frame.schema.items() if c not in keys and (t.is_numeric() or t == pl.Boolean)
    ]


def _garble(frame: pl.DataFrame, cutoff: date, rng: np.random.Generator, keys: Sequence[str]) -> pl.DataFrame:
    """Rows dated > cutoff: every numeric column permuted among those rows and scaled by U(0.5, 2).

    Keys (and dates) are kept, so the garbage history has the same shape as the real one.
    """
    idx = np.flatnonzero((frame.get_column("date") > cutoff).to_numpy())
    if idx.size == 0:
        return frame
    replaced = []
    for name, dtype in frame.schema.items():
        if name in keys or name == "symbol" or not dtype.is_numeric():
            continue
        col = frame.get_column(name)
        vals = col.gather(idx).cast(pl.Float64).to_numpy()
        garbage = vals[rng.permutation(idx.size)] * rng.uniform(0.5, 2.0, idx.size)
        if dtype.is_integer():
            garbage = np.round(garbage)
        replaced.append(col.scatter(idx, pl.Series(name, garbage).cast(dtype)))
    return frame.with_columns(replaced) if replaced else frame


def _first_valid_dates(full: pl.DataFrame, cols: Sequence[str]) -> list[date]:
    if not cols:
        return []
    row = full.select(
        [
            pl.col("date").filter(pl.col(c).is_not_null() & ~pl.col(c).cast(pl.Float64).is_nan()).min().alias(c)
            for c in cols
        ]
    ).row(0)
    return [d for d in row if d is not None]


def sparse_leak_detection(n_cutoffs: int, rate: float = 1 / 21) -> float:
    """Probability that ``n_cutoffs`` sessions include one of a leak's firing sessions, for a one-session
    peek that fires on a random ``rate`` share of sessions (independent of the calendar)."""
    return 1.0 - (1.0 - rate) ** max(n_cutoffs, 0)


def calendar_classes(dates: Sequence[date]) -> dict[str, list[int]]:
    """Positions in ``dates`` (sorted sessions) of each calendar class of :data:`CALENDAR_CLASSES` but the
    ticker rows: period ends / starts, weekdays, sessions before / after a holiday (a weekday that is no
    session lies between them and their neighbouring session)."""
    d = np.array(dates, dtype="datetime64[D]")
    n = d.size
    if n == 0:
        return {}
    months = d.astype("datetime64[M]")
    years = d.astype("datetime64[Y]")
    month_no = months.astype(int) % 12
    new_month = np.r_[True, months[1:] != months[:-1]]
    new_year = np.r_[True, years[1:] != years[:-1]]
    last_month = np.r_[months[1:] != months[:-1], True]
    last_year = np.r_[years[1:] != years[:-1], True]
    quarter_first = month_no % 3 == 0
    quarter_last = month_no % 3 == 2
    weekday = (d.astype(int) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    gap_after = np.r_[np.busday_count(d[:-1], d[1:]) > 1, False] if n > 1 else np.zeros(n, bool)
    gap_before = np.r_[False, gap_after[:-1]]
    # the history's own first/last sessions are not period starts/ends (the period is cut, not ended)
    new_month[0] = new_year[0] = False
    last_month[-1] = last_year[-1] = False
    masks = {
        "month end": last_month, "month start": new_month,
        "quarter end": last_month & quarter_last, "quarter start": new_month & quarter_first,
        "year end": last_year, "year start": new_year,
        "pre-holiday": gap_after, "post-holiday": gap_before,
        **{name: weekday == i for i, name in enumerate(("Monday", "Tuesday", "Wednesday", "Thursday", "Friday"))},
    }
    return {name: np.flatnonzero(m).tolist() for name, m in masks.items()}


@dataclass(frozen=True)
class CutoffPlan:
    """Cutoff dates and why each was chosen (anchor, calendar class, ticker row, random)."""

    dates: tuple[date, ...]
    reasons: dict[date, tuple[str, ...]]
    mode: str
    #: calendar classes with at least one candidate session before the last one
    available: tuple[str, ...] = ()

    def describe(self) -> str:
        return ", ".join(f"{d.isoformat()} ({'; '.join(self.reasons[d])})" for d in self.dates)


def plan_cutoffs(
    dates: Sequence[date],
    first_valid: Sequence[date],
    k: int | None = None,
    seed: int = 0,
    *,
    mode: str = "full",
    boundaries: dict[date, list[str]] | None = None,
) -> CutoffPlan:
    """Up to ``k`` cutoffs (default ``FULL_CUTOFFS`` / ``FAST_CUTOFFS``): the anchors, then calendar classes
    (all of them in full mode, five in rotation in fast mode - see the module docstring), then random
    sessions. ``boundaries``: each ticker's first / last session -> tickers (from :func:`row_boundaries`).

    The last session is never a cutoff (nothing after it to leak). Class members are drawn with ``seed``
    (full) or ``seed`` + the number of sessions (fast, so each night draws other sessions)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    k = (FULL_CUTOFFS if mode == "full" else FAST_CUTOFFS) if k is None else int(k)
    n = len(dates)
    if n == 0 or k <= 0:
        return CutoffPlan((), {}, mode)
    end = max(n - 2, 0)
    rng = np.random.default_rng(seed + (n if mode == "fast" else 0))
    chosen: dict[int, list[str]] = {}

    def take(i: int, why: str) -> None:
        if 0 <= i <= end and (i in chosen or len(chosen) < k):
            chosen.setdefault(i, []).append(why)

    pos = {d: i for i, d in enumerate(dates)}
    if first_valid:
        pre, ready = max(pos[min(first_valid)] - 1, 0), min(pos[max(first_valid)], end)
    else:
        pre, ready = 0, 0
    for i, why in ((end, "end"), (pre, "pre-warm-up"), (ready, "warm-up done")):
        take(i, why)
    anchors = sorted(chosen)

    classes = calendar_classes(dates) if all(isinstance(d, date) for d in dates[:1]) else {}
    rows: dict[str, dict[int, list[str]]] = {"ticker first row": {}, "ticker last row": {}}
    for d, labels in sorted((boundaries or {}).items()):
        if d in pos and pos[d] <= end:
            for label in labels:
                kind = "ticker first row" if label.startswith("first") else "ticker last row"
                rows[kind].setdefault(pos[d], []).append(label)
    pool = {name: [i for i in classes.get(name, []) if i <= end] for name in CALENDAR_CLASSES if name not in rows}
    order = list(CALENDAR_CLASSES)
    slots = k - len(chosen)
    if mode == "fast" or slots < len(order):
        step = max(min(slots, len(order)), 1)
        start = ((n if mode == "fast" else seed) * step) % len(order)
        order = (order[start:] + order[:start])[:step]
    for name in order:
        if name in rows:
            members = sorted(rows[name])  # distinct sessions
            if members:
                n_picks = MAX_BOUNDARY_CUTOFFS if mode == "full" else 1
                for j in sorted(rng.permutation(len(members))[:n_picks]):
                    for label in rows[name][members[j]]:
                        take(members[j], label)
        elif pool[name]:
            take(pool[name][int(rng.integers(len(pool[name])))], name)

    rest = k - len(chosen)
    if rest > 0:
        lo = anchors[0]  # random sessions from the pre-warm-up anchor on
        grid = np.linspace(lo, end, rest + 2)[1:-1]
        step = (end - lo) / (rest + 1)
        for g in np.clip(np.round(grid + rng.uniform(-0.5, 0.5, rest) * step), 0, end).astype(int):
            take(int(g), "random")
        free = [i for i in range(end + 1) if i not in chosen]
        while len(chosen) < k and free:
            take(free.pop(int(rng.integers(len(free)))), "random")
    ordered = sorted(chosen)
    available = tuple(c for c in CALENDAR_CLASSES if (rows[c] if c in rows else pool[c]))
    return CutoffPlan(tuple(dates[i] for i in ordered), {dates[i]: tuple(chosen[i]) for i in ordered}, mode,
                      available)


def row_boundaries(*frames: pl.DataFrame | None) -> dict[date, list[str]]:
    """Each ticker's (or index symbol's) first and last dated row -> ``["first row of X", …]``."""
    out: dict[date, list[str]] = {}
    for frame in frames:
        if frame is None or frame.height == 0:
            continue
        key = "ticker" if "ticker" in frame.columns else "symbol"
        ends = frame.group_by(key).agg(pl.col("date").min().alias("first"), pl.col("date").max().alias("last"))
        for name, first, last in ends.sort(key).iter_rows():
            out.setdefault(first, []).append(f"first row of {name}")
            out.setdefault(last, []).append(f"last row of {name}")
    return out


def _same_keys(full_c: pl.DataFrame, var: pl.DataFrame, keys: list[str]) -> bool:
    return var.height == full_c.height and var.select(keys).equals(full_c.select(keys))


def _aligned(
    full_c: pl.DataFrame, var: pl.DataFrame, keys: list[str], cols: list[str], positional: bool
) -> pl.DataFrame:
    """full_c's keys and ``cols`` next to the variant's ``cols`` (suffix ``__variant``)."""
    renamed = var.select(*keys, *[pl.col(c).alias(c + _SUFFIX) for c in cols])
    left = full_c.select(*keys, *cols)
    if positional:
        return pl.concat([left, renamed.drop(keys)], how="horizontal")
    return left.join(renamed, on=keys, how="left", maintain_order="left", nulls_equal=True)


def _compare(
    aligned: pl.DataFrame, cols: list[str], rtol: float, atol: float
) -> tuple[dict[str, tuple[int, float | None, date | None]], dict[str, pl.Expr]]:
    """Per column: (mismatches, max |diff| over finite pairs, first mismatching date); mismatch exprs."""
    aggs = []
    mis_exprs = {}
    for c in cols:
        a = pl.col(c).cast(pl.Float64)
        b = pl.col(c + _SUFFIX).cast(pl.Float64)
        an, bn = a.is_null(), b.is_null()
        diff = (a - b).abs()
        ok = (a == b) | (diff <= atol + rtol * a.abs()) | (a.is_nan() & b.is_nan())
        mis = pl.when(an | bn).then(an != bn).otherwise(~ok)
        mis_exprs[c] = mis
        aggs += [
            mis.sum().alias(f"{c}\x00n"),
            diff.filter(a.is_finite() & b.is_finite()).max().alias(f"{c}\x00d"),
            pl.col("date").filter(mis).min().alias(f"{c}\x00f"),
        ]
    row = aligned.select(aggs).row(0, named=True)
    return {c: (int(row[f"{c}\x00n"] or 0), row[f"{c}\x00d"], row[f"{c}\x00f"]) for c in cols}, mis_exprs


def _offending_ticker(aligned: pl.DataFrame, mis: pl.Expr, first: date, keys: list[str]) -> str | None:
    if "ticker" not in keys:
        return None
    hit = aligned.filter(mis & (pl.col("date") == first)).select("ticker")
    return None if hit.height == 0 else str(hit.item(0, 0))


# ---------------------------------------------------------------- entry point
def check_lookahead(
    feature_fn: FeatureFn,
    bars: pl.DataFrame,
    index_bars: pl.DataFrame | None = None,
    k: int | None = None,
    tolerance: float | tuple[float, float] = (DEFAULT_RTOL, DEFAULT_ATOL),
    seed: int = 0,
    columns: Sequence[str] | None = None,
    *,
    garbage_horizon: int | None = 63,
    cutoffs: Sequence[date] | None = None,
    mode: str = "full",
) -> LookaheadReport:
    """Check that ``feature_fn`` never uses data dated after the row it writes.

    ``feature_fn`` is called as ``feature_fn(bars)`` when ``index_bars`` is None, else as
    ``feature_fn(bars, index_bars)`` (wrap extra arguments with ``functools.partial``). It must
    return a frame with a ``date`` column (and ``ticker`` when per ticker); ``columns`` defaults
    to every numeric column but the keys. ``tolerance`` is (rtol, atol); a single float sets
    both. ``garbage_horizon``: trading dates of garbage after each cutoff (None = all).
    ``mode`` (full | fast) and ``k`` (default 96 | 8) choose the cutoffs (:func:`plan_cutoffs`);
    ``cutoffs`` overrides the automatic choice of dates.
    """
    t0 = time.perf_counter()
    rtol, atol = (tolerance, tolerance) if isinstance(tolerance, (int, float)) else tolerance
    rng = np.random.default_rng(seed)
    full = _call(feature_fn, bars, index_bars)
    if "date" not in full.columns:
        raise ValueError("feature output needs a 'date' column")
    keys = [c for c in ("ticker", "date") if c in full.columns]
    if full.select(pl.struct(keys).is_duplicated().any()).item():
        raise ValueError(f"feature output has duplicate {keys} rows")
    cols = list(columns) if columns is not None else _numeric_columns(full, keys)
    missing = [c for c in cols if c not in full.columns]
    if missing:
        raise ValueError(f"columns not in the feature output: {missing}")
    full = full.select(*keys, *cols).sort(keys)

    dates: list[date] = bars.get_column("date").unique().sort().to_list()
    if cutoffs is not None:
        plan = CutoffPlan(tuple(sorted(set(cutoffs))), {d: ("given",) for d in cutoffs}, "given", ())
    else:
        plan = plan_cutoffs(dates, _first_valid_dates(full, cols), k, seed, mode=mode,
                            boundaries=row_boundaries(bars, index_bars))
    cuts = list(plan.dates)
    stats = {
        c: {"n": 0, "d": None, "first": None, "ticker": None, "cut": None, "var": None, "cmp": 0} for c in cols
    }
    for cut in cuts:
        full_c = full.filter(pl.col("date") <= cut)
        i = bisect.bisect_right(dates, cut) - 1  # index of the last trading date <= cut
        if garbage_horizon is None or i + garbage_horizon >= len(dates):
            hi = None
        else:
            hi = dates[i + garbage_horizon]
        for variant in VARIANTS:
            if variant == "truncated":
                vb = bars.filter(pl.col("date") <= cut)
                vi = None if index_bars is None else index_bars.filter(pl.col("date") <= cut)
            else:
                vb = bars if hi is None else bars.filter(pl.col("date") <= hi)
                vb = _garble(vb, cut, rng, ("ticker", "date"))
                vi = None
                if index_bars is not None:
                    vi = index_bars if hi is None else index_bars.filter(pl.col("date") <= hi)
                    vi = _garble(vi, cut, rng, ("symbol", "date"))
            out = _call(feature_fn, vb, vi)
            absent = [c for c in (*keys, *cols) if c not in out.columns]
            if absent:
                raise ValueError(f"feature output on the {variant} history lacks columns {absent}")
            out = out.filter(pl.col("date") <= cut)  # (an empty output has no max date to compare)
            var = out.select(*keys, *cols)
            positional = _same_keys(full_c, var, keys)
            # fast path: bit-identical columns (nulls and NaNs in the same places) need no tolerance test
            todo = [c for c in cols if not positional or not full_c.get_column(c).equals(var.get_column(c))]
            result: dict[str, tuple[int, float | None, date | None]] = {c: (0, 0.0, None) for c in cols}
            mis: dict[str, pl.Expr] = {}
            aligned = None
            if todo:
                aligned = _aligned(full_c, var, keys, todo, positional)
                detail, mis = _compare(aligned, todo, rtol, atol)
                result.update(detail)
            for c, (n_mis, dmax, first) in result.items():
                s = stats[c]
                s["cmp"] += full_c.height
                s["n"] += n_mis
                if dmax is not None and not np.isnan(dmax):
                    s["d"] = dmax if s["d"] is None else max(s["d"], dmax)
                if first is not None and (s["first"] is None or first < s["first"]):
                    ticker = _offending_ticker(aligned, mis[c], first, keys)
                    s.update(first=first, cut=cut, var=variant, ticker=ticker)

    checks = tuple(
        FeatureCheck(
            feature=c,
            passed=stats[c]["n"] == 0,
            n_cutoffs=len(cuts),
            n_compared=stats[c]["cmp"],
            n_mismatches=stats[c]["n"],
            max_abs_diff=stats[c]["d"],
            first_offending_date=stats[c]["first"],
            first_offending_ticker=stats[c]["ticker"],
            first_offending_cutoff=stats[c]["cut"],
            first_offending_variant=stats[c]["var"],
        )
        for c in cols
    )
    notes = ()
    if not cuts:
        notes = ("no cutoff could be chosen (empty history): nothing was checked",)
    return LookaheadReport(
        checks=checks,
        cutoffs=tuple(cuts),
        rtol=rtol,
        atol=atol,
        n_rows=full.height,
        elapsed_s=time.perf_counter() - t0,
        garbage_horizon=garbage_horizon,
        notes=notes,
        mode=plan.mode,
        classes_available=plan.available,
        reasons=tuple((d, plan.reasons[d]) for d in cuts),
    )

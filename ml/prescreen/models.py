"""Prescreen classifiers: P(buy label) and P(sell label) per (ticker, date), one model per VIX regime.

Six slots = {buy, sell} × {low, moderate, high} model regimes (VIX band of the row's date,
extreme -> high; see :mod:`ml.regimes.vix`). Each slot is an equal-weight average of the
positive-class probabilities of a RandomForestClassifier and a HistGradientBoostingClassifier,
whose hyper-parameters are picked from small grids by purged k-fold CV (:mod:`ml.prescreen.cv`)
inside the fold's train window.

Timing. Inputs of a row dated t (features, VIX band) are known at the close of t; its label
``buy_<h>d`` / ``sell_<h>d`` describes closes t+1 … t+h (known at the close of ``label_end``, the
ticker's row h sessions later). Training rows satisfy train_start <= t and label_end <= train_end
(the label horizon is purged from the train end, on top of the fold's embargo), so a slot never
sees a test-window row or a label that reaches into the test window; the dates, tickers and label
ends of its training rows are recorded in :class:`SlotModel` for audits.

Generations (causal scores on the train window too). The train window's trading dates are split
into ``generations`` contiguous blocks 0 … G-1 (equal numbers of dates). Generation g = 1 … G-1
("g1", "g2", …) is a full set of six slots trained like the final one, but only on rows whose
label ended before block g starts (label_end < its ``valid_from`` = first date of block g); it
scores the dates of block g up to the next generation's ``valid_from``. The final generation
("final") is trained on label_end <= train_end and scores every date after train_end (embargo,
test window, live dates). So a score dated t always uses features known at the close of t and
models whose training labels all ended strictly before t; dates of block 0 (and before the
train window) are unscored. With ``generations=1`` only the final generation exists.

Sub-sampling: labels of consecutive days overlap (h-day windows), so by default only every
``sample_every``-th trading day of each ticker is used for training (offset staggered per ticker,
so every date still contributes), which cuts fitting time ~``sample_every``× at little
information cost. Hyper-parameter CV runs on at most ``cv_max_rows`` rows of a slot.
"""
from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field
# imported at module load on purpose: threadpoolctl can only cap the OpenMP runtime of libraries
# already loaded when ``threadpool_limits`` is entered (a lazy import inside it runs HGB multi-threaded)
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.metrics import roc_auc_score
from threadpoolctl import threadpool_limits

from ml.features import FEATURE_NAMES
from ml.folds import Fold
from ml.labels import PRIMARY_HORIZON
from ml.prescreen.cv import purged_kfold
from ml.regimes.vix import MODEL_REGIMES, vol_regime_expr

log = logging.getLogger(__name__)

SIDES: tuple[str, str] = ("buy", "sell")
REGIMES: tuple[str, ...] = MODEL_REGIMES
KEYS = ("ticker", "date")

DEFAULT_RF_GRID: tuple[dict[str, Any], ...] = (
    {"max_depth": 6, "min_samples_leaf": 100},
    {"max_depth": 10, "min_samples_leaf": 200},
)
DEFAULT_HGB_GRID: tuple[dict[str, Any], ...] = (
    {"learning_rate": 0.05, "max_iter": 100, "max_leaf_nodes": 15, "min_samples_leaf": 100},
    {"learning_rate": 0.1, "max_iter": 100, "max_leaf_nodes": 31, "min_samples_leaf": 200, "l2_regularization": 1.0},
)


class PrescreenConfig(BaseModel):
    """Prescreen settings. ``horizon``: label horizon h in trading days (labels ``buy_<h>d``...)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    horizon: int = Field(default=PRIMARY_HORIZON, ge=1)
    # None: the registry's FEATURE_NAMES present in the input (else every Float column but the keys)
    feature_columns: tuple[str, ...] | None = None
    sample_every: int = Field(default=5, ge=1)
    cv_splits: int = Field(default=3, ge=2)
    cv_max_rows: int = Field(default=4000, ge=100)
    rf_n_estimators: int = Field(default=100, ge=1)
    rf_max_samples: float | None = Field(default=0.3, gt=0, le=1)  # bootstrap fraction per tree
    rf_grid: tuple[dict[str, Any], ...] = DEFAULT_RF_GRID
    hgb_grid: tuple[dict[str, Any], ...] = DEFAULT_HGB_GRID
    n_jobs: int = Field(default=2, ge=1)  # worker processes across slots (of all generations)
    # forward generations: the train window is split into this many date blocks; see the module docstring.
    # 1 = only the final models (train window unscored); a policy that observes the scores needs >= 2 (the
    # prescreen asset uses 3 then)
    generations: int = Field(default=1, ge=1)
    min_rows: int = Field(default=200, ge=1)
    min_class_count: int = Field(default=20, ge=1)
    seed: int = 0

    @property
    def buy_column(self) -> str:
        return f"buy_{self.horizon}d"

    @property
    def sell_column(self) -> str:
        return f"sell_{self.horizon}d"


@dataclass
class SlotModel:
    """One (side, regime) classifier. ``constant`` is set (and ``estimators`` empty) when the slot
    had too few rows or positives to fit: it then predicts its training base rate."""

    side: str
    regime: str
    label_column: str
    estimators: tuple[Any, ...]
    constant: float | None
    rf_params: dict[str, Any]
    hgb_params: dict[str, Any]
    cv_results: list[dict[str, Any]]
    n_train: int
    n_positive: int
    train_dates: np.ndarray  # datetime64[D], one per training row
    train_tickers: np.ndarray  # str, one per training row
    train_label_end: np.ndarray  # datetime64[D], one per training row
    fit_seconds: float = 0.0  # wall time of tuning + fitting
    fit_cpu_seconds: float = 0.0  # CPU time of the fitting process (estimators are single-threaded)

    @property
    def base_rate(self) -> float:
        return self.n_positive / self.n_train if self.n_train else float("nan")

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Positive-class probability per row of X (finite features, model column order)."""
        n = X.shape[0]
        if self.constant is not None or n == 0:
            return np.full(n, self.constant if self.constant is not None else np.nan)
        X32 = np.ascontiguousarray(X, dtype=np.float32)  # the dtype the estimators were fitted on
        with threadpool_limits(limits=1):
            return np.mean([est.predict_proba(X32)[:, 1] for est in self.estimators], axis=0)


FINAL = "final"


@dataclass
class Generation:
    """Six slot models that score the dates in [``valid_from``, next generation's ``valid_from``).

    ``name``: "g1" … "g{G-1}" or "final". Every training label ended on or before ``label_cutoff``
    (the last trading date before ``valid_from``; train_end for the final generation, whose
    ``valid_from`` is the calendar day after train_end), so a score dated t >= valid_from comes
    from labels known at an earlier close.
    """

    name: str
    valid_from: date
    label_cutoff: date
    slots: dict[str, SlotModel]

    def slot(self, side: str, regime: str) -> SlotModel:
        return self.slots[slot_key(side, regime)]


@dataclass
class PrescreenModels:
    """The slot models of one fold: its generations (ordered by ``valid_from``; the last one is the
    final generation), configuration and feature order. ``slots`` / :meth:`slot` are the final
    generation's (test window and live scoring)."""

    fold: Fold
    config: PrescreenConfig
    feature_names: tuple[str, ...]
    generations: tuple[Generation, ...]
    fit_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # artifacts pickled before generations existed hold a single ``slots`` dict (the final models)
        if "generations" not in state:
            fold = state["fold"]
            slots = state.pop("slots")
            state["generations"] = (Generation(FINAL, fold.train_end + timedelta(days=1), fold.train_end, slots),)
        self.__dict__.update(state)

    @property
    def final(self) -> Generation:
        return self.generations[-1]

    @property
    def slots(self) -> dict[str, SlotModel]:
        return self.final.slots

    def slot(self, side: str, regime: str) -> SlotModel:
        return self.final.slot(side, regime)

    def summary_frame(self) -> pl.DataFrame:
        """One row per generation and slot: fold, generation ("g1", …, "final"), its valid_from and
        label_cutoff, side, regime, sizes, base rate, chosen params, CV AUCs, fit time."""
        import json

        rows = []
        for g in self.generations:
            for s in g.slots.values():
                best = {r["family"]: r["mean_auc"] for r in s.cv_results if r.get("chosen")}
                rows.append(
                    {
                        "fold": self.fold.key,
                        "generation": g.name,
                        "valid_from": g.valid_from,
                        "label_cutoff": g.label_cutoff,
                        "side": s.side,
                        "regime": s.regime,
                        "label_column": s.label_column,
                        "n_train": s.n_train,
                        "n_positive": s.n_positive,
                        "base_rate": s.base_rate,
                        "fallback_constant": s.constant,
                        "rf_params": json.dumps(s.rf_params, sort_keys=True),
                        "hgb_params": json.dumps(s.hgb_params, sort_keys=True),
                        "cv_auc_rf": best.get("rf"),
                        "cv_auc_hgb": best.get("hgb"),
                        "train_first_date": _first(s.train_dates, min),
                        "train_last_date": _first(s.train_dates, max),
                        "train_last_label_end": _first(s.train_label_end, max),
                        "fit_seconds": s.fit_seconds,
                        "fit_cpu_seconds": s.fit_cpu_seconds,
                    }
                )
        schema = {
            "fold": pl.Utf8, "generation": pl.Utf8, "valid_from": pl.Date, "label_cutoff": pl.Date, "side": pl.Utf8,
            "regime": pl.Utf8, "label_column": pl.Utf8, "n_train": pl.Int64, "n_positive": pl.Int64,
            "base_rate": pl.Float64, "fallback_constant": pl.Float64, "rf_params": pl.Utf8, "hgb_params": pl.Utf8,
            "cv_auc_rf": pl.Float64, "cv_auc_hgb": pl.Float64, "train_first_date": pl.Date,
            "train_last_date": pl.Date, "train_last_label_end": pl.Date, "fit_seconds": pl.Float64,
            "fit_cpu_seconds": pl.Float64,
        }
        return pl.DataFrame(rows, schema=schema)


def _first(a: np.ndarray, fn) -> date | None:
    return fn(a).astype("datetime64[D]").astype(date) if a.size else None


def slot_key(side: str, regime: str) -> str:
    return f"{side}/{regime}"


# ----------------------------------------------------------------------------- data assembly
def feature_columns(features: pl.DataFrame, config: PrescreenConfig) -> list[str]:
    if config.feature_columns is not None:
        missing = [c for c in config.feature_columns if c not in features.columns]
        if missing:
            raise ValueError(f"feature columns not in the features frame: {missing}")
        return list(config.feature_columns)
    known = [c for c in FEATURE_NAMES if c in features.columns]
    if known:  # feature-store columns, registry order (ignores any other column of the frame)
        return known
    return [c for c, t in features.schema.items() if c not in KEYS and t.is_float()]


def _with_regime(frame: pl.DataFrame, vix_regimes: pl.DataFrame) -> pl.DataFrame:
    band = vix_regimes.select(pl.col("date").cast(pl.Date), "band").unique("date", keep="last")
    out = frame.join(band, on="date", how="left", maintain_order="left")
    return out.with_columns(vol_regime_expr("band").alias("regime")).drop("band")


def model_rows(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    vix_regimes: pl.DataFrame,
    config: PrescreenConfig,
    cols: Sequence[str],
) -> pl.DataFrame:
    """features ⋈ labels (buy/sell columns of the horizon + ``label_end``) ⋈ regime, sorted by ticker, date."""
    lab = labels.sort(KEYS).select(
        *KEYS,
        pl.col(config.buy_column).alias("buy"),
        pl.col(config.sell_column).alias("sell"),
        pl.col("date").shift(-config.horizon).over("ticker").alias("label_end"),
    )
    frame = features.select(*KEYS, *cols).join(lab, on=list(KEYS), how="left")
    return _with_regime(frame, vix_regimes).sort(KEYS)


def _finite_rows(frame: pl.DataFrame, cols: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(X float64 N × F, mask of rows whose features are all finite)."""
    X = frame.select([pl.col(c).cast(pl.Float64) for c in cols]).to_numpy()
    return X, np.isfinite(X).all(axis=1)


def training_rows(
    frame: pl.DataFrame, fold: Fold, config: PrescreenConfig, label_cutoff: date | None = None
) -> pl.DataFrame:
    """Rows usable for training in ``fold``: train_start <= date, label_end <= ``label_cutoff``
    (default train_end; a generation's last label date), label and regime known, then every
    ``sample_every``-th trading day per ticker (staggered offsets, fixed by the frame's calendar, so
    an earlier cutoff selects a subset of the same rows)."""
    cutoff = fold.train_end if label_cutoff is None else label_cutoff
    if cutoff > fold.train_end:
        raise ValueError(f"label_cutoff {cutoff} is after the train end {fold.train_end} of fold {fold.key}")
    cal = frame.get_column("date").unique().sort()
    day_idx = pl.DataFrame({"date": cal, "_day": np.arange(len(cal), dtype=np.int64)})
    step = config.sample_every
    tickers = frame.get_column("ticker").unique().sort()
    offsets = pl.DataFrame(
        {"ticker": tickers, "_off": [zlib.crc32(t.encode()) % step for t in tickers.to_list()]},
        schema={"ticker": pl.Utf8, "_off": pl.Int64},
    )
    out = (
        frame.filter(
            (pl.col("date") >= fold.train_start)
            & (pl.col("date") <= cutoff)
            & pl.col("label_end").is_not_null()
            & (pl.col("label_end") <= cutoff)
            & pl.col("regime").is_not_null()
        )
        .join(day_idx, on="date", how="left")
        .join(offsets, on="ticker", how="left")
        .filter((pl.col("_day") + pl.col("_off")) % step == 0)
        .drop("_day", "_off")
    )
    return out


def generation_bounds(calendar: Any, fold: Fold, generations: int) -> list[tuple[str, date, date]]:
    """(name, valid_from, label_cutoff) per generation, oldest first.

    ``calendar``: the trading dates of the model rows. Its dates in [train_start, train_end] are
    split into ``generations`` contiguous blocks (``np.array_split``); generation g = 1 … G-1 starts
    at block g's first date and its labels end by the last date of block g-1; the final generation
    starts the calendar day after train_end and its labels end by train_end.
    """
    cal = np.unique(np.asarray(calendar, dtype="datetime64[D]"))
    window = cal[(cal >= np.datetime64(fold.train_start, "D")) & (cal <= np.datetime64(fold.train_end, "D"))]
    if generations > 1 and window.size < generations:
        raise ValueError(f"fold {fold.key}: {window.size} train dates for {generations} generations")
    blocks = np.array_split(window, generations)
    out = [(f"g{g}", blocks[g][0].astype(date), blocks[g - 1][-1].astype(date)) for g in range(1, generations)]
    return [*out, (FINAL, fold.train_end + timedelta(days=1), fold.train_end)]


# ----------------------------------------------------------------------------- fitting
def _rf(params: dict[str, Any], config: PrescreenConfig):
    return RandomForestClassifier(
        n_estimators=config.rf_n_estimators,
        max_features="sqrt",
        max_samples=config.rf_max_samples,
        n_jobs=1,
        random_state=config.seed,
        **params,
    )


def _hgb(params: dict[str, Any], config: PrescreenConfig):
    return HistGradientBoostingClassifier(early_stopping=False, random_state=config.seed, **params)


_FACTORIES = {"rf": _rf, "hgb": _hgb}


def _select_params(
    X: np.ndarray,
    y: np.ndarray,
    dates: np.ndarray,
    label_end: np.ndarray,
    calendar: np.ndarray,
    config: PrescreenConfig,
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Best params per family by mean validation ROC AUC over purged k-fold splits."""
    n = X.shape[0]
    if n > config.cv_max_rows:
        rng = np.random.default_rng(config.seed)
        keep = np.sort(rng.choice(n, config.cv_max_rows, replace=False))
        X, y, dates, label_end = X[keep], y[keep], dates[keep], label_end[keep]
    splits = purged_kfold(dates, label_end, config.cv_splits, embargo_days=config.horizon, calendar=calendar)
    grids = {"rf": config.rf_grid, "hgb": config.hgb_grid}
    results: list[dict[str, Any]] = []
    best: dict[str, dict[str, Any]] = {}
    for family, grid in grids.items():
        scored = []
        for params in grid:
            aucs = []
            for tr, va in splits:
                if len(np.unique(y[tr])) < 2 or len(np.unique(y[va])) < 2:
                    continue
                est = _FACTORIES[family](params, config).fit(X[tr], y[tr])
                aucs.append(roc_auc_score(y[va], est.predict_proba(X[va])[:, 1]))
            mean = float(np.mean(aucs)) if aucs else float("nan")
            scored.append(mean)
            results.append({"family": family, "params": dict(params), "mean_auc": mean, "n_splits": len(aucs)})
        i = int(np.nanargmax(scored)) if np.isfinite(scored).any() else 0
        best[family] = dict(grid[i])
        results[len(results) - len(grid) + i]["chosen"] = True
    return best, results


@dataclass
class _SlotData:
    side: str
    regime: str
    label_column: str
    X: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    label_end: np.ndarray
    tickers: np.ndarray


def _slot_data(rows: pl.DataFrame, side: str, regime: str, cols: Sequence[str], config: PrescreenConfig) -> _SlotData:
    label_col = config.buy_column if side == "buy" else config.sell_column
    sub = rows.filter((pl.col("regime") == regime) & pl.col(side).is_not_null())
    X, ok = _finite_rows(sub, cols)
    sub = sub.filter(pl.Series(ok))
    return _SlotData(
        side=side,
        regime=regime,
        label_column=label_col,
        X=np.ascontiguousarray(X[ok], dtype=np.float32),
        y=sub.get_column(side).to_numpy().astype(np.int64),
        dates=sub.get_column("date").to_numpy().astype("datetime64[D]"),
        label_end=sub.get_column("label_end").to_numpy().astype("datetime64[D]"),
        tickers=sub.get_column("ticker").to_numpy().astype(str),
    )


def _fit_slot(d: _SlotData, calendar: np.ndarray, config: PrescreenConfig) -> SlotModel:
    """Tune (purged CV) and fit one slot; single-threaded estimators (parallelism is across slots)."""
    t0, c0 = time.perf_counter(), time.process_time()
    n, n_pos = int(d.y.size), int(d.y.sum())
    common = dict(
        side=d.side, regime=d.regime, label_column=d.label_column, n_train=n, n_positive=n_pos,
        train_dates=d.dates, train_tickers=d.tickers, train_label_end=d.label_end,
    )
    if n < config.min_rows or min(n_pos, n - n_pos) < config.min_class_count:
        const = n_pos / n if n else 0.0
        log.warning(
            "prescreen %s/%s: %d rows, %d positives -> constant base rate %.3f", d.side, d.regime, n, n_pos, const
        )
        return SlotModel(
            estimators=(), constant=const, rf_params={}, hgb_params={}, cv_results=[],
            fit_seconds=time.perf_counter() - t0, fit_cpu_seconds=time.process_time() - c0, **common,
        )
    # one thread per fit: OpenMP (HGB) spinning on a busy 2-core machine costs up to 10x
    with threadpool_limits(limits=1):
        best, results = _select_params(d.X, d.y, d.dates, d.label_end, calendar, config)
        rf = _rf(best["rf"], config).fit(d.X, d.y)
        hgb = _hgb(best["hgb"], config).fit(d.X, d.y)
    return SlotModel(
        estimators=(rf, hgb), constant=None, rf_params=best["rf"], hgb_params=best["hgb"], cv_results=results,
        fit_seconds=time.perf_counter() - t0, fit_cpu_seconds=time.process_time() - c0, **common,
    )


def train_prescreen(
    features: pl.DataFrame,
    labels: pl.DataFrame,
    vix_regimes: pl.DataFrame,
    fold: Fold,
    config: PrescreenConfig | None = None,
) -> PrescreenModels:
    """Fit the six slot models of every generation of ``fold`` inside its train window.

    ``features``: (ticker, date, Float features…) from the feature store; ``labels``:
    :func:`ml.labels.compute_labels` output (needs ``buy_<h>d``/``sell_<h>d``); ``vix_regimes``:
    :func:`ml.regimes.vix.vix_regimes` output (date, band). Rows with a null/non-finite feature,
    label or regime are skipped. See the module docstring for the row selection and generations.
    Each generation's CV calendar ends before its ``valid_from``, so it depends on nothing dated
    later. All slots of all generations are fitted in ``config.n_jobs`` worker processes (largest
    first), each estimator single-threaded.
    """
    cfg = config or PrescreenConfig()
    t0 = time.perf_counter()
    cols = feature_columns(features, cfg)
    frame = model_rows(features, labels, vix_regimes, cfg, cols)
    calendar = frame.get_column("date").unique().sort().to_numpy().astype("datetime64[D]")
    bounds = generation_bounds(calendar, fold, cfg.generations)
    jobs: list[tuple[int, _SlotData, np.ndarray]] = []
    for g, (_, valid_from, cutoff) in enumerate(bounds):
        rows = training_rows(frame, fold, cfg, label_cutoff=cutoff)
        cal_g = calendar[calendar < np.datetime64(valid_from, "D")]
        jobs += [(g, _slot_data(rows, side, regime, cols, cfg), cal_g) for side in SIDES for regime in REGIMES]
    order = sorted(range(len(jobs)), key=lambda i: -jobs[i][1].y.size)
    if cfg.n_jobs > 1:
        from joblib import Parallel, delayed

        fitted = Parallel(n_jobs=cfg.n_jobs, backend="loky")(
            delayed(_fit_slot)(jobs[i][1], jobs[i][2], cfg) for i in order
        )
    else:
        fitted = [_fit_slot(jobs[i][1], jobs[i][2], cfg) for i in order]
    by_index = dict(zip(order, fitted))
    slots: list[dict[str, SlotModel]] = [{} for _ in bounds]
    for i, (g, d, _) in enumerate(jobs):
        s = by_index[i]
        name, valid_from, cutoff = bounds[g]
        # hard guarantees, whatever the inputs: every training label ended before the generation's
        # first scored date (final: by train_end, so nothing from or reaching into the test window)
        if s.n_train:
            assert s.train_dates.min() >= np.datetime64(fold.train_start, "D")
            assert s.train_dates.max() <= np.datetime64(cutoff, "D")
            assert s.train_label_end.max() <= np.datetime64(cutoff, "D") <= np.datetime64(fold.train_end, "D")
            assert s.train_label_end.max() < np.datetime64(valid_from, "D")
        slots[g][slot_key(d.side, d.regime)] = s
        log.info("prescreen %s %s/%s: %d rows, %.1f s", name, d.side, d.regime, s.n_train, s.fit_seconds)
    gens = tuple(Generation(name, vf, cut, slots[g]) for g, (name, vf, cut) in enumerate(bounds))
    return PrescreenModels(
        fold=fold, config=cfg, feature_names=tuple(cols), generations=gens, fit_seconds=time.perf_counter() - t0
    )


# ----------------------------------------------------------------------------- scoring
SCORES_SCHEMA: dict[str, pl.DataType] = {
    "ticker": pl.Utf8,
    "date": pl.Date,
    "regime": pl.Utf8,
    "buy_probability": pl.Float64,
    "sell_probability": pl.Float64,
    "generation": pl.Utf8,
}


def _date_filter(frame: pl.DataFrame, dates: Any, start: date | None, end: date | None) -> pl.DataFrame:
    if dates is not None:
        ds = dates if isinstance(dates, pl.Series) else pl.Series("date", list(dates), dtype=pl.Date)
        frame = frame.filter(pl.col("date").is_in(ds.cast(pl.Date).implode()))
    if start is not None:
        frame = frame.filter(pl.col("date") >= start)
    if end is not None:
        frame = frame.filter(pl.col("date") <= end)
    return frame


def score_prescreen(
    models: PrescreenModels,
    features: pl.DataFrame,
    vix_regimes: pl.DataFrame,
    dates: Sequence[date] | pl.Series | None = None,
    *,
    start: date | None = None,
    end: date | None = None,
) -> pl.DataFrame:
    """Buy/sell probabilities per (ticker, date), routed by date to a generation, then by regime.

    Rows: every feature row in ``dates`` (if given) and [start, end]. ``generation`` is the newest
    generation with valid_from <= date ("g1", …, "final"; null before the first one, i.e. in block 0
    of the train window and earlier), so a score dated t uses features known at the close of t and
    models whose training labels all ended before t (the final generation's by train_end; the
    fold's embargo separates train_end from the test start). ``regime`` (low / moderate / high) is
    the VIX band of the row's date (known at the close of t). Both probabilities are null where
    no generation applies, a feature is null or the regime is unknown. Schema :data:`SCORES_SCHEMA`.
    """
    frame = _date_filter(features.select(*KEYS, *models.feature_names), dates, start, end)
    frame = _with_regime(frame, vix_regimes).sort(KEYS)
    X, ok = _finite_rows(frame, models.feature_names)
    regime = frame.get_column("regime").to_numpy()
    gens = models.generations
    starts = np.array([g.valid_from for g in gens], dtype="datetime64[D]")
    gi = np.searchsorted(starts, frame.get_column("date").to_numpy().astype("datetime64[D]"), side="right") - 1
    buy = np.full(frame.height, np.nan)
    sell = np.full(frame.height, np.nan)
    for k, gen in enumerate(gens):
        in_gen = ok & (gi == k)
        for r in REGIMES:
            idx = in_gen & (regime == r)
            if idx.any():
                buy[idx] = gen.slot("buy", r).predict_proba(X[idx])
                sell[idx] = gen.slot("sell", r).predict_proba(X[idx])
    names = pl.Series("generation", gi).replace_strict(
        {k: g.name for k, g in enumerate(gens)}, default=None, return_dtype=pl.Utf8
    )  # gi == -1 (before the first generation): null
    out = frame.select(*KEYS, "regime").with_columns(
        pl.Series("buy_probability", buy), pl.Series("sell_probability", sell), names
    )
    return out.with_columns(pl.col("buy_probability", "sell_probability").fill_nan(None)).select(
        [pl.col(c).cast(t) for c, t in SCORES_SCHEMA.items()]
    )

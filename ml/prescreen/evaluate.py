"""Out-of-sample evaluation of prescreen models on a fold's test window.

Per model slot (side × regime) and per side over all regimes (routed scores, ``regime="all"``):
ROC AUC, precision at top-k (per day: the top ``top_fraction`` of that day's scored rows, or the
top ``top_k`` names), lift (precision / base rate), Brier score, the Brier score of always
predicting the test base rate (climatology), and a calibration table (``n_bins`` equal-width bins).

Baseline: with fixed +/- theta thresholds both labels largely mean "the stock moves a lot", so a
single volatility feature already ranks them; ``baseline_roc_auc`` is the ROC AUC of
``baseline_feature`` (default ``atr_pct_14``, ATR as a fraction of price) used as the score on the
same rows. A model is only useful where it beats that number.

Timing: scores dated t use data known at the close of t (and models whose training labels all
ended before t, see :mod:`ml.prescreen.models`); labels dated t are realised at the close of t+h
and are used here only as the outcome.

``generation`` column of the metrics: "final" for the default test window (scored by the final
generation; "all" when a custom window starts inside the train window, where scores come from
several generations). With ``per_generation=True`` each earlier generation ("g1", …) is also
evaluated out of sample on the train-window dates it scores, on rows whose label ended by
train_end (no calibration rows for those).
"""
from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import polars as pl
from sklearn.metrics import roc_auc_score

from ml.prescreen.cv import label_end_dates
from ml.prescreen.models import FINAL, KEYS, REGIMES, SIDES, PrescreenModels, score_prescreen

METRICS_SCHEMA: dict[str, pl.DataType] = {
    "fold": pl.Utf8,
    "generation": pl.Utf8,
    "side": pl.Utf8,
    "regime": pl.Utf8,
    "n_rows": pl.Int64,
    "n_days": pl.Int64,
    "n_positive": pl.Int64,
    "base_rate": pl.Float64,
    "mean_probability": pl.Float64,
    "roc_auc": pl.Float64,
    "precision_at_k": pl.Float64,
    "lift_at_k": pl.Float64,
    "brier": pl.Float64,
    "brier_climatology": pl.Float64,
    "baseline_feature": pl.Utf8,
    "baseline_roc_auc": pl.Float64,
}
CALIBRATION_SCHEMA: dict[str, pl.DataType] = {
    "fold": pl.Utf8,
    "side": pl.Utf8,
    "regime": pl.Utf8,
    "bin": pl.Int64,
    "bin_low": pl.Float64,
    "bin_high": pl.Float64,
    "n_rows": pl.Int64,
    "mean_probability": pl.Float64,
    "observed_rate": pl.Float64,
}


def precision_at_k(
    frame: pl.DataFrame, prob: str, label: str, top_fraction: float = 0.1, top_k: int | None = None
) -> float:
    """Mean label of the top rows per date by ``prob`` (top ``top_k`` names, else ceil(fraction × n))."""
    if frame.height == 0:
        return float("nan")
    n_day = pl.len().over("date")
    k = pl.lit(top_k) if top_k is not None else (n_day * top_fraction).ceil().clip(lower_bound=1)
    rank = pl.col(prob).rank("ordinal", descending=True).over("date")
    sel = frame.filter(rank <= k)
    return float(sel.get_column(label).mean()) if sel.height else float("nan")


def _metrics(frame: pl.DataFrame, prob: str, label: str, top_fraction: float, top_k: int | None) -> dict[str, Any]:
    y = frame.get_column(label).to_numpy().astype(float)
    p = frame.get_column(prob).to_numpy().astype(float)
    n = y.size
    base = float(y.mean()) if n else float("nan")
    auc = float(roc_auc_score(y, p)) if n and 0 < y.sum() < n else float("nan")
    prec = precision_at_k(frame, prob, label, top_fraction, top_k)
    return {
        "n_rows": n,
        "n_days": frame.get_column("date").n_unique(),
        "n_positive": int(y.sum()),
        "base_rate": base,
        "mean_probability": float(p.mean()) if n else float("nan"),
        "roc_auc": auc,
        "precision_at_k": prec,
        "lift_at_k": prec / base if n and base > 0 else float("nan"),
        "brier": float(np.mean((p - y) ** 2)) if n else float("nan"),
        "brier_climatology": float(base * (1 - base)) if n else float("nan"),
    }


def _auc(frame: pl.DataFrame, score: str, label: str) -> float:
    sub = frame.filter(pl.col(score).is_not_null() & pl.col(score).is_finite())
    y = sub.get_column(label).to_numpy().astype(float)
    if y.size == 0 or not 0 < y.sum() < y.size:
        return float("nan")
    return float(roc_auc_score(y, sub.get_column(score).to_numpy().astype(float)))


def calibration_table(p: np.ndarray, y: np.ndarray, n_bins: int = 10) -> pl.DataFrame:
    """Equal-width probability bins on [0, 1]: bin, bin_low, bin_high, n_rows, mean_probability, observed_rate."""
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    b = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    cnt = np.bincount(b, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mp = np.bincount(b, weights=p, minlength=n_bins) / cnt
        obs = np.bincount(b, weights=y, minlength=n_bins) / cnt
    return pl.DataFrame(
        {
            "bin": np.arange(n_bins, dtype=np.int64),
            "bin_low": edges[:-1],
            "bin_high": edges[1:],
            "n_rows": cnt.astype(np.int64),
            "mean_probability": mp,
            "observed_rate": obs,
        },
        nan_to_null=True,
    )


def _side_metrics(
    scored: pl.DataFrame,
    key: str,
    generation: str,
    base: str | None,
    top_fraction: float,
    top_k: int | None,
    n_bins: int | None,
) -> tuple[list[dict[str, Any]], list[pl.DataFrame]]:
    """Metric rows (and calibration tables unless ``n_bins`` is None) per side × (regimes, "all")."""
    metric_rows, calib = [], []
    for side in SIDES:
        prob = f"{side}_probability"
        valid = scored.filter(pl.col(prob).is_not_null() & pl.col(side).is_not_null())
        for regime in (*REGIMES, "all"):
            sub = valid if regime == "all" else valid.filter(pl.col("regime") == regime)
            stats = _metrics(sub, prob, side, top_fraction, top_k)
            stats["baseline_feature"] = base
            stats["baseline_roc_auc"] = _auc(sub, "_baseline", side) if base is not None else None
            metric_rows.append({"fold": key, "generation": generation, "side": side, "regime": regime, **stats})
            if n_bins is not None:
                tab = calibration_table(
                    sub.get_column(prob).to_numpy().astype(float), sub.get_column(side).to_numpy().astype(float), n_bins
                )
                calib.append(
                    tab.with_columns(
                        pl.lit(key).alias("fold"), pl.lit(side).alias("side"), pl.lit(regime).alias("regime")
                    )
                )
    return metric_rows, calib


def evaluate_prescreen(
    models: PrescreenModels,
    features: pl.DataFrame,
    labels: pl.DataFrame,
    vix_regimes: pl.DataFrame,
    *,
    start: date | None = None,
    end: date | None = None,
    top_fraction: float = 0.1,
    top_k: int | None = None,
    n_bins: int = 10,
    baseline_feature: str | None = "atr_pct_14",
    per_generation: bool = False,
) -> dict[str, pl.DataFrame]:
    """Test-window metrics of every slot: ``{"metrics", "calibration", "scores"}`` frames.

    Window: [start, end], default the fold's test window (final generation). Only rows with a score
    and a non-null label count (labels at the end of the data are null). ``scores`` is the scored
    frame joined with the ``buy``/``sell`` labels of the horizon. ``per_generation``: add metrics
    rows of each earlier generation on its train-window dates (labels ended by train_end).
    """
    cfg, fold = models.config, models.fold
    s, e = start or fold.test_start, end or fold.test_end
    lab = labels.select(*KEYS, pl.col(cfg.buy_column).alias("buy"), pl.col(cfg.sell_column).alias("sell"))
    base = baseline_feature if baseline_feature in features.columns else None
    extra = features.select(*KEYS, pl.col(base).alias("_baseline")) if base is not None else None

    def scored_rows(scores: pl.DataFrame) -> pl.DataFrame:
        out = scores.join(lab, on=list(KEYS), how="left", maintain_order="left")
        return out if extra is None else out.join(extra, on=list(KEYS), how="left", maintain_order="left")

    scored = scored_rows(score_prescreen(models, features, vix_regimes, start=s, end=e))
    generation = FINAL if s > fold.train_end else "all"  # "all": a window reaching into the train window
    metric_rows, calib = _side_metrics(scored, fold.key, generation, base, top_fraction, top_k, n_bins)
    if per_generation and len(models.generations) > 1:
        ordered = labels.select(KEYS).sort(KEYS)
        ends = ordered.with_columns(label_end_dates(ordered, cfg.horizon))
        train = scored_rows(score_prescreen(models, features, vix_regimes, start=fold.train_start, end=fold.train_end))
        train = train.join(ends, on=list(KEYS), how="left").filter(pl.col("label_end") <= fold.train_end)
        for g in models.generations[:-1]:
            rows, _ = _side_metrics(
                train.filter(pl.col("generation") == g.name), fold.key, g.name, base, top_fraction, top_k, None
            )
            metric_rows += rows
    metrics = pl.DataFrame(metric_rows, schema=METRICS_SCHEMA).with_columns(pl.col(pl.Float64).fill_nan(None))
    calibration = pl.concat(calib).select([pl.col(c).cast(t) for c, t in CALIBRATION_SCHEMA.items()])
    return {"metrics": metrics, "calibration": calibration, "scores": scored.drop("_baseline", strict=False)}


__all__ = ["calibration_table", "evaluate_prescreen", "precision_at_k"]

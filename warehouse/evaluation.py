"""Evaluation tables (``eval.*``) and the analysts' stable views (``analytics.*``)."""
from __future__ import annotations

from importlib import resources

import polars as pl

from warehouse.db import Warehouse
from warehouse.tables import fold_write, write_many

DAILY = "eval.daily_returns"
ALLOCATIONS = "eval.allocations"
FOLD_METRICS = "eval.fold_metrics"
WF_DAILY = "eval.walk_forward_daily"
WF_METRICS = "eval.walk_forward_metrics"


def write_fold_evaluation(wh: Warehouse, fold: str, daily: pl.DataFrame, allocations: pl.DataFrame,
                          metrics: pl.DataFrame) -> None:
    """Replace one fold's rows in the three per-fold evaluation tables, together (one transaction)."""
    write_many(wh, [
        fold_write(DAILY, daily, fold, ["strategy", "date"],
                   "Test-window daily returns per fold and strategy (earned close t-1 → close t, net of costs)."),
        fold_write(ALLOCATIONS, allocations, fold, ["strategy", "date"],
                   "Weights held on each earned day (decided at the previous close) and the VIX at that close."),
        fold_write(FOLD_METRICS, metrics, fold, ["strategy", "cost_multiplier"],
                   "Test-window metrics per fold, strategy and cost multiplier (risk_free column states the rate)."),
    ])


def write_walk_forward(wh: Warehouse, daily: pl.DataFrame, metrics: pl.DataFrame) -> None:
    """The stitched track and its metrics (one transaction), then the analyst views."""
    write_many(wh, [
        (WF_DAILY, daily, ["strategy", "date"],
         "Stitched out-of-sample track of the default yearly folds, per strategy and day.", "", None),
        (WF_METRICS, metrics, ["strategy", "cost_multiplier"],
         "Walk-forward track metrics per strategy and cost multiplier.", "", None),
    ])
    publish_views(wh)


def publish_views(wh: Warehouse) -> None:
    """(Re)create the ``analytics.*`` views (documented in warehouse/README.md)."""
    sql = resources.files("warehouse").joinpath("views.sql").read_text()
    with wh.write() as con:
        con.execute(sql)

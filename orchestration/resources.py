"""Typed Dagster resources: the warehouse and the market-data source (with the universe config).

Defaults work out of the box; environment variables override them without code changes:
``REGIMEFLOW_WAREHOUSE`` (warehouse file), ``REGIMEFLOW_SOURCE`` (auto|csv|yahoo|synthetic),
``REGIMEFLOW_DATA_DIR`` (CSV snapshot directory).
"""
from __future__ import annotations

from datetime import date
from typing import Optional

import dagster as dg
from pydantic import Field

from ml.data.sources import Resolution, resolve_source
from ml.data.universe import ALLOCATION_ASSETS, INDICES, SECTOR_ETFS, Universe
from warehouse import Warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse. ``path`` None = ``$REGIMEFLOW_WAREHOUSE`` or ``data/warehouse/regimeflow.duckdb``."""

    path: Optional[str] = Field(default=None, description="Primary DuckDB file (pipeline only).")
    snapshot_path: Optional[str] = Field(
        default=None, description="Analysts' read-only snapshot; default <path stem>_read.duckdb next to it."
    )
    publish_snapshot: bool = Field(default=True, description="Publish the analyst snapshot after every write.")
    lock_timeout_s: float = Field(default=900.0, description="Seconds a step waits for another step's write.")

    def get(self) -> Warehouse:
        return Warehouse(self.path, self.snapshot_path, self.lock_timeout_s, self.publish_snapshot)


class MarketDataResource(dg.ConfigurableResource):
    """Where market data comes from and which universe to load."""

    source: Optional[str] = Field(
        default=None, description="auto | csv | yahoo | synthetic; None = $REGIMEFLOW_SOURCE or auto."
    )
    data_dir: Optional[str] = Field(default=None, description="CSV snapshot dir; None = $REGIMEFLOW_DATA_DIR.")
    synthetic_seed: int = Field(default=7, description="Seed of the synthetic market.")
    allocation: list[str] = Field(default_factory=lambda: list(ALLOCATION_ASSETS))
    sector_etfs: list[str] = Field(default_factory=lambda: list(SECTOR_ETFS))
    include_stocks: bool = Field(default=True, description="Load the stock universe (sectors.csv).")
    stocks: Optional[list[str]] = Field(default=None, description="Explicit stock list; None = all in sectors.csv.")
    indices: list[str] = Field(default_factory=lambda: list(INDICES))
    history_start: Optional[str] = Field(default="2005-01-01", description="First date loaded (ISO), inclusive.")
    history_end: Optional[str] = Field(default=None, description="Last date loaded (ISO), inclusive; None = all.")
    reference_ticker: str = Field(default="SPY", description="ETF whose trading days form ref.trading_calendar.")

    def universe(self) -> Universe:
        return Universe(
            allocation=self.allocation,
            sector_etfs=self.sector_etfs,
            include_stocks=self.include_stocks,
            stocks=self.stocks,
            indices=self.indices,
            history_start=date.fromisoformat(self.history_start) if self.history_start else None,
            history_end=date.fromisoformat(self.history_end) if self.history_end else None,
            reference_ticker=self.reference_ticker,
        )

    def resolve(self) -> Resolution:
        return resolve_source(self.source, self.data_dir, seed=self.synthetic_seed)


class FeatureStoreResource(dg.ConfigurableResource):
    """Feature-store settings shared by the features asset, its look-ahead check and the labels."""

    vix_lag_days: int = Field(
        default=0,
        description="Rows the VIX is lagged. 0: the 16:15 ET VIX close of t is known when the end-of-day "
        "decision for t is taken (this project's convention); 1: strict 16:00 ET information set.",
    )
    lookahead_cutoffs: int = Field(default=8, description="Cutoff dates K of the look-ahead check.")
    label_thresholds: dict[str, float] = Field(
        default_factory=lambda: {"1": 0.01, "5": 0.02, "21": 0.04},
        description="Buy/sell threshold per horizon in trading days (fraction: 0.02 = 2%).",
    )

    def config(self):
        from ml.features import FeatureConfig

        return FeatureConfig(vix_lag_days=self.vix_lag_days)

    def label_config(self):
        from ml.labels import LabelConfig

        thresholds = {int(h): v for h, v in self.label_thresholds.items()}
        return LabelConfig(horizons=tuple(sorted(thresholds)), thresholds=thresholds)

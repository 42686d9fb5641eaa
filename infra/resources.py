"""Typed Dagster resources: the warehouse and the market-data source (with the universe config).

Defaults work out of the box; environment variables override them without code changes:
``REGIMEFLOW_WAREHOUSE`` (warehouse file), ``REGIMEFLOW_SOURCE`` (auto|csv|yahoo|synthetic),
``REGIMEFLOW_DATA_DIR`` (CSV snapshot directory).
"""
from __future__ import annotations

from datetime import date
from pathlib import Path
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
    artifacts_dir: Optional[str] = Field(
        default=None, description="Model artifacts (weights, fitted transforms); default <warehouse dir>/artifacts."
    )

    def get(self) -> Warehouse:
        return Warehouse(self.path, self.snapshot_path, self.lock_timeout_s, self.publish_snapshot)

    reports_dir: Optional[str] = Field(default=None, description="HTML/PNG reports; default <warehouse dir>/reports.")

    def artifact_dir(self, fold: str) -> Path:
        root = Path(self.artifacts_dir) if self.artifacts_dir else self.get().path.parent / "artifacts"
        path = root / fold
        path.mkdir(parents=True, exist_ok=True)
        return path

    def report_dir(self) -> Path:
        path = Path(self.reports_dir) if self.reports_dir else self.get().path.parent / "reports"
        path.mkdir(parents=True, exist_ok=True)
        return path


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


class RegimeResource(dg.ConfigurableResource):
    """VIX band thresholds and sector-HMM settings (shared by regimes, prescreen and reports)."""

    band_edges: list[float] = Field(default_factory=lambda: [15.0, 20.0, 30.0],
                                    description="VIX edges of low | moderate | high | extreme.")
    bucket_edges: list[float] = Field(default_factory=lambda: [15.0, 20.0, 25.0, 35.0],
                                      description="VIX edges of calm | normal | elevated | stress | panic.")
    hmm_mode: str = Field(default="etf", description="etf: one sector ETF per sector; basket: equal-weighted stocks.")
    hmm_window: int = Field(default=20, description="Trailing window (trading days) of the HMM observations.")
    hmm_restarts: int = Field(default=5, description="EM restarts per sector HMM (best log-likelihood kept).")
    hmm_seed: int = 0

    def vix_config(self):
        from ml.regimes.vix import VixRegimeConfig

        return VixRegimeConfig(band_edges=tuple(self.band_edges), bucket_edges=tuple(self.bucket_edges))

    def hmm_config(self):
        from ml.regimes.hmm import HmmConfig

        return HmmConfig(mode=self.hmm_mode, window=self.hmm_window, restarts=self.hmm_restarts, seed=self.hmm_seed)


class PrescreenResource(dg.ConfigurableResource):
    """Prescreen classifier settings (label horizon, row subsampling, CV)."""

    horizon: int = Field(default=5, description="Label horizon h (trading days): buy_<h>d / sell_<h>d.")
    sample_every: int = Field(default=5, description="Train on every k-th trading day per ticker (labels overlap).")
    cv_splits: int = Field(default=3, description="Purged k-fold splits for hyper-parameter choice.")
    n_jobs: int = Field(default=2, description="Worker processes across the six model slots.")
    seed: int = 0

    def config(self):
        from ml.prescreen import PrescreenConfig

        return PrescreenConfig(horizon=self.horizon, sample_every=self.sample_every, cv_splits=self.cv_splits,
                               n_jobs=self.n_jobs, seed=self.seed)


class PolicyResource(dg.ConfigurableResource):
    """PPO policy training settings (environment and agent); defaults = the documented default profile."""

    reward: str = Field(default="vix_shaped", description="vix_shaped | vol_penalty | differential_sharpe | net")
    cost_bps: float = Field(default=5.0, description="Transaction cost on turnover, basis points.")
    episode_length: int = Field(default=1024, description="Trading days per training episode.")
    total_steps: int = Field(default=1_000_000, description="Environment steps (transitions) per fold "
                             "(default profile; the large profile uses 4M).")
    num_envs: int = Field(default=512, description="Environments stepped at once (batched torch env).")
    seed: int = 0
    device: str = Field(default="auto", description="auto (CUDA when available, else CPU) | cpu | cuda")

    def env_config(self):
        from ml.envs.portfolio import EnvConfig

        return EnvConfig(reward=self.reward, cost_rate=self.cost_bps / 1e4, episode_length=self.episode_length)

    def ppo_config(self):
        from ml.agents.ppo import PPOConfig

        return PPOConfig(total_steps=self.total_steps, num_envs=self.num_envs, seed=self.seed, device=self.device)


class RiskResource(dg.ConfigurableResource):
    """The circuit breaker above the policy (``ml.risk``): thresholds, and where it is switched on."""

    daily_enabled: bool = Field(default=True, description="Apply it to the daily decision (decisions/daily).")
    research_enabled: bool = Field(default=False, description="Also evaluate 'ppo_breaker' in research folds "
                                   "(eval/fold); the policy alone is always evaluated as 'ppo'.")
    vix_threshold: Optional[float] = Field(default=30.0, description="VIX close (index points) that trips it; "
                                           "None = no VIX trigger.")
    drawdown_limit: Optional[float] = Field(default=0.15, description="Trailing drawdown (fraction) that trips "
                                            "it; None = no drawdown trigger.")
    drawdown_window: int = Field(default=252, description="Sessions of the trailing equity peak.")
    max_equity_weight: float = Field(default=0.25, description="Cap on SPY+QQQ combined while tripped.")
    equity_assets: list[str] = Field(default_factory=lambda: ["SPY", "QQQ"])
    destination: str = Field(default="cash", description="cash | defensive (split equally over defensive_assets)")
    defensive_assets: list[str] = Field(default_factory=lambda: ["TLT", "GLD"])

    def breaker_config(self):
        from ml.risk import CircuitBreakerConfig

        return CircuitBreakerConfig(
            vix_threshold=self.vix_threshold, drawdown_limit=self.drawdown_limit,
            drawdown_window=self.drawdown_window, max_equity_weight=self.max_equity_weight,
            equity_assets=tuple(self.equity_assets), destination=self.destination,
            defensive_assets=tuple(self.defensive_assets),
        )


class MonitoringResource(dg.ConfigurableResource):
    """Thresholds of the drift / decay sensor. Calibrated on the real snapshot so that a request means a
    real shift: the policy's inputs are persistent (VIX level, 21-day vol), so short windows always look
    "drifted" (with 63 sessions and PSI > 0.25, 100% of month-ends 2013-2025 would fire). With the defaults
    the feature test fires at 24 of 156 month-ends, clustered in 2013 (taper), 2017 (record-low volatility)
    and 2022 (rate shock); the HMM test at 2 of 24 month-ends of fold 2024's test/live period."""

    recent_sessions: int = Field(default=126, description="Recent window compared with the fold's training "
                                 "window, for the feature and HMM tests (sessions, ~6 months).")
    psi_threshold: float = Field(default=1.0, description="PSI above which one policy input counts as drifted.")
    psi_feature_share: float = Field(default=0.5, description="Fire when at least this share of the policy's "
                                     "inputs drifted.")
    hmm_tv_threshold: float = Field(default=0.5, description="Total-variation distance of a sector's HMM state "
                                    "mix (recent vs train) above which the sector counts as shifted.")
    hmm_sector_share: float = Field(default=0.6, description="Fire when at least this share of sectors shifted.")
    decay_sessions: int = Field(default=63, description="Paper-track window of the decay test (sessions).")
    decay_min_excess: float = Field(default=-0.05, description="Fire when the paper track trails its "
                                    "equal-weight baseline by more than this over the window (fraction; fold "
                                    "2024's PPO stayed within -2.4% of equal weight over any 63 days of 2024).")
    cooldown_sessions: int = Field(default=63, description="Sessions after a retrain request during which the "
                                   "drift sensor does not ask again.")

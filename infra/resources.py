"""Typed Dagster resources. The ``ml`` pydantic configs hold every default; a resource field left at
``None`` means "the ``ml`` default", a set field overrides it (per run in the launchpad, in a profile's
run-config YAML, or in code). Environment variables choose the storage and the data source:
``REGIMEFLOW_WAREHOUSE`` (warehouse file), ``REGIMEFLOW_SOURCE`` (auto|csv|yahoo|synthetic),
``REGIMEFLOW_DATA_DIR`` (CSV snapshot directory), ``REGIMEFLOW_LAKE_CATALOG`` (a DuckLake instead of the file).
"""
from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Any, Optional

import dagster as dg
from pydantic import Field

from ml.data.sources import Resolution, resolve_source
from warehouse import Warehouse
from warehouse.db import default_warehouse_path

_ML_DEFAULT = "None = the ml default ({})."
#: Run tag choosing the feature store's look-ahead mode (full | fast) when the resource leaves it unset.
LOOKAHEAD_MODE_TAG = "regimeflow/lookahead_mode"


def overrides(resource: dg.ConfigurableResource, names: dict[str, str] | list[str]) -> dict[str, Any]:
    """The fields of ``resource`` that are set (not None), renamed to the ``ml`` config's field names
    (``names``: a list of shared names, or {resource field: config field})."""
    mapping = names if isinstance(names, dict) else {n: n for n in names}
    return {cfg: getattr(resource, field) for field, cfg in mapping.items() if getattr(resource, field) is not None}


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse. ``path`` None = ``$REGIMEFLOW_WAREHOUSE`` or ``data/warehouse/regimeflow.duckdb``.

    Model artifacts live under ``artifacts_dir`` (default ``<warehouse dir>/artifacts``) and are recorded
    by paths relative to it, so the whole data folder can move. After every run that wrote, the analyst
    snapshot is published once (``publish_snapshot``; done by the IO managers' teardown)."""

    path: Optional[str] = Field(default=None, description="Primary DuckDB file (pipeline only).")
    snapshot_path: Optional[str] = Field(
        default=None, description="Analysts' read-only snapshot; default <path stem>_read.duckdb next to it.")
    publish_snapshot: bool = Field(default=True, description="Publish the analyst snapshot at the end of every "
                                   "run that wrote (`regimeflow run` defers it to once at its end).")
    lock_timeout_s: float = Field(default=900.0, description="Seconds a step waits for another step's write.")
    artifacts_dir: Optional[str] = Field(
        default=None, description="Root of the model artifacts; default <warehouse dir>/artifacts.")
    reports_dir: Optional[str] = Field(default=None, description="HTML/PNG reports; default <warehouse dir>/reports.")
    lake_catalog: Optional[str] = Field(
        default=None, description="A DuckLake catalog instead of the DuckDB file (many writers, no snapshot copies): "
        "`postgres:dbname=... host=...` or a catalog file path; default $REGIMEFLOW_LAKE_CATALOG, else none "
        "(warehouse/lake.py: DuckDB 1.5.x with the ducklake / postgres_scanner extension wheels).")
    lake_data_path: Optional[str] = Field(default=None, description="The DuckLake's Parquet files; default "
                                          "<warehouse dir>/lake.")

    def get(self) -> Warehouse:
        catalog = self.lake_catalog or os.environ.get("REGIMEFLOW_LAKE_CATALOG")
        if catalog:
            from warehouse.lake import LakeWarehouse

            return LakeWarehouse(catalog, self.path or default_warehouse_path(), self.lake_data_path,
                                 self.lock_timeout_s)
        return Warehouse(self.path, self.snapshot_path, self.lock_timeout_s, self.publish_snapshot)

    def artifact_root(self) -> Path:
        return Path(self.artifacts_dir).expanduser().absolute() if self.artifacts_dir \
            else self.get().path.parent / "artifacts"

    def report_dir(self) -> Path:
        path = Path(self.reports_dir).expanduser().absolute() if self.reports_dir else self.get().path.parent / "reports"
        path.mkdir(parents=True, exist_ok=True)
        return path



class MarketDataResource(dg.ConfigurableResource):
    """Where market data comes from and which universe to load (defaults: ``ml.data.universe.Universe``)."""

    source: Optional[str] = Field(
        default=None, description="auto | csv | yahoo | synthetic; None = $REGIMEFLOW_SOURCE or auto.")
    data_dir: Optional[str] = Field(default=None, description="CSV snapshot dir; None = $REGIMEFLOW_DATA_DIR.")
    synthetic_seed: int = Field(default=7, description="Seed of the synthetic market.")
    allocation: Optional[list[str]] = Field(default=None, description=_ML_DEFAULT.format("SPY QQQ TLT GLD"))
    sector_etfs: Optional[list[str]] = Field(default=None, description=_ML_DEFAULT.format("the 11 SPDR sector ETFs"))
    include_stocks: Optional[bool] = Field(default=None, description=_ML_DEFAULT.format("true: load the stocks"))
    stocks: Optional[list[str]] = Field(default=None, description="Explicit stock list; None = all in sectors.csv.")
    indices: Optional[list[str]] = Field(default=None, description=_ML_DEFAULT.format("VIX VIX3M"))
    history_start: Optional[str] = Field(default=None, description="First date loaded (ISO), inclusive; 'all' = "
                                         "unbounded. " + _ML_DEFAULT.format("2005-01-01"))
    history_end: Optional[str] = Field(default=None, description="Last date loaded (ISO), inclusive; None = all.")
    reference_ticker: Optional[str] = Field(default=None, description="ETF whose trading days form "
                                            "ref.trading_calendar. " + _ML_DEFAULT.format("SPY"))

    def universe(self):
        from ml.data.universe import Universe

        kw = overrides(self, ["allocation", "sector_etfs", "include_stocks", "stocks", "indices", "reference_ticker"])
        if self.history_start is not None:
            kw["history_start"] = None if self.history_start == "all" else date.fromisoformat(self.history_start)
        if self.history_end is not None:
            kw["history_end"] = date.fromisoformat(self.history_end)
        return Universe(**kw)

    @property
    def calendar_ticker(self) -> str:
        return self.universe().reference_ticker

    def resolve(self) -> Resolution:
        return resolve_source(self.source, self.data_dir, seed=self.synthetic_seed)


class FeatureStoreResource(dg.ConfigurableResource):
    """Feature-store settings shared by the features asset, its look-ahead check and the labels
    (defaults: ``ml.features.FeatureConfig``, ``ml.labels.LabelConfig``, ``ml.lookahead.check_lookahead``)."""

    vix_lag_days: Optional[int] = Field(
        default=None, description="Rows the VIX is lagged. 0: the 16:15 ET VIX close of t is known when the "
        "end-of-day decision for t is taken (this project's convention); 1: strict 16:00 ET information set. "
        + _ML_DEFAULT.format("0"))
    lookahead_mode: Optional[str] = Field(default=None, description="full: 96 cutoffs covering every calendar "
                                          "class and ticker boundary | fast: 8 cutoffs, 5 calendar classes in "
                                          "rotation. None = the run's `regimeflow/lookahead_mode` tag (the nightly "
                                          "job sets fast), else full.")
    lookahead_cutoffs: Optional[int] = Field(default=None, description="Cutoff dates K of the feature store's "
                                             "look-ahead check. None = the mode's default (96 full, 8 fast).")
    fold_lookahead_cutoffs: Optional[int] = Field(default=None, description="Cutoff dates K of the per-fold checks "
                                                  "(HMM probabilities, prescreen scores). " + _ML_DEFAULT.format("4"))
    label_thresholds: Optional[dict[str, float]] = Field(
        default=None, description="Buy/sell threshold per horizon in trading days (fraction: 0.02 = 2%). "
        + _ML_DEFAULT.format("1: 1%, 5: 2%, 21: 4%"))

    def config(self):
        from ml.features import FeatureConfig

        return FeatureConfig(**overrides(self, ["vix_lag_days"]))

    def lookahead_kwargs(self, run_tags: dict[str, str] | None = None) -> dict[str, Any]:
        """``check_lookahead`` arguments: mode (this resource's, else the run's ``LOOKAHEAD_MODE_TAG``, else full)
        and K when set."""
        mode = self.lookahead_mode or (run_tags or {}).get(LOOKAHEAD_MODE_TAG) or "full"
        return {"mode": mode, **overrides(self, {"lookahead_cutoffs": "k"})}

    def fold_lookahead_kwargs(self) -> dict[str, Any]:
        from ml.lookahead import FOLD_OUTPUT_CUTOFFS

        return {"k": self.fold_lookahead_cutoffs or FOLD_OUTPUT_CUTOFFS}

    def label_config(self):
        from ml.labels import LabelConfig

        if self.label_thresholds is None:
            return LabelConfig()
        thresholds = {int(h): v for h, v in self.label_thresholds.items()}
        return LabelConfig(horizons=tuple(sorted(thresholds)), thresholds=thresholds)


class RegimeResource(dg.ConfigurableResource):
    """VIX band thresholds and sector-HMM settings, shared by the regimes, prescreen, evaluation and
    reports (defaults: ``ml.regimes.vix.VixRegimeConfig``, ``ml.regimes.hmm.HmmConfig``)."""

    band_edges: Optional[list[float]] = Field(default=None, description="VIX edges of low | moderate | high | "
                                              "extreme. " + _ML_DEFAULT.format("15, 20, 30"))
    bucket_edges: Optional[list[float]] = Field(default=None, description="VIX edges of calm | normal | elevated | "
                                                "stress | panic. " + _ML_DEFAULT.format("15, 20, 25, 35"))
    closed: Optional[str] = Field(default=None, description="left: [a, b) intervals | right: (a, b] (pd.cut). "
                                  + _ML_DEFAULT.format("left"))
    hmm_mode: Optional[str] = Field(default=None, description="etf: one sector ETF per sector; basket: "
                                    "equal-weighted stocks. " + _ML_DEFAULT.format("etf"))
    hmm_window: Optional[int] = Field(default=None, description="Trailing window (trading days) of the HMM "
                                      "observations. " + _ML_DEFAULT.format("20"))
    hmm_restarts: Optional[int] = Field(default=None, description="EM restarts per sector HMM (best "
                                        "log-likelihood kept). " + _ML_DEFAULT.format("5"))
    hmm_seed: Optional[int] = None

    def vix_config(self):
        from ml.regimes.vix import VixRegimeConfig

        kw = {k: tuple(v) for k, v in overrides(self, ["band_edges", "bucket_edges"]).items()}
        return VixRegimeConfig(**kw, **overrides(self, ["closed"]))

    def hmm_config(self):
        from ml.regimes.hmm import HmmConfig

        return HmmConfig(**overrides(self, {"hmm_mode": "mode", "hmm_window": "window",
                                            "hmm_restarts": "restarts", "hmm_seed": "seed"}))


class PrescreenResource(dg.ConfigurableResource):
    """Prescreen classifier settings (defaults: ``ml.prescreen.PrescreenConfig``)."""

    horizon: Optional[int] = Field(default=None, description="Label horizon h (trading days): buy_<h>d / sell_<h>d. "
                                   + _ML_DEFAULT.format("5"))
    sample_every: Optional[int] = Field(default=None, description="Train on every k-th trading day per ticker "
                                        "(labels overlap). " + _ML_DEFAULT.format("5"))
    cv_splits: Optional[int] = Field(default=None, description="Purged k-fold splits for hyper-parameter choice. "
                                     + _ML_DEFAULT.format("3"))
    generations: Optional[int] = Field(default=None, description="Causal model generations over the train window "
                                       "(scores on the train window come from models trained on earlier labels only). "
                                       "None = 3 (the stock book's RL members train on the scored 2/3 of the window; "
                                       "1 = final models only, ~3x faster, and the stock book runs without RL).")
    n_jobs: Optional[int] = Field(default=None, description="Worker processes across model slots. "
                                  + _ML_DEFAULT.format("2"))
    seed: Optional[int] = None

    def config(self):
        from ml.prescreen import PrescreenConfig

        return PrescreenConfig(**overrides(self, ["horizon", "sample_every", "cv_splits", "generations", "n_jobs",
                                                  "seed"]))


class PolicyResource(dg.ConfigurableResource):
    """Allocation-policy settings (defaults: ``ml.envs.portfolio.EnvConfig``, ``ml.agents.ppo.PPOConfig``,
    ``ml.dataset.ObservationSpec``)."""

    observation: Optional[str] = Field(default=None, description="Observation variant: base | term | hmm | "
                                       "prescreen | all (ml.dataset.OBSERVATION_VARIANTS). " + _ML_DEFAULT.format("base"))
    reward: Optional[str] = Field(default=None, description="vix_shaped | vol_penalty | differential_sharpe | net. "
                                  + _ML_DEFAULT.format("vix_shaped"))
    cost_bps: Optional[float] = Field(default=None, description="Transaction cost on turnover, basis points. "
                                      + _ML_DEFAULT.format("5"))
    execution: Optional[str] = Field(default=None, description="When a decision's orders fill: close (at the "
                                     "decision's close) | next_open | next_close. Training, evaluation (policy and "
                                     "baselines) and the paper track use it alike. " + _ML_DEFAULT.format("next_open"))
    episode_length: Optional[int] = Field(default=None, description="Trading days per training episode. "
                                          + _ML_DEFAULT.format("1024"))
    total_steps: Optional[int] = Field(default=None, description="Environment steps (transitions) per fold. "
                                       + _ML_DEFAULT.format("1,000,000"))
    num_envs: Optional[int] = Field(default=None, description="Environments stepped at once (batched torch env). "
                                    + _ML_DEFAULT.format("512"))
    num_steps: Optional[int] = Field(default=None, description="Steps per env per rollout. " + _ML_DEFAULT.format("64"))
    update_epochs: Optional[int] = Field(default=None, description="PPO epochs per rollout. " + _ML_DEFAULT.format("2"))
    num_minibatches: Optional[int] = Field(default=None, description="Minibatches per epoch (1 = full batch). "
                                           + _ML_DEFAULT.format("8"))
    ent_coef: Optional[float] = Field(default=None, description="Entropy bonus. " + _ML_DEFAULT.format("0"))
    shared_body: Optional[bool] = Field(default=None, description="One tanh body for actor and critic. "
                                        + _ML_DEFAULT.format("false"))
    observed_weights: Optional[str] = Field(default=None, description="held (drifted) | target (previous target) "
                                            "weights in the observation. " + _ML_DEFAULT.format("held"))
    episode_starts: Optional[str] = Field(default=None, description="random | sequential training episodes. "
                                          + _ML_DEFAULT.format("random"))
    train_through_embargo: bool = Field(default=False, description="Train the policy up to the session before the "
                                        "test window (the label embargo exists for label-trained models; PPO reads "
                                        "no labels). Only for observations without prescreen scores.")
    validation: bool = Field(default=True, description="Hold out the fold's validation slice (ref.folds."
                             "validation_start .. train end, 252 sessions) from fitting: every learner keeps its "
                             "best checkpoint there and the ensemble takes its composite weights from it. "
                             "False: fit on the whole train window, keep the last checkpoint, equal ensemble weights.")
    offpolicy_total_steps: Optional[int] = Field(default=None, description="SAC / TD3 environment steps per fold. "
                                                 + _ML_DEFAULT.format("160,000"))
    offpolicy_num_envs: Optional[int] = Field(default=None, description="SAC / TD3 environments stepped at once. "
                                              + _ML_DEFAULT.format("32"))
    seeds: int = Field(default=1, ge=1, description="Seeds per learner and fold (seed, seed+1, ...); more than one "
                       "makes each learner an equal-weight seed ensemble (average of the seeds' weights).")
    deploy: str = Field(default="ppo", description="The policy the daily decision deploys: ppo | sac | td3 | "
                        "ensemble (models/policy_<name> of the deployed fold).")
    seed: Optional[int] = None
    device: Optional[str] = Field(default=None, description="auto (CUDA when available, else CPU) | cpu | cuda. "
                                  + _ML_DEFAULT.format("auto"))
    torch_threads: Optional[int] = Field(default=None, ge=1, description="torch CPU threads of every learner's "
                                         "updates (PPO, SAC, TD3); 1 when several workers share the cores. "
                                         + _ML_DEFAULT.format("2"))
    qlearning_epochs_scale: Optional[float] = Field(default=None, description="Multiplies the Q-learning "
                                                    "simulations' epochs (2,000 / 1,000). " + _ML_DEFAULT.format("1.0"))
    borrow_rate: Optional[float] = Field(default=None, description="Annual rate on borrowed cash of levered "
                                         "exposures (Q-learning, E.L.). " + _ML_DEFAULT.format("0.02"))
    short_fee: Optional[float] = Field(default=None, description="Annual fee on a short's notional. "
                                       + _ML_DEFAULT.format("0.005"))

    def qlearning_config(self):
        from ml.agents.qlearning import QLearningConfig

        return QLearningConfig(**overrides(self, {"qlearning_epochs_scale": "epochs_scale", "seed": "seed"}))

    def financing(self):
        from ml.backtest.exposure import Financing

        return Financing(**overrides(self, ["borrow_rate", "short_fee"]))

    def env_config(self):
        from ml.dataset import observation_variant
        from ml.envs.portfolio import EnvConfig

        kw = overrides(self, ["reward", "episode_length", "execution", "observed_weights", "episode_starts"])
        if self.cost_bps is not None:
            kw["cost_rate"] = self.cost_bps / 1e4
        if self.observation is not None:
            kw["observation"] = observation_variant(self.observation)
        return EnvConfig(**kw)

    def ppo_config(self):
        """PPO's config; on CUDA (``device`` auto or cuda) sized for the GPU where not set here
        (``ml.agents.gpu_profile``)."""
        from ml.agents.gpu_profile import gpu_sized
        from ml.agents.ppo import PPOConfig

        kw = overrides(self, ["total_steps", "num_envs", "num_steps", "update_epochs", "num_minibatches", "ent_coef",
                              "shared_body", "seed", "device"])
        return gpu_sized(PPOConfig(**kw, **overrides(self, {"torch_threads": "num_threads"})))

    def agent_config(self, kind: str):
        """The learner config of ``kind`` (``ppo``, ``sac``, ``td3``) with this resource's overrides (GPU-sized
        on CUDA, as :meth:`ppo_config`)."""
        if kind == "ppo":
            return self.ppo_config()
        from ml.agents.gpu_profile import gpu_sized
        from ml.agents.sac import SACConfig
        from ml.agents.td3 import TD3Config

        classes = {"sac": SACConfig, "td3": TD3Config}
        if kind not in classes:
            raise ValueError(f"unknown learner {kind!r}; choose ppo, sac or td3")
        kw = overrides(self, {"offpolicy_total_steps": "total_steps", "offpolicy_num_envs": "num_envs",
                              "seed": "seed", "device": "device", "torch_threads": "num_threads"})
        return gpu_sized(classes[kind](**kw))

    def windows(self, fold) -> tuple[tuple, tuple | None]:
        """``((first, last) fitted, (first, last) validation or None)`` earned dates of a fold's policies:
        the train window (:meth:`train_window`) split at the fold's ``validation_start``."""
        from datetime import timedelta

        first, last = self.train_window(fold)
        if not self.validation or fold.validation_start is None:
            return (first, last), None
        return (first, fold.validation_start - timedelta(days=1)), (fold.validation_start, last)

    def train_window(self, fold) -> tuple:
        """``(first, last)`` earned dates the policy trains on: the fold's train window, or (with
        ``train_through_embargo``) through the last session before its test window."""
        if not self.train_through_embargo:
            return fold.train_start, fold.train_end
        if self.env_config().observation.prescreen:
            raise ValueError("train_through_embargo with prescreen observations would train on scores of "
                             "label-trained models inside their embargo; use it with label-free observations only")
        from datetime import timedelta

        return fold.train_start, fold.test_start - timedelta(days=1)

    @property
    def cost_rate(self) -> float:
        """Cost per unit turnover (fraction) used by every backtest of the allocation book."""
        return self.env_config().cost_rate


class RiskResource(dg.ConfigurableResource):
    """The circuit breaker above the policy (``ml.risk.CircuitBreakerConfig`` holds the thresholds) and
    where it is switched on."""

    daily_enabled: bool = Field(default=True, description="Apply it to the daily decision (decisions/daily).")
    research_enabled: bool = Field(default=False, description="Also evaluate 'ppo_breaker' in research folds "
                                   "(eval/fold); the policy alone is always evaluated as 'ppo'.")
    vix_threshold: Optional[float] = Field(default=None, description="VIX close (index points) that trips it. "
                                           + _ML_DEFAULT.format("30"))
    drawdown_limit: Optional[float] = Field(default=None, description="Trailing drawdown (fraction) that trips "
                                            "it. " + _ML_DEFAULT.format("0.15"))
    drawdown_window: Optional[int] = Field(default=None, description="Sessions of the trailing equity peak. "
                                           + _ML_DEFAULT.format("252"))
    max_equity_weight: Optional[float] = Field(default=None, description="Cap on the equity sleeve while tripped. "
                                               + _ML_DEFAULT.format("0.25"))
    destination: Optional[str] = Field(default=None, description="cash | defensive (split equally over the "
                                       "defensive assets). " + _ML_DEFAULT.format("cash"))

    def breaker_config(self):
        from ml.risk import CircuitBreakerConfig

        return CircuitBreakerConfig(**overrides(self, ["vix_threshold", "drawdown_limit", "drawdown_window",
                                                       "max_equity_weight", "destination"]))


class MonitoringResource(dg.ConfigurableResource):
    """Thresholds of the drift / decay statistics (defaults and their calibration: ``ml.monitoring.DriftConfig``)."""

    recent_sessions: Optional[int] = None
    psi_threshold: Optional[float] = None
    psi_feature_share: Optional[float] = None
    hmm_tv_threshold: Optional[float] = None
    hmm_sector_share: Optional[float] = None
    decay_sessions: Optional[int] = None
    decay_min_excess: Optional[float] = None
    cooldown_sessions: Optional[int] = None

    def config(self):
        from ml.monitoring import DriftConfig

        return DriftConfig(**overrides(self, list(DriftConfig.model_fields)))


class SectorBookResource(dg.ConfigurableResource):
    """Sector-regime book settings (defaults: ``ml.sector_book.SectorBookSettings``,
    ``ml.backtest.sector_book.SectorBookConfig``, ``ml.strategies.pairs.PairsConfig``,
    ``ml.agents.qrdqn.QRDQNConfig``, ``ml.envs.pair_trading.PairEnvConfig``)."""

    regime_source: str = Field(default="fold", description="fold: the fold's sector HMMs (lineage) | weekly_refit: "
                               "basket HMMs refit every 5 sessions on the trailing 252 (the reference's policy; "
                               "slower)")
    groups_per_day: Optional[int] = Field(default=None, description="Groups the bandit trades per day. "
                                          + _ML_DEFAULT.format("5"))
    max_positions: Optional[int] = Field(default=None, description=_ML_DEFAULT.format("20"))
    max_weight: Optional[float] = Field(default=None, description="Cap per name, fraction of equity. "
                                        + _ML_DEFAULT.format("0.05"))
    slippage_bps: Optional[float] = Field(default=None, description="Per side. " + _ML_DEFAULT.format("5"))
    commission_bps: Optional[float] = Field(default=None, description="Per side. " + _ML_DEFAULT.format("1"))
    borrow_rate: Optional[float] = Field(default=None, description="Annual fee on short gross. "
                                         + _ML_DEFAULT.format("0.005"))
    execution: Optional[str] = Field(default=None, description="next_open | close. " + _ML_DEFAULT.format("next_open"))
    min_group_size: Optional[int] = Field(default=None, description="Stocks a group needs. " + _ML_DEFAULT.format("4"))
    undersized: Optional[str] = Field(default=None, description="skip | merge (into 'Other'). "
                                      + _ML_DEFAULT.format("skip"))
    pairs_top_k: Optional[int] = Field(default=None, description="Pairs per group. " + _ML_DEFAULT.format("5"))
    pairs_pvalue_max: Optional[float] = Field(default=None, description="Engle-Granger p-value a pair must reach. "
                                              + _ML_DEFAULT.format("0.05"))
    pairs_lookback: Optional[int] = Field(default=None, description="Trailing train sessions of the cointegration "
                                          "test. " + _ML_DEFAULT.format("504"))
    qrdqn_total_steps: Optional[int] = Field(default=None, description="QR-DQN transitions per fold.")
    qrdqn_device: Optional[str] = Field(default=None, description="auto | cpu | cuda. " + _ML_DEFAULT.format("auto"))
    seed: Optional[int] = None

    def settings(self):
        from ml.backtest.sector_book import SectorBookConfig
        from ml.sector_book import SectorBookSettings
        from ml.strategies.pairs import PairsConfig

        book = SectorBookConfig(**overrides(self, ["groups_per_day", "max_positions", "max_weight", "slippage_bps",
                                                   "commission_bps", "borrow_rate", "execution", "seed"]))
        pairs = PairsConfig(**overrides(self, {"pairs_top_k": "top_k", "pairs_lookback": "lookback",
                                               "pairs_pvalue_max": "pvalue_max"}))
        return SectorBookSettings(book=book, pairs=pairs, **overrides(self, ["min_group_size", "undersized"]))

    def qrdqn_config(self):
        from ml.agents.qrdqn import QRDQNConfig

        return QRDQNConfig(**overrides(self, {"qrdqn_total_steps": "total_steps", "qrdqn_device": "device",
                                              "seed": "seed"}))

    def env_config(self):
        from ml.envs.pair_trading import PairEnvConfig

        b = self.settings().book
        return PairEnvConfig(cost_rate=b.cost_rate, borrow_rate=b.borrow_rate)


class StockBookResource(dg.ConfigurableResource):
    """Stock-book settings (defaults: ``ml.stock_book.StockBookSettings``, ``ml.decision_engine.EngineConfig``,
    ``ml.envs.stock_env.StockEnvConfig``, ``ml.agents.stock_ppo.StockPPOConfig``,
    ``ml.agents.stock_offpolicy.StockOffPolicyConfig``)."""

    top_n: Optional[int] = Field(default=None, description="Candidates per day by P(buy), plus names held. "
                                 + _ML_DEFAULT.format("25"))
    weighting: Optional[str] = Field(default=None, description="conviction | max_sharpe (position weights among "
                                     "BUYs of the main variant). " + _ML_DEFAULT.format("conviction"))
    threshold: Optional[float] = Field(default=None, description="BUY / SELL threshold on the conviction. "
                                       + _ML_DEFAULT.format("0.15"))
    stop_loss_floor: Optional[float] = Field(default=None, description=_ML_DEFAULT.format("0.05"))
    min_trade: Optional[float] = Field(default=None, description="Fraction of equity. " + _ML_DEFAULT.format("0.005"))
    cooldown_days: Optional[int] = Field(default=None, description="Sessions before a held name is resized again. "
                                         + _ML_DEFAULT.format("5"))
    slippage_bps: Optional[float] = Field(default=None, description="Per side. " + _ML_DEFAULT.format("5"))
    commission_bps: Optional[float] = Field(default=None, description="Per side. " + _ML_DEFAULT.format("1"))
    rl_members: str = Field(default="ppo,sac,td3", description="Comma-separated RL members of the stock ensemble "
                            "(ppo, sac, td3); empty = no RL signal (the engine renormalises its weights).")
    rl_device: Optional[str] = Field(default=None, description="auto | cpu | cuda. " + _ML_DEFAULT.format("auto"))
    rl_torch_threads: Optional[int] = Field(default=None, ge=1, description="torch CPU threads of the stock "
                                            "learners; 1 when several workers share the cores. "
                                            + _ML_DEFAULT.format("2"))
    ppo_total_steps: Optional[int] = Field(default=None, description="PPO transitions per fold.")
    offpolicy_total_steps: Optional[int] = Field(default=None, description="SAC / TD3 transitions per fold.")
    seed: Optional[int] = None

    def members(self) -> list[str]:
        names = [m.strip() for m in self.rl_members.split(",") if m.strip()]
        bad = sorted(set(names) - {"ppo", "sac", "td3"})
        if bad:
            raise ValueError(f"stock_book.rl_members: unknown member(s) {bad}; choose from ppo, sac, td3")
        return names

    def settings(self):
        from ml.decision_engine import EngineConfig
        from ml.stock_book import StockBookSettings

        engine = EngineConfig(**overrides(self, ["weighting", "threshold", "stop_loss_floor", "min_trade",
                                                 "cooldown_days"]))
        return StockBookSettings(engine=engine, **overrides(self, ["top_n", "slippage_bps", "commission_bps"]))

    def env_config(self):
        from ml.envs.stock_env import StockEnvConfig

        s = self.settings()
        return StockEnvConfig(top_n=s.top_n, cost_rate=s.cost_rate, threshold=s.engine.threshold)

    def ppo_config(self):
        from ml.agents.stock_ppo import StockPPOConfig

        return StockPPOConfig(**overrides(self, {"ppo_total_steps": "total_steps", "rl_device": "device",
                                                 "seed": "seed", "rl_torch_threads": "num_threads"}))

    def offpolicy_config(self):
        from ml.agents.stock_offpolicy import StockOffPolicyConfig

        return StockOffPolicyConfig(**overrides(self, {"offpolicy_total_steps": "total_steps", "rl_device": "device",
                                                       "seed": "seed", "rl_torch_threads": "num_threads"}))

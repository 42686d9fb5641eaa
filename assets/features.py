"""Group ``features``: ``features/daily`` (≥ 40 causal indicators), ``features/registry``, ``labels/forward``.

The blocking check ``features_no_lookahead`` recomputes every feature on truncated and garbled
history (``ml.lookahead``); a leak stops everything downstream in the same run.
"""
from functools import partial

import dagster as dg
import polars as pl
from pydantic import Field

from assets._metadata import md_table
from assets.keys import FEATURES_DAILY, FEATURES_REGISTRY, LABELS_FORWARD, RAW_BARS, RAW_INDEX_BARS
from ml.features import compute_features, feature_registry, feature_specs
from ml.labels import MAX_LABEL_HORIZON, compute_labels, label_columns
from ml.lookahead import check_lookahead
from orchestration.automation import eager_when_checks_pass
from orchestration.resources import FeatureStoreResource, WarehouseResource
from warehouse import features as wf
from warehouse import ingest as wi

GROUP = "features"


def null_share_after_warmup(features: pl.DataFrame, specs) -> pl.DataFrame:
    """Per feature: share of null values among rows past that feature's warm-up (per ticker)."""
    row = pl.int_range(pl.len()).over("ticker")
    return features.select(
        [
            (pl.col(s.name).is_null() & (row >= s.warmup)).sum().truediv((row >= s.warmup).sum()).alias(s.name)
            for s in specs
        ]
    ).transpose(include_header=True, header_name="feature", column_names=["null_share"])


class WriteWindowConfig(dg.Config):
    """Which computed rows a run writes. The whole history is always computed (rolling windows need it)."""

    incremental: bool = Field(
        default=False, description="Write only rows dated on/after the earliest bar or VIX row that changed "
        "since this table was last written (the nightly job). Causal features cannot change before it.")


def _write_window(context, config: WriteWindowConfig, wh, table: str, frame: pl.DataFrame, lookback: int):
    """``frame`` restricted to what an incremental run must write (all of it otherwise). ``lookback``:
    sessions before the first changed bar whose rows can change too (a label looks h sessions ahead)."""
    if not config.incremental:
        return frame
    first = wf.earliest_changed_date(wh, table)
    if first is None:
        context.log.info(f"{table}: no bar changed since the last run (holiday?): nothing to write")
        return frame.clear()
    start = wf.sessions_before(wh, first, lookback) if lookback else first
    part = frame.filter(pl.col("date") >= start)
    context.log.info(f"{table}: incremental write of {part.height:,} rows dated >= {start} "
                     f"(first changed bar {first})")
    return part


@dg.asset(key=FEATURES_REGISTRY, group_name=GROUP, kinds={"duckdb", "polars"})
def feature_registry_table(context: dg.AssetExecutionContext, features: FeatureStoreResource,
                           warehouse: WarehouseResource):
    """What each column of features.daily means: family, window, unit, description, warm-up rows."""
    registry = feature_registry(features.vix_lag_days)
    wf.write_registry(warehouse.get(), registry)
    return dg.MaterializeResult(metadata={"dagster/row_count": registry.height,
                                          "registry": dg.MetadataValue.md(md_table(registry.drop("inputs")))})


@dg.asset(key=FEATURES_DAILY, deps=[RAW_BARS, RAW_INDEX_BARS, FEATURES_REGISTRY], group_name=GROUP,
          kinds={"duckdb", "polars"}, automation_condition=eager_when_checks_pass())
def features_daily(context: dg.AssetExecutionContext, config: WriteWindowConfig, features: FeatureStoreResource,
                   warehouse: WarehouseResource):
    """One row per (ticker, date), one column per registry feature; dated t = known at the close of t."""
    wh = warehouse.get()
    source = wf.warehouse_source(wh)
    bars, index_bars = wi.read_bars(wh), wi.read_index_bars(wh)
    context.log.info(f"computing features for {bars['ticker'].n_unique()} tickers, {bars.height:,} bars ({source})")
    cfg = features.config()
    frame = compute_features(bars, index_bars, cfg)
    specs = feature_specs(cfg.vix_lag_days)
    written = _write_window(context, config, wh, wf.FEATURES_TABLE, frame, 0)
    counts = wf.write_keyed(wh, wf.FEATURES_TABLE, written, source,
                            "Daily features per (ticker, date); see features.registry. Dated t = known at close t.")
    context.log.info(f"features.daily: {counts.inserted:,} inserted, {counts.updated:,} updated, "
                     f"{counts.unchanged:,} unchanged")
    nulls = null_share_after_warmup(frame, specs)
    return dg.MaterializeResult(metadata={
        "dagster/row_count": frame.height,
        "feature_count": len(specs),
        "tickers": frame["ticker"].n_unique(),
        "date_range": f"{frame['date'].min()} .. {frame['date'].max()}",
        "source": source,
        "vix_lag_days": cfg.vix_lag_days,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "rows_considered": written.height,
        "incremental": config.incremental,
        "null_share_after_warmup": dg.MetadataValue.md(md_table(nulls)),
        "max_null_share_after_warmup": float(nulls["null_share"].max()),
    })


@dg.asset_check(asset=FEATURES_DAILY, blocking=True, name="features_no_lookahead")
def features_no_lookahead(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource,
                          warehouse: WarehouseResource):
    """Recompute all features on history truncated / garbled after K cutoffs; values up to each cutoff must match."""
    wh = warehouse.get()
    bars, index_bars = wi.read_bars(wh), wi.read_index_bars(wh)
    fn = partial(compute_features, config=features.config())
    report = check_lookahead(fn, bars, index_bars, k=features.lookahead_cutoffs)
    context.log.info(report.summary())
    return dg.AssetCheckResult(
        passed=report.passed,
        description=report.summary(),
        metadata={
            "report": dg.MetadataValue.md(report.to_markdown()),
            "failed_features": dg.MetadataValue.json(report.failed_features),
            "cutoffs": [d.isoformat() for d in report.cutoffs],
            "elapsed_s": round(report.elapsed_s, 2),
        },
    )


@dg.asset(key=LABELS_FORWARD, deps=[RAW_BARS], group_name=GROUP, kinds={"duckdb", "polars"},
          automation_condition=eager_when_checks_pass())
def labels_forward(context: dg.AssetExecutionContext, config: WriteWindowConfig, features: FeatureStoreResource,
                   warehouse: WarehouseResource):
    """Forward returns and buy/sell labels: the only table that looks forward. Never a model input at t."""
    wh = warehouse.get()
    source = wf.warehouse_source(wh)
    labels = compute_labels(wi.read_bars(wh), features.label_config())
    written = _write_window(context, config, wh, wf.LABELS_TABLE, labels, MAX_LABEL_HORIZON)
    counts = wf.write_keyed(wh, wf.LABELS_TABLE, written, source,
                            "Forward labels dated t describe t+1..t+h (h in the column name); never inputs at t.")
    positives = labels.select([pl.col(c).mean().alias(c) for c in label_columns(features.label_config().horizons)
                               if c.startswith(("buy", "sell"))])
    return dg.MaterializeResult(metadata={
        "dagster/row_count": labels.height,
        "rows_inserted": counts.inserted,
        "rows_updated": counts.updated,
        "max_label_horizon_days": MAX_LABEL_HORIZON,
        "positive_share": dg.MetadataValue.json({k: round(v, 4) for k, v in positives.row(0, named=True).items()}),
        "source": source,
    })

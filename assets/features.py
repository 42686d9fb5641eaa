"""Group ``features``: ``features/daily`` (45 causal indicators), ``features/registry``, ``labels/forward``.

The blocking check ``features_no_lookahead`` recomputes every feature on truncated and garbled
history (``ml.lookahead``); a leak stops everything downstream in the same run.
"""
from functools import partial

import dagster as dg
import polars as pl
from pydantic import Field

from assets._metadata import md_table
from assets.keys import FEATURES_DAILY, FEATURES_REGISTRY, LABELS_FORWARD, RAW_BARS, RAW_INDEX_BARS
from infra.automation import eager_when_checks_pass
from infra.resources import FeatureStoreResource, WarehouseResource
from ml.features import compute_features, feature_registry, feature_specs
from ml.labels import MAX_LABEL_HORIZON, compute_labels, label_columns
from ml.lookahead import check_lookahead
from warehouse import features as wf

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


def source_of(bars: pl.DataFrame) -> str:
    """The source kind(s) of the bars (csv | yahoo | synthetic): stamped on every derived row."""
    kinds = sorted(bars.get_column("source").unique().to_list())
    if not kinds:
        raise dg.Failure("raw/bars is empty: materialize the ingestion assets first")
    return "+".join(kinds)


class WriteWindowConfig(dg.Config):
    """Which computed rows a run writes. The whole history is always computed (rolling windows need it)."""

    incremental: bool = Field(
        default=False, description="Write only rows dated on/after the earliest bar or VIX row that changed "
        "since this table was last written (the nightly job). Causal features cannot change before it.")


def _write_window(context, config: WriteWindowConfig, wh, asset: dg.AssetKey, frame: pl.DataFrame,
                  lookback: int) -> pl.DataFrame:
    """``frame`` restricted to what an incremental run must write (all of it otherwise). ``lookback``:
    sessions before the first changed bar whose rows can change too (a label looks h sessions ahead)."""
    if not config.incremental:
        return frame
    first = wf.earliest_changed_date(wh, asset.path)
    name = asset.to_user_string()
    if first is None:
        context.log.info(f"{name}: no bar changed since the last run (holiday?): nothing to write")
        return frame.clear()
    start = wf.sessions_before(wh, first, lookback) if lookback else first
    part = frame.filter(pl.col("date") >= start)
    context.log.info(f"{name}: incremental write of {part.height:,} rows dated >= {start} (first changed bar {first})")
    return part


@dg.asset(key=FEATURES_REGISTRY, group_name=GROUP, kinds={"duckdb", "polars"})
def feature_registry_table(context: dg.AssetExecutionContext, features: FeatureStoreResource) -> pl.DataFrame:
    """What each column of features.daily means: family, window, unit, description, warm-up rows."""
    registry = feature_registry(features.config().vix_lag_days)
    context.add_output_metadata({"dagster/row_count": registry.height,
                                 "registry": dg.MetadataValue.md(md_table(registry.drop("inputs")))})
    return registry


@dg.asset(key=FEATURES_DAILY, deps=[FEATURES_REGISTRY], group_name=GROUP, kinds={"duckdb", "polars"},
          ins={"bars": dg.AssetIn(RAW_BARS), "index_bars": dg.AssetIn(RAW_INDEX_BARS)},
          automation_condition=eager_when_checks_pass())
def features_daily(context: dg.AssetExecutionContext, config: WriteWindowConfig, features: FeatureStoreResource,
                   warehouse: WarehouseResource, bars: pl.DataFrame, index_bars: pl.DataFrame) -> pl.DataFrame:
    """One row per (ticker, date), one column per registry feature; dated t = known at the close of t.
    Returns the rows to write (all, or the incremental window); they are upserted (unchanged rows stay)."""
    source = source_of(bars)
    context.log.info(f"computing features for {bars['ticker'].n_unique()} tickers, {bars.height:,} bars ({source})")
    cfg = features.config()
    frame = compute_features(bars, index_bars, cfg)
    specs = feature_specs(cfg.vix_lag_days)
    written = _write_window(context, config, warehouse.get(), FEATURES_DAILY, frame, 0)
    nulls = null_share_after_warmup(frame, specs)
    context.add_output_metadata({
        "dagster/row_count": frame.height,
        "feature_count": len(specs),
        "tickers": frame["ticker"].n_unique(),
        "date_range": f"{frame['date'].min()} .. {frame['date'].max()}",
        "source": source,
        "vix_lag_days": cfg.vix_lag_days,
        "rows_considered": written.height,
        "incremental": config.incremental,
        "null_share_after_warmup": dg.MetadataValue.md(md_table(nulls)),
        "max_null_share_after_warmup": float(nulls["null_share"].max()),
    })
    return written.with_columns(pl.lit(source).alias("source"))


@dg.asset_check(asset=FEATURES_DAILY, blocking=True, name="features_no_lookahead",
                additional_ins={"bars": dg.AssetIn(RAW_BARS), "index_bars": dg.AssetIn(RAW_INDEX_BARS)})
def features_no_lookahead(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource,
                          bars: pl.DataFrame, index_bars: pl.DataFrame):
    """Recompute all features on history truncated / garbled after K cutoffs; values up to each cutoff must
    match. Every policy input is a column of features.daily (``ml.dataset``), so this covers them all."""
    fn = partial(compute_features, config=features.config())
    report = check_lookahead(fn, bars, index_bars, **features.lookahead_kwargs(context.run.tags))
    context.log.info(report.summary())
    return dg.AssetCheckResult(
        passed=report.passed,
        description=report.summary(),
        metadata={
            "report": dg.MetadataValue.md(report.to_markdown()),
            "failed_features": dg.MetadataValue.json(report.failed_features),
            "checked_columns": len(report.checks),
            "cutoffs": [d.isoformat() for d in report.cutoffs],
            "mode": report.mode,
            "calendar_classes_covered": dg.MetadataValue.json(report.classes_covered),
            "p_catch_1_in_21_session_leak": round(report.sparse_leak_detection, 4),
            "elapsed_s": round(report.elapsed_s, 2),
        },
    )


@dg.asset(key=LABELS_FORWARD, group_name=GROUP, kinds={"duckdb", "polars"}, ins={"bars": dg.AssetIn(RAW_BARS)},
          automation_condition=eager_when_checks_pass())
def labels_forward(context: dg.AssetExecutionContext, config: WriteWindowConfig, features: FeatureStoreResource,
                   warehouse: WarehouseResource, bars: pl.DataFrame) -> pl.DataFrame:
    """Forward returns and buy/sell labels: the only table that looks forward. Never a model input at t."""
    source = source_of(bars)
    cfg = features.label_config()
    labels = compute_labels(bars, cfg)
    written = _write_window(context, config, warehouse.get(), LABELS_FORWARD, labels, MAX_LABEL_HORIZON)
    positives = labels.select([pl.col(c).mean().alias(c) for c in label_columns(cfg.horizons)
                               if c.startswith(("buy", "sell"))])
    context.add_output_metadata({
        "dagster/row_count": labels.height,
        "rows_considered": written.height,
        "max_label_horizon_days": MAX_LABEL_HORIZON,
        "positive_share": dg.MetadataValue.json({k: round(v, 4) for k, v in positives.row(0, named=True).items()}),
        "source": source,
    })
    return written.with_columns(pl.lit(source).alias("source"))

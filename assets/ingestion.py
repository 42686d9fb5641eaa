"""Group ``ingestion``: market data → ``raw.bars``, ``raw.index_bars``, ``ref.sectors``, ``ref.trading_calendar``."""

from typing import Literal

import dagster as dg
import polars as pl
from pydantic import Field

from assets._metadata import md_table
from assets.keys import OPS_INPUT_FRESHNESS, RAW_BARS, RAW_INDEX_BARS, REF_SECTORS, REF_TRADING_CALENDAR
from ml.data.market import DataSourceError, trading_calendar_frame
from ml.freshness import input_freshness, last_rows, reference_sessions, stale_lines
from infra.automation import eager_when_checks_pass
from infra.resources import MarketDataResource, WarehouseResource
from warehouse import ingest as wi
from warehouse.catalog import storage

GROUP = "ingestion"


class IngestConfig(dg.Config):
    """How much history one ingestion run (re)writes."""

    mode: Literal["full", "incremental"] = Field(
        default="full", description="full: the whole configured history (upserted: unchanged rows are not "
        "rewritten). incremental: sessions from the overlap window on, plus tickers not stored yet.")
    overlap_sessions: int = Field(default=5, ge=1, description="Stored sessions re-read by an incremental "
                                  "ingest to catch revised bars.")


def _every(log, n: int):
    """A progress callback that logs the 1st, (n+1)th, … message (every event is stored by Dagster)."""
    count = [0]

    def progress(message: str) -> None:
        if count[0] % n == 0:
            log(f"{message} ({count[0] + 1} loaded)")
        count[0] += 1

    return progress


@dg.multi_asset(
    specs=[
        dg.AssetSpec(RAW_BARS, group_name=GROUP, kinds={"duckdb"},
                     description="Daily adjusted OHLCV per (ticker, date); source column says csv/yahoo/synthetic."),
        dg.AssetSpec(RAW_INDEX_BARS, group_name=GROUP, kinds={"duckdb"},
                     description="VIX and VIX3M daily levels per (symbol, date), index points."),
        dg.AssetSpec(REF_SECTORS, group_name=GROUP, kinds={"duckdb"},
                     description="GICS sector per ticker (sector ETFs map to the sector they track)."),
    ],
    can_subset=False,
)
def market_data(context: dg.AssetExecutionContext, config: IngestConfig, market: MarketDataResource,
                warehouse: WarehouseResource):
    """Load the configured source and upsert bars, index bars and sectors in one transaction.

    ``mode: incremental`` (the nightly job) writes only sessions on/after the ``overlap_sessions``-th
    newest stored one (revisions inside the overlap are caught; unchanged rows are not rewritten)."""
    wh = warehouse.get()
    resolution = market.resolve()
    source = resolution.source
    context.log.info(f"market source: {source.describe()} — {resolution.reason}")
    if resolution.warning:
        context.log.warning("!" * 20 + " " + resolution.warning + " " + "!" * 20)
    universe = market.universe()
    extent = wi.stored_extent(wh, config.overlap_sessions)
    incremental = config.mode == "incremental" and extent.last_date is not None
    if config.mode == "incremental" and not incremental:
        context.log.info("incremental ingest requested but the warehouse holds no bars yet: loading the full history")
    if incremental:
        context.log.info(f"incremental ingest: newest stored session {extent.last_date}; re-reading from "
                         f"{extent.window_start} ({config.overlap_sessions} sessions of overlap for revisions)")
        if source.source_kind == "yahoo":  # download only the window (tickers not stored yet need mode=full)
            universe = universe.model_copy(update={"history_start": extent.window_start})
    try:
        data = source.load(universe, on_progress=_every(context.log.debug if incremental else context.log.info, 20))
    except DataSourceError as exc:
        wi.log_rejected_batch(wh, context.run.run_id, source.source_kind, source.describe(), str(exc))
        raise dg.Failure(description=f"input rejected, nothing written:\n{exc}") from exc
    for warning in data.warnings:
        context.log.warning(warning)
    if incremental:
        data = wi.incremental_slice(data, extent)
    lo, hi = universe.history_start, universe.history_end
    audit = wi.audit_batch(wh, data, market.calendar_ticker, lo, hi)
    if not audit.passed:  # write-audit-publish: a batch that breaks an error rule writes nothing
        file_of = getattr(source, "ohlcv_path", None)
        message = audit.message(None if file_of is None else lambda t: (str(p) if (p := file_of(t)) else None))
        wi.log_rejected_batch(wh, context.run.run_id, source.source_kind, source.describe(), message)
        raise dg.Failure(description=f"input rejected by the data-quality rules, nothing written:\n{message}")
    context.log.info(f"staged batch audited in {audit.seconds:.1f} s: every error rule passed on the state it "
                     f"would write ({audit.bars.n_rows:,} bars, {audit.index.n_rows:,} index rows)")
    ref_dates = data.bars.filter(pl.col("ticker") == market.calendar_ticker)["date"]
    new_dates = sorted(d for d in ref_dates.to_list() if extent.last_date is None or d > extent.last_date)
    if extent.last_date is not None and not new_dates:
        context.log.info(f"no new {market.calendar_ticker} session after {extent.last_date} (market holiday, "
                         "weekend, or the source has not published today's bars yet): nothing new to ingest")
    elif extent.last_date is not None:
        context.log.info(f"{len(new_dates)} new session(s): {new_dates[0]} .. {new_dates[-1]}")
    context.log.info(
        f"writing {data.bars.height:,} bars, {data.index_bars.height:,} index rows, "
        f"{data.sectors.height} sectors to {wh.path} (one transaction)"
    )
    result = wi.ingest_market(wh, data, run_id=context.run.run_id).by_table()
    tickers = wi.ticker_summary(wh)
    indices = wi.index_summary(wh)
    common = {"source": data.source, "source_description": data.description, "mode": config.mode,
              "new_sessions": len(new_dates),
              "newest_session": str(new_dates[-1] if new_dates else extent.last_date)}
    if data.is_synthetic:
        common["WARNING"] = "SYNTHETIC DATA — not real market prices"
    for key, extra in (
        (RAW_BARS, {"tickers": dg.MetadataValue.int(tickers.height),
                    "date_range_per_ticker": dg.MetadataValue.md(md_table(tickers))}),
        (RAW_INDEX_BARS, {"date_range_per_symbol": dg.MetadataValue.md(md_table(indices))}),
        (REF_SECTORS, {}),
    ):
        table = storage(key.path).main.table
        c = result[table]
        context.log.info(f"{table}: {c.inserted:,} inserted, {c.updated:,} updated, {c.unchanged:,} unchanged")
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                **common,
                "dagster/row_count": dg.MetadataValue.int(c.rows_in),
                "rows_inserted": c.inserted,
                "rows_updated": c.updated,
                "rows_unchanged": c.unchanged,
                "warehouse": dg.MetadataValue.path(str(wh.path)),
                **extra,
            },
        )


@dg.asset(key=REF_TRADING_CALENDAR, group_name=GROUP, kinds={"duckdb"},
          ins={"bars": dg.AssetIn(RAW_BARS, metadata={"columns": ["source"]})},
          automation_condition=eager_when_checks_pass())
def trading_calendar(context: dg.AssetExecutionContext, market: MarketDataResource, bars: pl.DataFrame) -> pl.DataFrame:
    """Trading days actually observed for the reference ETF (default SPY), with a 0-based session index."""
    ticker = market.calendar_ticker
    cal = trading_calendar_frame(bars, ticker)
    context.log.info(f"trading calendar: {cal.height} sessions {cal['date'].min()}..{cal['date'].max()} from {ticker}")
    context.add_output_metadata({"dagster/row_count": cal.height, "first_date": str(cal["date"].min()),
                                 "last_date": str(cal["date"].max()), "reference_ticker": ticker})
    return cal


FRESHNESS_CHECK = "inputs_fresh"


@dg.asset(key=OPS_INPUT_FRESHNESS, group_name=GROUP, kinds={"duckdb"}, automation_condition=eager_when_checks_pass(),
          ins={"bars": dg.AssetIn(RAW_BARS, metadata={"columns": ["ticker", "date"]}),
               "index_bars": dg.AssetIn(RAW_INDEX_BARS), "calendar": dg.AssetIn(REF_TRADING_CALENDAR)},
          check_specs=[dg.AssetCheckSpec(FRESHNESS_CHECK, asset=OPS_INPUT_FRESHNESS, description=(
              "Every ticker and index series has the newest reference session: a stale allocation asset or VIX "
              "fails (ERROR; the decision refuses to run), a stale sector ETF / stock / VIX3M warns."))])
def input_freshness_table(context: dg.AssetExecutionContext, market: MarketDataResource, bars: pl.DataFrame,
                          index_bars: pl.DataFrame, calendar: pl.DataFrame):
    """Per input: newest row, reference sessions behind (``ml.freshness``), stale, blocks the decision.
    Allocation assets and the VIX block the decision; sector ETFs, stocks and VIX3M only warn."""
    u = market.universe()
    roles = {**dict.fromkeys(u.indices, "index"), **dict.fromkeys(u.sector_etfs, "sector"),
             **dict.fromkeys(u.allocation, "allocation")}
    sessions = reference_sessions(calendar["date"], bars)
    frame = input_freshness(last_rows(bars, index_bars), sessions, roles, blocking=[*u.allocation, "VIX"])
    lines = stale_lines(frame)
    blocking = frame.filter(pl.col("blocks_decision"))["input"].to_list()
    newest = sessions.max()
    if lines:
        log = context.log.error if blocking else context.log.warning
        log(f"{len(lines)} stale input(s) on {newest}:\n" + "\n".join(lines))
    else:
        context.log.info(f"all {frame.height} inputs have the newest session {newest}")
    stale = frame.filter(pl.col("stale"))
    yield dg.Output(frame, metadata={
        "dagster/row_count": frame.height, "reference_date": str(newest), "stale_inputs": stale.height,
        "blocking_stale_inputs": dg.MetadataValue.json(blocking),
        "stale": dg.MetadataValue.md(md_table(stale) if stale.height else "none"),
    })
    yield dg.AssetCheckResult(
        check_name=FRESHNESS_CHECK, passed=not lines,
        severity=dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN,
        description=(f"{stale.height} stale input(s) on {newest}" + (f"; blocking the decision: {blocking}"
                                                                      if blocking else "")) if lines
        else f"all {frame.height} inputs have {newest}",
        metadata={"stale_inputs": dg.MetadataValue.json(stale["input"].to_list()),
                  "details": dg.MetadataValue.json(lines[:50])},
    )

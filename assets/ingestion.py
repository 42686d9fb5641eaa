"""Group ``ingestion``: market data → ``raw.bars``, ``raw.index_bars``, ``ref.sectors``, ``ref.trading_calendar``."""

import dagster as dg

from assets._metadata import md_table
from assets.keys import RAW_BARS, RAW_INDEX_BARS, REF_SECTORS, REF_TRADING_CALENDAR
from ml.data.market import DataSourceError
from orchestration.resources import MarketDataResource, WarehouseResource
from warehouse import ingest as wi

GROUP = "ingestion"


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
def market_data(context: dg.AssetExecutionContext, market: MarketDataResource, warehouse: WarehouseResource):
    """Load the configured source and upsert bars, index bars and sectors in one transaction."""
    wh = warehouse.get()
    resolution = market.resolve()
    source = resolution.source
    context.log.info(f"market source: {source.describe()} — {resolution.reason}")
    if resolution.warning:
        context.log.warning("!" * 20 + " " + resolution.warning + " " + "!" * 20)
    universe = market.universe()
    try:
        data = source.load(universe, on_progress=context.log.info)
    except DataSourceError as exc:
        wi.log_rejected_batch(wh, context.run.run_id, source.source_kind, source.describe(), str(exc))
        raise dg.Failure(description=f"input rejected, nothing written:\n{exc}") from exc
    for warning in data.warnings:
        context.log.warning(warning)
    context.log.info(
        f"writing {data.bars.height:,} bars, {data.index_bars.height:,} index rows, "
        f"{data.sectors.height} sectors to {wh.path} (one transaction)"
    )
    result = wi.ingest_market(wh, data, run_id=context.run.run_id).by_table()
    tickers = wi.ticker_summary(wh)
    indices = wi.index_summary(wh)
    common = {"source": data.source, "source_description": data.description}
    if data.is_synthetic:
        common["WARNING"] = "SYNTHETIC DATA — not real market prices"
    for key, table, extra in (
        (RAW_BARS, "raw.bars", {"tickers": dg.MetadataValue.int(tickers.height),
                                "date_range_per_ticker": dg.MetadataValue.md(md_table(tickers))}),
        (RAW_INDEX_BARS, "raw.index_bars", {"date_range_per_symbol": dg.MetadataValue.md(md_table(indices))}),
        (REF_SECTORS, "ref.sectors", {}),
    ):
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


@dg.asset(key=REF_TRADING_CALENDAR, deps=[RAW_BARS], group_name=GROUP, kinds={"duckdb"})
def trading_calendar(context: dg.AssetExecutionContext, market: MarketDataResource, warehouse: WarehouseResource):
    """Trading days actually observed for the reference ETF (default SPY), with a 0-based session index."""
    wh = warehouse.get()
    n = wi.rebuild_trading_calendar(wh, market.reference_ticker)
    cal = wi.read_calendar(wh)
    context.log.info(f"trading calendar: {n} sessions {cal.min()}..{cal.max()} from {market.reference_ticker}")
    return dg.MaterializeResult(
        metadata={"dagster/row_count": n, "first_date": str(cal.min()), "last_date": str(cal.max()),
                  "reference_ticker": market.reference_ticker}
    )

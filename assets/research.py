"""Group ``research``: reproductions of the designs behind the project on their own protocols.

``research/thesis_market`` loads SPY and the VIX over the source's WHOLE history (the warehouse's
``raw.bars`` start in 2005 by default; the thesis trains from 1995); ``research/thesis_reproduction`` runs
the Q-learning thesis protocol on it (``ml.research.thesis``), writes its tables and an HTML report. A source
whose history does not cover the protocol (the synthetic market starts in 2005) skips the reproduction with a
warning instead of failing the pipeline; the protocol's dates are configurable."""
from datetime import date

import dagster as dg
import polars as pl
from pydantic import Field

from assets._metadata import md_table
from assets.keys import RESEARCH_THESIS, RESEARCH_THESIS_MARKET
from infra.resources import FeatureStoreResource, MarketDataResource, PolicyResource, WarehouseResource
from infra.version import code_version
from ml.data.market import DataSourceError
from ml.features import compute_features
from ml.reports.html import write_report
from ml.reports.thesis import HEADLINE, render_thesis_report
from ml.research.thesis import ThesisProtocol, reproduce

GROUP = "research"
TICKER = "SPY"
INDEX = "VIX"


class ThesisConfig(dg.Config):
    """The reproduction protocol's windows (ISO dates; defaults: the thesis's) and the Monte Carlo size."""

    train_start: str = Field(default="1995-10-16", description="first training day")
    train_end: str = Field(default="2014-12-31", description="last training day")
    test_start: str = Field(default="2015-01-01", description="first earned test day")
    test_end: str = Field(default="2023-12-31", description="last earned test day")
    mc_paths: int = Field(default=10_000, ge=100, description="KDE Monte Carlo paths (252 days each)")

    def protocol(self) -> ThesisProtocol:
        return ThesisProtocol(train_start=date.fromisoformat(self.train_start),
                              train_end=date.fromisoformat(self.train_end),
                              test_start=date.fromisoformat(self.test_start),
                              test_end=date.fromisoformat(self.test_end), mc_paths=self.mc_paths)


@dg.asset(key=RESEARCH_THESIS_MARKET, group_name=GROUP, kinds={"duckdb"})
def thesis_market(context: dg.AssetExecutionContext, market: MarketDataResource) -> dict[str, pl.DataFrame]:
    """SPY bars and VIX levels over the configured source's whole history (``history_start`` lifted)."""
    resolution = market.resolve()
    universe = market.universe().model_copy(update={
        "allocation": [TICKER], "sector_etfs": [], "include_stocks": False, "stocks": None, "indices": [INDEX],
        "history_start": None, "reference_ticker": TICKER})
    try:
        data = resolution.source.load(universe)
    except DataSourceError as exc:
        raise dg.Failure(description=f"thesis market data rejected, nothing written:\n{exc}") from exc
    tag = pl.lit(data.source).alias("source")
    bars, index = data.bars.with_columns(tag), data.index_bars.with_columns(tag)
    context.log.info(f"thesis market data from {resolution.source.describe()}: {TICKER} {bars['date'].min()} .. "
                     f"{bars['date'].max()} ({bars.height:,} bars), {INDEX} {index['date'].min()} .. "
                     f"{index['date'].max()}")
    context.add_output_metadata({"source": data.source, "spy_first": str(bars["date"].min()),
                                 "spy_last": str(bars["date"].max()), "dagster/row_count": bars.height,
                                 **({"WARNING": "SYNTHETIC DATA — not real market prices"} if data.is_synthetic else {})})
    return {"main": bars, "index": index}


@dg.asset(key=RESEARCH_THESIS, group_name=GROUP, kinds={"duckdb", "html"},
          ins={"market": dg.AssetIn(RESEARCH_THESIS_MARKET)})
def thesis_reproduction(context: dg.AssetExecutionContext, config: ThesisConfig, features: FeatureStoreResource,
                        policy: PolicyResource, warehouse: WarehouseResource,
                        market: dict[str, pl.DataFrame]) -> dict[str, pl.DataFrame] | None:
    """The thesis's protocol (SPY, train 1995-10-16 .. 2014, test 2015 .. 2023, no costs): every Q-learning
    member, the best single model, the model of models, E.L., with / without the VIX switcher, in the thesis's
    metric conventions next to its published values; the switcher sensitivity grid; KDE Monte Carlo bands."""
    protocol = config.protocol()
    bars = market["main"]
    source = str(bars["source"][0]) if "source" in bars.columns and bars.height else "unknown"
    first = bars["date"].min()
    if first is None or (protocol.train_start - first).days < 300 or bars["date"].max() < protocol.test_end:
        context.log.warning(f"thesis reproduction skipped: the protocol needs {TICKER} bars from about a year before "
                            f"{protocol.train_start} (200-day warm-up) through {protocol.test_end}; the {source} "
                            f"source has {first} .. {bars['date'].max()}. Configure the protocol's dates or a "
                            "source with that history (the real snapshot has SPY from 1993).")
        return None
    feats = compute_features(bars, market["index"], config=features.config())
    result = reproduce(feats, protocol, policy.qlearning_config(), log=context.log.info)
    head = result.table.filter(pl.col("strategy").is_in(list(HEADLINE)))
    for row in head.iter_rows(named=True):
        context.log.info(f"thesis test {row['strategy']}: Σlog {row['total_log_return']:.1f}, std {row['std']:.2f}, "
                         f"MDD {row['max_drawdown_log']:.1f}, SR full {row['sr_full']:.2f}")
    path = write_report(warehouse.report_dir() / "thesis_reproduction.html",
                        render_thesis_report(result, protocol, source, code_version()))
    context.log.info(f"thesis reproduction report: {path}")
    context.add_output_metadata({
        "report": dg.MetadataValue.path(str(path)),
        "best": result.book.best, "stack": list(result.book.stack),
        "switch": dg.MetadataValue.json(result.book.switch),
        "headline": dg.MetadataValue.md(md_table(head.select("strategy", "total_log_return", "std",
                                                             "max_drawdown_log", "sr_full", "thesis_sr_full"))),
        "source": source,
    })
    tag = pl.lit(source).alias("source")
    return {"main": result.table.with_columns(tag), "daily": result.daily, "switch_grid": result.switch_grid,
            "monte_carlo": result.monte_carlo, "members": result.members}

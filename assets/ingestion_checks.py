"""Blocking data-quality checks on the ingestion assets (Great Expectations suites in ``warehouse.quality``).

One Dagster check per rule, so the UI shows exactly which rule failed; the check metadata names the
offending ticker/date rows. Error-severity rules are blocking: a failure stops downstream assets in
the same run. Warn-severity rules (e.g. daily |return| > 50%) are reported, not blocking.
"""

from datetime import date

import dagster as dg
import polars as pl

from assets.keys import RAW_BARS, RAW_INDEX_BARS
from infra.resources import MarketDataResource
from ml.data.market import BARS_SCHEMA, INDEX_BARS_SCHEMA
from warehouse import quality


def _specs(asset_key: dg.AssetKey, rules) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(name, asset=asset_key, blocking=(severity == "error"), description=description)
        for name, severity, description in rules
    ]


def _results(asset_key: dg.AssetKey, report, log) -> list[dg.AssetCheckResult]:
    out = []
    for r in report.results:
        if not r.passed:
            log.warning(f"[{r.rule}] {r.n_failed} row(s) failed: {r.description}. e.g. {r.examples[:3]}")
        out.append(
            dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=r.rule,
                passed=r.passed,
                severity=dg.AssetCheckSeverity.ERROR if r.severity == "error" else dg.AssetCheckSeverity.WARN,
                metadata={
                    "rows_checked": r.n_checked,
                    "rows_failed": r.n_failed,
                    "rows_waived": r.n_waived,
                    "examples": dg.MetadataValue.json(r.examples[:20]),
                },
                description=r.description,
            )
        )
    return out


def _range(market: MarketDataResource) -> "tuple[date | None, date | None]":
    u = market.universe()
    return u.history_start, u.history_end


@dg.multi_asset_check(specs=_specs(RAW_BARS, quality.BARS_RULES) + _specs(RAW_INDEX_BARS, quality.INDEX_RULES),
                      name="market_data_quality", can_subset=False,
                      ins={"bars": dg.AssetIn(RAW_BARS), "index_bars": dg.AssetIn(RAW_INDEX_BARS)})
def market_data_quality(context: dg.AssetCheckExecutionContext, market: MarketDataResource, bars: pl.DataFrame,
                        index_bars: pl.DataFrame):
    """Validate every stored bar and VIX / VIX3M level against the reference calendar (the reference ticker's
    observed dates). One step for both assets: each asset's results are recorded before a failed blocking rule
    stops the step, so a bad bar does not leave the index checks unevaluated (automation gates per asset)."""
    calendar = bars.filter(pl.col("ticker") == market.calendar_ticker)["date"]
    start, end = _range(market)
    for key, report in (
        (RAW_BARS, quality.validate_bars(bars.select(list(BARS_SCHEMA)), calendar, history_start=start,
                                         history_end=end, waivers=quality.load_known_anomalies())),
        (RAW_INDEX_BARS, quality.validate_index_bars(index_bars.select(list(INDEX_BARS_SCHEMA)), calendar,
                                                     history_start=start, history_end=end)),
    ):
        context.log.info(report.summary_line())
        yield from _results(key, report, context.log)

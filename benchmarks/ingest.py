"""Benchmark: full ingest of a CSV snapshot directory into a fresh DuckDB file.

Usage: python benchmarks/ingest.py [DATA_DIR]   (default ../shared/data/market)
Reports wall time (read+validate, write), rows/s and peak RSS. Full history (no date bounds).
Target (issue #2): < 15 s and < 2 GB peak RSS on a 2-core machine for ~1.1M bars.
"""
from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml.data.csv_source import CsvMarketSource  # noqa: E402
from ml.data.universe import Universe  # noqa: E402
from warehouse import Warehouse  # noqa: E402
from warehouse.ingest import ingest_market, rebuild_trading_calendar  # noqa: E402


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data" / "market"
    if not (data_dir / "ohlcv").is_dir():
        sys.exit(f"no snapshot at {data_dir}")
    with tempfile.TemporaryDirectory() as tmp:
        wh = Warehouse(Path(tmp) / "bench.duckdb")
        t0 = time.perf_counter()
        market = CsvMarketSource(data_dir).load(Universe(history_start=None), on_progress=lambda _: None)
        t1 = time.perf_counter()
        result = ingest_market(wh, market, run_id="benchmark").by_table()
        rebuild_trading_calendar(wh, "SPY")
        t2 = time.perf_counter()
        size_mb = wh.path.stat().st_size / 1e6
    rows = market.bars.height + market.index_bars.height
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"snapshot: {data_dir}")
    print(f"tickers: {market.bars['ticker'].n_unique()}  bars: {market.bars.height:,}  index rows: {market.index_bars.height:,}")
    print(f"read+validate: {t1 - t0:6.2f} s")
    print(f"write (1 txn) + calendar + snapshot publish: {t2 - t1:6.2f} s   (inserted {result['raw.bars'].inserted:,})")
    print(f"total: {t2 - t0:6.2f} s   {rows / (t2 - t0):,.0f} rows/s   peak RSS {rss_mb:,.0f} MB   db {size_mb:.0f} MB")


if __name__ == "__main__":
    main()

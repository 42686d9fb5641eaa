"""Market-data sources (CSV directory, Yahoo, synthetic) returning canonical Polars frames."""
from ml.data.market import (
    BARS_SCHEMA,
    INDEX_BARS_SCHEMA,
    SECTORS_SCHEMA,
    MarketData,
    SourceUnavailableError,
    DataSourceError,
)
from ml.data.universe import Universe

__all__ = [
    "BARS_SCHEMA",
    "INDEX_BARS_SCHEMA",
    "SECTORS_SCHEMA",
    "MarketData",
    "SourceUnavailableError",
    "DataSourceError",
    "Universe",
]

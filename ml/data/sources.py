"""Choosing a market-data source: ``csv`` | ``yahoo`` | ``synthetic`` | ``auto``.

``auto`` picks, in order: a CSV directory if one is configured (config or ``REGIMEFLOW_DATA_DIR``)
or present at the default path ``./data/market``; else Yahoo if reachable; else the seeded
synthetic market, with a loud warning. An explicit choice never falls back: ``yahoo`` while
offline or ``csv`` with a missing directory fails with a clear message.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from ml.data.market import MarketData, SourceUnavailableError
from ml.data.universe import Universe

SourceName = Literal["auto", "csv", "yahoo", "synthetic"]
DEFAULT_DATA_DIR = Path("data") / "market"
DATA_DIR_ENV = "REGIMEFLOW_DATA_DIR"
SOURCE_ENV = "REGIMEFLOW_SOURCE"

SYNTHETIC_WARNING = (
    "NO REAL MARKET DATA CONFIGURED: using the SYNTHETIC market generator. Every table and report "
    f"is labelled source='synthetic'. Point {DATA_DIR_ENV} at a CSV snapshot directory "
    "(or go online for Yahoo) to use real data."
)


class MarketSource(Protocol):
    source_kind: str

    def describe(self) -> str: ...

    def load(self, universe: Universe, on_progress: Callable[[str], None] | None = None) -> MarketData: ...


@dataclass(frozen=True)
class SyntheticMarketSource:
    """Seeded synthetic market (see ``ml.data.synthetic``)."""

    seed: int = 7
    source_kind: str = "synthetic"

    def describe(self) -> str:
        return f"synthetic market (seed={self.seed})"

    def load(self, universe: Universe, on_progress: Callable[[str], None] | None = None) -> MarketData:
        from ml.data.synthetic import generate_market

        market = generate_market(universe, seed=self.seed)
        if on_progress:
            for ticker, n in market.bars.group_by("ticker", maintain_order=True).len().iter_rows():
                on_progress(f"generated {ticker:<8} {n:>6} synthetic bars")
        return market


@dataclass(frozen=True)
class YahooSource:
    """Adapter giving ``YahooMarketSource`` the common ``load(universe, on_progress)`` signature."""

    sectors_file: Path | None = None
    source_kind: str = "yahoo"

    def describe(self) -> str:
        return "Yahoo Finance via yfinance"

    def load(self, universe: Universe, on_progress: Callable[[str], None] | None = None) -> MarketData:
        from ml.data.yahoo_source import YahooMarketSource

        if on_progress:
            on_progress("downloading from Yahoo Finance ...")
        return YahooMarketSource().load(universe, sectors_file=self.sectors_file)


def yahoo_reachable() -> bool:
    from ml.data.yahoo_source import YahooMarketSource

    return YahooMarketSource.is_reachable()


@dataclass(frozen=True)
class Resolution:
    source: MarketSource
    reason: str
    warning: str | None = None


def resolve_source(
    name: str | None = None,
    data_dir: str | Path | None = None,
    seed: int = 7,
    env: dict[str, str] | None = None,
    default_dir: Path = DEFAULT_DATA_DIR,
    is_yahoo_reachable: Callable[[], bool] = yahoo_reachable,
) -> Resolution:
    """Resolve the configured source name to a source object, explaining the choice in ``reason``.

    Precedence: explicit ``name`` > ``$REGIMEFLOW_SOURCE`` > ``auto``; explicit ``data_dir`` >
    ``$REGIMEFLOW_DATA_DIR`` > ``./data/market`` if it exists.
    """
    from ml.data.csv_source import CsvMarketSource

    env = dict(os.environ) if env is None else env
    name = (name or env.get(SOURCE_ENV) or "auto").lower()
    configured_dir = data_dir or env.get(DATA_DIR_ENV) or None
    if name not in ("auto", "csv", "yahoo", "synthetic"):
        raise ValueError(f"unknown market source {name!r}: use auto, csv, yahoo or synthetic")
    if name == "synthetic":
        return Resolution(SyntheticMarketSource(seed), "source=synthetic requested", SYNTHETIC_WARNING)
    if name == "yahoo":
        if not is_yahoo_reachable():
            raise SourceUnavailableError(
                "source=yahoo was requested but Yahoo Finance (query1.finance.yahoo.com:443) is not reachable. "
                f"Check the network, or set {SOURCE_ENV}=csv with {DATA_DIR_ENV}=<dir>, or use source=synthetic."
            )
        sectors = Path(configured_dir) / "sectors.csv" if configured_dir else None
        return Resolution(YahooSource(sectors), "source=yahoo requested")
    if name == "csv" or configured_dir:
        directory = Path(configured_dir) if configured_dir else default_dir
        if not directory.is_dir():
            how = f"{DATA_DIR_ENV}/data_dir" if configured_dir else f"the default path ({default_dir})"
            raise SourceUnavailableError(
                f"CSV data directory {directory} (from {how}) does not exist. It must contain ohlcv/, index/ "
                "and sectors.csv in the layout documented in the README."
            )
        why = f"CSV directory {directory} " + ("configured" if configured_dir else "requested (default path)")
        return Resolution(CsvMarketSource(directory), why)
    if default_dir.is_dir():
        return Resolution(CsvMarketSource(default_dir), f"auto: found CSV directory at the default path {default_dir}")
    if is_yahoo_reachable():
        return Resolution(YahooSource(), "auto: no CSV directory configured or at the default path; Yahoo is reachable")
    return Resolution(
        SyntheticMarketSource(seed),
        "auto: no CSV directory configured or at the default path, and Yahoo is not reachable",
        SYNTHETIC_WARNING,
    )

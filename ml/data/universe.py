"""Universe configuration: which tickers and indices the pipeline loads (typed, with defaults)."""
from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

ALLOCATION_ASSETS: tuple[str, ...] = ("SPY", "QQQ", "TLT", "GLD")
#: The allocation book's equity sleeve (what the VIX-shaped reward charges, the circuit breaker caps and
#: the reports call "equity exposure") and its defensive sleeve.
EQUITY_ASSETS: tuple[str, ...] = ("SPY", "QQQ")
DEFENSIVE_ASSETS: tuple[str, ...] = ("TLT", "GLD")
SECTOR_ETFS: dict[str, str] = {
    "XLB": "Materials",
    "XLE": "Energy",
    "XLF": "Financials",
    "XLI": "Industrials",
    "XLK": "Information Technology",
    "XLP": "Consumer Staples",
    "XLU": "Utilities",
    "XLV": "Health Care",
    "XLY": "Consumer Discretionary",
    "XLRE": "Real Estate",
    "XLC": "Communication Services",
}
INDICES: tuple[str, ...] = ("VIX", "VIX3M")


class Universe(BaseModel):
    """What to load. Cash is implicit in the allocation universe (it has no bars).

    ``stocks``: ``None`` means "every stock listed in the source's sectors.csv" when
    ``include_stocks`` is true; an explicit list restricts it.
    ``history_start``/``history_end``: inclusive date bounds on loaded bars (``None`` = unbounded).
    ``reference_ticker``: the ETF whose observed trading days define ``ref.trading_calendar``.
    """

    allocation: list[str] = Field(default_factory=lambda: list(ALLOCATION_ASSETS))
    sector_etfs: list[str] = Field(default_factory=lambda: list(SECTOR_ETFS))
    include_stocks: bool = True
    stocks: list[str] | None = None
    indices: list[str] = Field(default_factory=lambda: list(INDICES))
    history_start: date | None = date(2005, 1, 1)
    history_end: date | None = None
    reference_ticker: str = "SPY"

    def etf_tickers(self) -> list[str]:
        """Allocation assets then sector ETFs, de-duplicated, order kept."""
        return list(dict.fromkeys([*self.allocation, *self.sector_etfs]))

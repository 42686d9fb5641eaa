"""Reads of ``regimes.sector_hmm_live`` (the deployed fold's sector-HMM states up to the newest bar)."""
from __future__ import annotations

import polars as pl

from warehouse.db import Warehouse, query_pl, scalar

LIVE_TABLE = "regimes.sector_hmm_live"


def _exists(con) -> bool:
    return bool(scalar(con, "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'regimes' "
                            "AND table_name = 'sector_hmm_live'"))


def read_live_states(wh: Warehouse, since=None) -> pl.DataFrame:
    """All rows (``fold, sector, date, p_*, state``) dated on/after ``since``; empty when never built."""
    with wh.read() as con:
        if not _exists(con):
            return pl.DataFrame(schema={"fold": pl.Utf8, "sector": pl.Utf8, "date": pl.Date, "state": pl.Utf8})
        return query_pl(con, f"SELECT * FROM {LIVE_TABLE} WHERE ? IS NULL OR date >= ? ORDER BY sector, date",
                        [since, since])


def sector_states_on(wh: Warehouse, days: list) -> tuple[str | None, dict, dict]:
    """``(fold, {date: {sector: state}}, {date: {sector: {p_<state>: prob}}})`` for ``days``."""
    with wh.read() as con:
        if not _exists(con):
            return None, {}, {}
        rows = query_pl(con, f"SELECT * FROM {LIVE_TABLE} WHERE date IN (SELECT unnest(?)) ORDER BY date, sector",
                        [list(days)])
    if rows.is_empty():
        return None, {}, {}
    pcols = [c for c in rows.columns if c.startswith("p_")]
    states: dict = {}
    probs: dict = {}
    for r in rows.iter_rows(named=True):
        states.setdefault(r["date"], {})[r["sector"]] = r["state"]
        probs.setdefault(r["date"], {})[r["sector"]] = {c: (round(r[c], 6) if r[c] is not None else None)
                                                        for c in pcols}
    return rows["fold"][0], states, probs

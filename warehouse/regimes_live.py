"""Reads of ``regimes.sector_hmm_live`` (the deployed fold's sector-HMM states up to the newest bar)."""
from __future__ import annotations

import polars as pl

from warehouse.db import Warehouse, query_pl, table_exists

LIVE_TABLE = "regimes.sector_hmm_live"


def read_live_states(wh: Warehouse, since=None) -> pl.DataFrame:
    """All rows (``fold, sector, date, p_*, state``) dated on/after ``since``; empty when never built."""
    with wh.read() as con:
        if not table_exists(con, LIVE_TABLE):
            return pl.DataFrame(schema={"fold": pl.Utf8, "sector": pl.Utf8, "date": pl.Date, "state": pl.Utf8})
        return query_pl(con, f"SELECT * FROM {LIVE_TABLE} WHERE ? IS NULL OR date >= ? ORDER BY sector, date",
                        [since, since])


def sector_states_on(wh: Warehouse, days: list) -> tuple[str | None, dict, dict]:
    """``(fold, {date: {sector: state}}, {date: {sector: {p_<state>: prob}}})`` for ``days``."""
    with wh.read() as con:
        if not table_exists(con, LIVE_TABLE):
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

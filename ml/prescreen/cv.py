"""Purged k-fold cross-validation with an embargo (López de Prado, AFML ch. 7).

Rows are (ticker, date) samples whose label window is [t, label_end] (label_end = the date of the
ticker's row t+h: a label dated t is known only at the close of label_end). Validation blocks
are contiguous runs of dates; a training row is *purged* when its label window overlaps the
span [first validation date, last validation label_end], and *embargoed* when its date falls in
the ``embargo_days`` trading sessions after the block. Used inside a fold's train window only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from ml.folds import as_day_array


def label_end_dates(frame: pl.DataFrame, horizon: int) -> pl.Series:
    """Per row of a (ticker, date)-sorted frame: the date of the ticker's row ``horizon`` rows later
    (null for the last ``horizon`` rows of each ticker), named ``label_end``."""
    return frame.select(pl.col("date").shift(-horizon).over("ticker").alias("label_end")).to_series()


def purged_kfold(
    dates_of_rows: Any,
    label_end_dates: Any,
    n_splits: int = 5,
    embargo_days: int = 0,
    *,
    calendar: Sequence[Any] | pl.Series | np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``n_splits`` (train_idx, val_idx) pairs of row positions.

    ``dates_of_rows`` / ``label_end_dates``: per-row dates (label_end >= date). Blocks split the
    sorted unique row dates into ``n_splits`` contiguous runs (all rows of a date share a block).
    Training rows = all other rows minus (a) rows whose [date, label_end] overlaps
    [block start, max label_end of the block] and (b) rows dated within ``embargo_days`` sessions
    of ``calendar`` (default: the unique row dates) after the block's last date.
    """
    d = as_day_array(dates_of_rows)
    e = as_day_array(label_end_dates)
    if d.shape != e.shape:
        raise ValueError("dates_of_rows and label_end_dates must have the same length")
    if np.isnat(d).any() or np.isnat(e).any():
        raise ValueError("dates and label end dates must not be null")
    if (e < d).any():
        raise ValueError("label_end_dates must be >= dates_of_rows")
    udates = np.unique(d)
    if n_splits < 2 or udates.size < n_splits:
        raise ValueError(f"need n_splits >= 2 and at least n_splits distinct dates (got {udates.size})")
    cal = np.unique(as_day_array(calendar)) if calendar is not None else udates
    out = []
    for block in np.array_split(udates, n_splits):
        v0, v1 = block[0], block[-1]
        val = (d >= v0) & (d <= v1)
        span_end = e[val].max()
        overlap = (d <= span_end) & (e >= v0)
        i_end = int(np.searchsorted(cal, v1, side="right")) - 1
        emb_end = cal[min(i_end + embargo_days, cal.size - 1)] if i_end >= 0 else v1
        embargo = (d > v1) & (d <= emb_end)
        train = ~val & ~overlap & ~embargo
        out.append((np.flatnonzero(train), np.flatnonzero(val)))
    return out

"""Table helpers shared by the book reports (sector book, stock book): cell formats, ``value [lo, hi]`` cells,
the ``table`` macro's dict, fold order, the data-source line and the cost-stress table."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

import polars as pl

from ml.reports.analysis import multiplier_label
from ml.reports.formatting import MISSING, is_missing
from ml.reports.html import _cost_stress_header, _order_strategies, source_label

__all__ = ["FORMATS", "cell", "cost_stress_table", "fold_order", "has_rows", "is_synthetic_source", "source_text",
           "view_table", "with_ci"]

#: Cell formats by kind (the shared ``fmt`` filter does not know the trade statistics).
FORMATS = {"pct": "{:.1%}", "pct2": "{:.2%}", "ratio": "{:.2f}", "ratio3": "{:.3f}", "dec1": "{:.1f}", "int": "{:,.0f}"}


def is_synthetic_source(source: str | None) -> bool:
    """``"synthetic"`` or ``"synthetic:<detail>"`` (e.g. ``synthetic:seed=7``)."""
    return str(source or "").strip().lower().partition(":")[0].strip() == "synthetic"


def source_text(source: str | None) -> str:
    """``csv:/path`` -> "real snapshot (CSV) · /path"; ``synthetic:seed=7`` -> "SYNTHETIC DATA · seed=7"."""
    kind, _, detail = str(source or "").strip().partition(":")
    if not kind:
        return "unknown source"
    text = source_label(kind)
    return f"{text} · {detail}" if detail else text


def has_rows(frame: pl.DataFrame | None, *columns: str) -> bool:
    """``frame`` exists, has rows and every one of ``columns``."""
    return frame is not None and frame.height > 0 and all(c in frame.columns for c in columns)


def cell(value: Any, kind: str) -> str:
    """One cell's text in format ``kind`` (:data:`FORMATS`); missing values read :data:`MISSING`."""
    if is_missing(value):
        return MISSING
    if isinstance(value, bool | str | date):
        return str(value)
    return FORMATS[kind].format(float(value))


def with_ci(frame: pl.DataFrame, column: str, kind: str = "ratio") -> list[str]:
    """``0.52 [-0.10, 1.14]`` from ``column`` and its ``_ci_low`` / ``_ci_high``."""
    lo, hi = f"{column}_ci_low", f"{column}_ci_high"
    if not {lo, hi} <= set(frame.columns):
        return [cell(v, kind) for v in frame.get_column(column).to_list()]
    return [cell(v, kind) if is_missing(v) or is_missing(a) or is_missing(b)
            else f"{cell(v, kind)} [{cell(a, kind)}, {cell(b, kind)}]"
            for v, a, b in frame.select(column, lo, hi).iter_rows()]  # fmt: skip


def view_table(frame: pl.DataFrame, columns: Sequence[str], kinds: Mapping[str, str], labels: Mapping[str, str],
               *, formatted: Mapping[str, list[str]] | None = None, headings: Mapping[str, str] | None = None,
               **extra: Any) -> dict[str, Any]:
    """What the ``table`` macro needs: the frame cut to ``columns`` (those present), each cell formatted by its
    column's kind in ``kinds`` (``formatted`` overrides), headed by ``labels`` (``headings`` overrides)."""
    present = [c for c in columns if c in frame.columns]
    sub = frame.select(present)
    cells = {c: [cell(v, kinds[c]) for v in sub.get_column(c).to_list()] for c in present if c in kinds}
    cells.update(formatted or {})
    heads = {c: labels[c] for c in present if c in labels}
    heads.update(headings or {})
    return {"frame": sub, "columns": present, "formatted": cells, "labels": heads, **extra}


def fold_order(*frames: pl.DataFrame | None) -> list[str]:
    """Fold keys in time order (by their first date in the first frame with ``fold`` and ``date``), else
    the keys of any frame with a ``fold`` column, sorted."""
    for f in frames:
        if has_rows(f, "fold", "date"):
            firsts = f.group_by("fold").agg(pl.col("date").min()).sort("date", "fold")
            return [str(k) for k in firsts.get_column("fold").to_list()]
    keys: set[str] = set()
    for f in frames:
        if has_rows(f, "fold"):
            keys |= {str(k) for k in f.get_column("fold").unique().to_list()}
    return sorted(keys)


def cost_stress_table(metrics: pl.DataFrame | None, strategies: Sequence[str]) -> dict[str, Any] | None:
    """Sharpe and CAGR per strategy at each cost multiplier (columns ``sharpe_1x`` ..., ``cagr_1x`` ...), the
    ``strategies`` first in that order."""
    if not has_rows(metrics, "strategy", "cost_multiplier"):
        return None
    mults = sorted(float(x) for x in metrics.get_column("cost_multiplier").unique().drop_nulls().to_list())
    wide = _order_strategies(metrics.select("strategy").unique(maintain_order=True), strategies)
    cols: list[str] = []
    for metric in ("sharpe", "cagr"):
        if metric not in metrics.columns:
            continue
        for mult in mults:
            name = f"{metric}_{multiplier_label(mult)}"
            part = metrics.filter(pl.col("cost_multiplier") == mult).select("strategy", pl.col(metric).alias(name))
            wide = wide.join(part.unique("strategy", keep="first"), on="strategy", how="left", maintain_order="left")
            cols.append(name)
    if not cols:
        return None
    header = _cost_stress_header(["strategy", *cols])
    formatted = {c: [cell(v, "ratio" if c.startswith("sharpe") else "pct") for v in wide.get_column(c).to_list()]
                 for c in cols}
    return {"frame": wide, "columns": ["strategy", *cols], "formatted": formatted,
            "labels": {"strategy": "Strategy", **header["labels"]}, "header_groups": header["groups"]}

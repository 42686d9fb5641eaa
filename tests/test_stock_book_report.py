"""The stock book's HTML report (ml.reports.stock_book) on small synthetic frames: 2 folds x 60 days."""
from __future__ import annotations

import base64
import re
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from markupsafe import escape

from ml.metrics import sharpe
from ml.regimes.vix import BANDS
from ml.reports.charts import is_png
from ml.reports.stock_book import (
    ABLATION,
    FOCUS,
    SECTIONS,
    STRATEGIES,
    regime_weighting,
    render_stock_book_report,
    stock_book_view,
)
from ml.stock_book import BENCHMARKS, STOCK_VARIANTS, SURVIVORSHIP_NOTE

FOLDS = {"2023": date(2023, 1, 2), "2024": date(2024, 1, 1)}
N_DAYS = 60
CHARTS = 4  # equity, drawdown, exposure vs VIX, attribution
SHARPE = {"stock_book": 0.83, "stock_book_max_sharpe": 0.61, "stock_book_equal_weights": 0.47, "spy_buy_hold": 0.55,
          "ew_stocks": 0.52, "prescreen_only": 0.31}


def _business_days(start: date, n: int) -> list[date]:
    out, d = [], start
    while len(out) < n:
        if d.weekday() < 5:
            out.append(d)
        d += timedelta(days=1)
    return out


def _frames() -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(0)
    track, trades, cap, ens, per_fold = [], [], [], [], []
    for f, (fold, start) in enumerate(FOLDS.items()):
        days = _business_days(start, N_DAYS)
        for s in STRATEGIES:
            book = s in STOCK_VARIANTS
            for i, (d, r) in enumerate(zip(days, rng.normal(0.0005, 0.01, N_DAYS))):
                track.append({"strategy": s, "date": d, "fold": fold, "net_return": float(r),
                              "gross_return": float(r) + 1e-4, "turnover": 0.05, "cost": 1e-4, "equity": None,
                              "drawdown": None, "long_exposure": 0.3 + 0.01 * (i % 40) if book else 1.0,
                              "short_exposure": 0.0, "positions": 8 if book else 1, "candidates": 20 if book else 0,
                              "band": BANDS[(i // 15) % len(BANDS)] if book else None,
                              "vix": 14.0 + 0.3 * i if book else None})
            per_fold.append({"fold": fold, "strategy": s, "sharpe": SHARPE[s] + (0.2 if f else -0.2),
                             "total_return": 0.02, "max_drawdown": -0.05})
        for k in range(14):  # stock_book: 12 closed trades with distinct P&L, 2 still open at the fold's end
            closed = k < 12
            trades.append({"fold": fold, "strategy": "stock_book", "ticker": f"T{f}{k:02d}", "entry_date": days[k],
                           "exit_date": days[k + 5] if closed else None, "pnl": (k - 5.5) * 0.001 * (f + 1),
                           "holding_days": 5, "closed": closed,
                           "exit_reason": ("stop", "sell", "regime")[k % 3] if closed else "end",
                           "entry_conviction": 0.4 + 0.01 * k, "entry_prescreen": 0.5, "entry_rl": -0.25,
                           "entry_technical": 0.125, "max_weight": 0.05})
        trades.append({"fold": fold, "strategy": "stock_book", "ticker": f"OPEN{f}", "entry_date": days[50],
                       "exit_date": None, "pnl": 0.5, "holding_days": 9, "closed": False, "exit_reason": "end",
                       "entry_conviction": 0.9, "entry_prescreen": 0.9, "entry_rl": 0.9, "entry_technical": 0.9,
                       "max_weight": 0.08})
        trades.append({"fold": fold, "strategy": "stock_book_max_sharpe", "ticker": f"OTHER{f}", "entry_date": days[1],
                       "exit_date": days[3], "pnl": 0.4, "holding_days": 2, "closed": True, "exit_reason": "sell",
                       "entry_conviction": 0.9, "entry_prescreen": 0.9, "entry_rl": 0.9, "entry_technical": 0.9,
                       "max_weight": 0.08})
        for c in (0.03, 0.05, 0.07):
            cap.append({"fold": fold, "position_cap": c, "val_sharpe": 1.0 - abs(c - 0.05 - 0.02 * f) * 10,
                        "val_return": 0.04, "chosen": c == (0.05 if f == 0 else 0.07)})
        for m, w in (("ppo_a", 0.5), ("ppo_b", 0.3), ("ppo_c", 0.2)):
            ens.append({"fold": fold, "member": m, "weight": w if f == 0 else 1 / 3, "composite": w,
                        "val_return": 0.01, "fallback_equal": f == 1})
    metrics = pl.DataFrame([
        {"strategy": s, "cost_multiplier": m, "total_return": 0.1 / m, "cagr": 0.08 / m, "ann_vol": 0.15,
         "sharpe": SHARPE[s] / m, "sharpe_ci_low": -0.21, "sharpe_ci_high": 1.62, "sortino": 1.0,
         "max_drawdown": -0.12, "avg_turnover": 0.05, "cost_drag": 0.004 * m, "avg_gross_exposure": 0.6,
         **{f"sharpe_diff_{b}{x}": v for b in BENCHMARKS for x, v in (("", 0.1), ("_ci_low", -0.4), ("_ci_high", 0.6))},
         "trades": 24 if s in STOCK_VARIANTS else None, "win_rate": 0.55 if s in STOCK_VARIANTS else None,
         "avg_win": 0.004, "avg_loss": -0.003, "profit_factor": 1.3, "avg_hold_days": 5.0}
        for m in (1.0, 2.0, 3.0) for s in STRATEGIES])  # fmt: skip
    attribution = pl.DataFrame([{"strategy": s, "source": src, "pnl": 0.01 * (j + 1) * (1 if i else -1)}
                                for i, s in enumerate(STOCK_VARIANTS)
                                for j, src in enumerate(("prescreen", "rl", "technical", "fundamental", "unattributed"))])
    return {"track": pl.DataFrame(track), "metrics": metrics, "attribution": attribution,
            "trades": pl.DataFrame(trades), "per_fold": pl.DataFrame(per_fold), "cap_search": pl.DataFrame(cap),
            "ensemble": pl.DataFrame(ens)}


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return _frames()


def _render(tmp_path, frames, source="csv:/data/snapshot", **override) -> str:
    path = render_stock_book_report(tmp_path / "out" / "stock_book.html", source=source, code_version="abc1234",
                                    **{**frames, **override})
    assert path == tmp_path / "out" / "stock_book.html" and path.is_file()
    return path.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def report_html(tmp_path_factory, frames) -> str:
    return _render(tmp_path_factory.mktemp("stock_book_report"), frames)


def _images(html: str) -> dict[str, bytes]:
    return {alt: base64.b64decode(data) for data, alt in
            re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)"', html)}


def _section(html: str, sid: str) -> str:
    start = html.index(f'<section id="{sid}">')
    return html[start: html.index("</section>", start)]


def test_report_is_self_contained_with_every_section(report_html):
    html = report_html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "<script" not in html.lower() and "http://" not in html and "https://" not in html
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    positions = [html.index(f'<section id="{sid}"><h2>{escape(text)}</h2>') for sid, text in SECTIONS]
    assert positions == sorted(positions)  # every section, in order
    assert str(escape(SURVIVORSHIP_NOTE)) in _section(html, "overview")
    assert "real snapshot (CSV) · /data/snapshot" in html and "abc1234" in html and "SYNTHETIC" not in html
    images = _images(html)
    assert set(images) == {"equity curves", "drawdown of stock_book vs SPY", "exposure vs VIX", "attribution by source"}
    assert len(images) == CHARTS and all(is_png(png) for png in images.values())
    headline = _section(html, "headline")
    assert "0.83 [-0.21, 1.62]</td>" in headline  # stock_book's Sharpe with its CI, as in the table
    assert all(s in headline for s in STRATEGIES)
    assert "3× costs" in _section(html, "cost_stress")
    attribution = _section(html, "attribution")
    assert "unattributed" in attribution and "-15.00%" in attribution  # stock_book's total: -(1 + ... + 5) %
    per_fold = _section(html, "per_fold")
    assert per_fold.index(">2023<") < per_fold.index(">2024<") and "1.03" in per_fold  # 0.83 + 0.2 in fold 2024
    cap = _section(html, "position_cap")
    assert "5.0%" in cap and "7.0%" in cap and cap.count(" ★</td>") == 2
    ensemble = _section(html, "ensemble")
    assert "ppo_a" in ensemble and "Equal-weight fallback in fold(s) 2024" in ensemble


def test_synthetic_source_is_labelled(tmp_path, frames):
    html = _render(tmp_path, frames, source="synthetic:seed=7")
    assert 'class="synth-banner"' in html and "seed=7" in html
    assert html.count("SYNTHETIC DATA") >= len(SECTIONS) + 3  # banners, header, every section heading
    for sid, _ in SECTIONS:
        assert '<span class="tag-synth">SYNTHETIC DATA</span>' in _section(html, sid)
    assert str(escape(SURVIVORSHIP_NOTE)) in html


def test_top_trades_and_exit_reasons(report_html, frames):
    trades = _section(report_html, "trades")
    best, worst = trades.split("Worst 10 closed trades")
    closed = frames["trades"].filter((pl.col("strategy") == FOCUS) & pl.col("closed")).sort("pnl")
    for ticker in closed.get_column("ticker").tail(10).to_list():
        assert f">{ticker}<" in best
    for ticker in closed.get_column("ticker").head(10).to_list():
        assert f">{ticker}<" in worst
    assert ">T106<" not in best and ">T105<" not in worst  # the 11th best / worst (P&L +0.1% / -0.1%)
    assert "OPEN" not in trades and "OTHER" not in trades  # open trades and other variants are not listed
    assert "24 closed trades" in trades and "0.51" in trades  # entry conviction of T111, the best
    exits = _section(report_html, "exit_reasons")
    rows = dict(re.findall(r'<td class="">([^<]+)</td><td class="num">(\d+)</td>', exits))
    assert rows == {"stop": "8", "sell": "8", "regime": "8", "(open at fold end)": "6"}


def test_regime_weighting_sentence_follows_the_interval(frames):
    days = _business_days(date(2023, 1, 2), 250)
    a = np.random.default_rng(1).normal(0.0005, 0.01, len(days))

    def track(b: np.ndarray) -> pl.DataFrame:
        return pl.DataFrame({"strategy": [FOCUS] * len(days) + [ABLATION] * len(days), "date": days * 2,
                             "fold": ["2023"] * (2 * len(days)), "net_return": np.concatenate([a, b])})

    same = regime_weighting(track(np.random.default_rng(2).permutation(a)), None, n_boot=300)
    assert same["days"] == 250 and same["diff"] == pytest.approx(0.0, abs=1e-9)
    assert same["ci_low"] < 0.0 < same["ci_high"] and "includes 0" in same["sentence"]
    better = regime_weighting(track(a - 0.001), None, n_boot=300)
    assert better["diff"] == pytest.approx(sharpe(a) - sharpe(a - 0.001))
    assert better["ci_low"] > 0.0 and "lies above 0" in better["sentence"]
    worse = regime_weighting(track(a + 0.001), None, n_boot=300)
    assert worse["ci_high"] < 0.0 and "lies below 0" in worse["sentence"]
    no_track = regime_weighting(None, frames["metrics"])  # both Sharpes from the metrics, no interval
    assert no_track["diff"] is None and "0.83" in no_track["sentence"] and "0.47" in no_track["sentence"]
    view = stock_book_view(**frames, source="csv:x", code_version="x")
    assert view["regime_weighting"]["days"] == 2 * N_DAYS


def test_empty_inputs_render_none_lines(tmp_path, frames):
    empty = pl.DataFrame()
    html = _render(tmp_path, frames, trades=empty, ensemble=empty, cap_search=None, attribution=empty)
    assert "None: no closed trades of stock_book." in html and "None: no RL ensemble weights." in html
    assert "None: no trades of stock_book." in html and "None: no position-cap search." in html
    assert "None: no attribution." in html and len(_images(html)) == CHARTS - 1
    html = _render(tmp_path, {k: empty for k in frames}, source="")
    assert str(escape(SURVIVORSHIP_NOTE)) in html and "None: no metrics." in html and not _images(html)
    assert "None: no daily track." in html and "Neither stock_book nor stock_book_equal_weights" in html
    assert "<script" not in html and "http" not in html

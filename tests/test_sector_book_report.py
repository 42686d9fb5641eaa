"""The sector book's HTML report (ml.reports.sector_book) on small synthetic frames: 2 folds, 2 groups."""
from __future__ import annotations

import base64
import re
from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from markupsafe import escape

from ml.reports.charts import is_png
from ml.reports.sector_book import (
    STRATEGIES,
    fold_order,
    is_synthetic_source,
    regime_mix,
    render_sector_book_report,
)
from ml.sector_book import PUBLISHED, SURVIVORSHIP_NOTE

FOLDS = {"2024": date(2024, 11, 4), "2025": date(2025, 3, 17)}
GROUPS = ("Energy", "Tech")
N_DAYS = 6
CHARTS = 5  # growth, drawdown, regime mix, bandit posterior, per-fold Sharpe


def _days(start: date, n: int = N_DAYS) -> list[date]:
    return [start + timedelta(days=i) for i in range(n)]


def _frames() -> dict[str, pl.DataFrame]:
    rng = np.random.default_rng(0)
    track, regimes, posterior, trades = [], [], [], []
    for fold, start in FOLDS.items():
        days = _days(start)
        for s in STRATEGIES:
            r = rng.normal(0.0005, 0.01, len(days))
            for d, x in zip(days, r):
                track.append({"strategy": s, "date": d, "fold": fold, "net_return": x, "gross_return": x + 1e-4,
                              "turnover": 0.1, "cost": 1e-4, "borrow": 0.0, "long_exposure": 0.5,
                              "short_exposure": 0.2, "positions": 4, "groups": 2})
            posterior.extend({"fold": fold, "strategy": s, "group": g, "alpha": 3.0 + i, "beta": 2.0,
                              "mean": (3.0 + i) / (5.0 + i), "sd": 0.15, "trades": 3 + i, "wins": 2 + i,
                              "selected_days": 4} for i, g in enumerate(GROUPS) if s.startswith("sector_book"))
        for i, d in enumerate(days):
            for j, g in enumerate(GROUPS):
                regimes.append({"fold": fold, "date": d, "group": g, "regime": ("Bull", "Sideways", "Bear")[(i + j) % 3],
                                "selected": (i + j) % 2 == 0})
        for k in range(14):
            g = GROUPS[k % 2]
            closed = k < 12
            trades.append({"fold": fold, "strategy": "sector_book", "ticker": f"T{k}", "group": g,
                           "sleeve": ("bull", "bear", "pairs")[k % 3], "side": "long" if k % 2 else "short",
                           "entry_date": days[0], "exit_date": days[2] if closed else None,
                           "pnl": float(rng.normal(0, 0.002)), "holding_days": 2, "closed": closed})
    track = pl.DataFrame(track).with_columns((1 + pl.col("net_return")).cum_prod().over("strategy").alias("equity"))
    metrics = pl.DataFrame([
        {"strategy": s, "total_return": 0.05 / m, "cagr": 0.1 / m, "ann_vol": 0.12, "sharpe": 0.8 / m,
         "sharpe_ci_low": -0.2, "sharpe_ci_high": 1.6, "max_drawdown": -0.04, "avg_turnover": 0.1, "cost_drag": 0.002 * m,
         "avg_gross_exposure": 0.7, "trades": 24 if s.startswith("sector_book") else None,
         "win_rate": 0.55 if s.startswith("sector_book") else None, "avg_win": 0.003, "avg_loss": -0.002,
         "profit_factor": 1.4, "avg_hold_days": 2.5, "sharpe_diff_spy_buy_hold": 0.1,
         "sharpe_diff_spy_buy_hold_ci_low": -0.5, "sharpe_diff_spy_buy_hold_ci_high": 0.7, "cost_multiplier": m}
        for m in (1.0, 2.0, 3.0) for s in STRATEGIES])  # fmt: skip
    reference = metrics.filter(pl.col("cost_multiplier") == 1.0).with_columns(
        pl.when(pl.col("strategy") == "spy_buy_hold").then(0.0876).otherwise(pl.col("total_return")).alias("total_return"))
    per_fold = pl.concat([metrics.filter(pl.col("cost_multiplier") == 1.0).with_columns(
        pl.lit(f).alias("fold"), pl.lit("qrdqn" if f == "2025" else "zscore (fallback)").alias("pair_policy"))
        for f in FOLDS])
    return {"track": track, "metrics": metrics, "reference": reference, "trades": pl.DataFrame(trades),
            "posterior": pl.DataFrame(posterior), "regimes": pl.DataFrame(regimes), "per_fold": per_fold}


@pytest.fixture(scope="module")
def frames() -> dict[str, pl.DataFrame]:
    return _frames()


@pytest.fixture(scope="module")
def report_html(tmp_path_factory, frames) -> str:
    """The report of the fixture frames on a real-data source (rendered once for the tests that only read it)."""
    return _render(tmp_path_factory.mktemp("sector_book_report"), frames)


def _render(tmp_path, frames, name="report.html", source="csv:/data/snapshot", **override) -> str:
    kwargs = {**frames, **override}
    path = render_sector_book_report(tmp_path / "out" / name, source=source, code_version="abc1234", **kwargs)
    assert path == tmp_path / "out" / name and path.is_file()
    return path.read_text(encoding="utf-8")


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained_with_every_section(report_html):
    html = report_html
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html and "<script" not in html
    assert str(escape(SURVIVORSHIP_NOTE)) in html  # HTML-escaped (S&amp;P, today&#39;s)
    for s in STRATEGIES:
        assert s in html
    images = _images(html)
    assert len(images) == CHARTS and all(is_png(png) for png in images)
    for sid in ("overview", "metrics", "equity", "reference", "regimes", "bandit", "per_fold", "trades"):
        assert f'<section id="{sid}">' in html
    assert "SYNTHETIC DATA" not in html and "real snapshot (CSV)" in html and "abc1234" in html


def test_report_shows_published_numbers_and_spy_claim(report_html):
    html = report_html
    pub = PUBLISHED["sector_book"]
    assert f"{pub['sharpe']:.2f}" == "1.97" and "1.97" in html
    assert "20.8%" in html and "-4.93%" in html and "56.1%" in html and "1.82" in html and "1,847" in html
    assert "1.12" in html and "8.1%" in html  # the published pairs sleeve
    assert "The design claimed SPY returned 0.0%" in html and "<b>8.8%</b>" in html  # our SPY over the window
    assert "understates what SPY did" in html
    assert "0.80 [-0.20, 1.60]" in html  # Sharpe with its CI
    assert "Sharpe @" not in html and "2× costs" in html and "3× costs" in html  # the cost-stress header
    assert "zscore (fallback)" in html


def test_synthetic_source_is_labelled(tmp_path, frames):
    assert is_synthetic_source("synthetic") and is_synthetic_source("synthetic:seed=7")
    assert not is_synthetic_source("csv:/data/synthetic.csv")
    html = _render(tmp_path, frames, source="synthetic:seed=7")
    assert html.count("SYNTHETIC DATA") >= 10  # banners, header, every section heading
    assert 'class="synth-banner"' in html and "seed=7" in html


def test_empty_reference_and_trades_still_render(tmp_path, frames):
    html = _render(tmp_path, frames, reference=pl.DataFrame(), trades=pl.DataFrame())
    assert "Our track does not cover this window" in html and "1.97" in html
    assert "No closed trades of sector_book" in html
    assert len(_images(html)) == CHARTS


def test_everything_empty_still_renders(tmp_path, frames):
    empty = pl.DataFrame()
    html = _render(tmp_path, frames, track=empty, metrics=empty, reference=empty, trades=empty, posterior=empty,
                   regimes=empty, per_fold=empty, source="")
    assert str(escape(SURVIVORSHIP_NOTE)) in html  # HTML-escaped (S&amp;P, today&#39;s) and "1.97" in html and "No metrics." in html
    assert all(is_png(png) for png in _images(html))


def test_trade_tables_and_regime_mix(report_html, frames):
    html = report_html
    assert "Best 10 closed trades" in html and "Worst 10 closed trades" in html
    for sleeve in ("bull", "bear", "pairs"):
        assert f"<td class=\"\">{sleeve}</td>" in html
    mix = regime_mix(frames["regimes"])
    assert mix.height == 2 * 2  # 2 groups x 2 months
    shares = mix.select(pl.col("bull") + pl.col("sideways") + pl.col("bear")).to_series().to_list()
    assert shares == pytest.approx([1.0] * mix.height)
    assert fold_order(frames["track"]) == ["2024", "2025"]

"""Reports: behaviour analysis tables, PNG charts and the self-contained HTML report (synthetic inputs)."""
from __future__ import annotations

import base64
import re
import struct
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import jinja2
import numpy as np
import polars as pl
import pytest

from ml.folds import Fold
from ml.lookahead import FeatureCheck, LookaheadReport
from ml.metrics import cagr, max_drawdown, sharpe
from ml.regimes.vix import VixRegimeConfig
from ml.reports import analysis as an
from ml.reports import charts as ch
from ml.reports import markdown as md
from ml.reports.html import (
    SECTION_TITLES,
    ReportContext,
    format_value,
    markdown_table,
    render_report,
    save_charts,
    template_environment,
    write_report,
)

ASSETS = ("SPY", "QQQ", "TLT", "GLD")
WCOLS = [f"w_{a}" for a in ASSETS] + ["w_cash"]


# ------------------------------------------------------------------------------------ synthetic inputs


def _bdays(start: date, n: int) -> list[date]:
    d = np.busday_offset(np.datetime64(start, "D"), np.arange(n), roll="forward")
    return [x.astype(object) for x in d]


def synthetic_inputs(n_days: int = 600, seed: int = 0, cost_bps: float = 5.0) -> dict:
    """3 strategies x ``n_days`` business days from 2019-06-03 (covers the 2020 COVID window) with a VIX that
    visits every bucket. ``ppo`` cuts equity as the VIX rises (decided on the previous close's VIX)."""
    rng = np.random.default_rng(seed)
    dates = _bdays(date(2019, 6, 3), n_days)
    t = np.arange(n_days)
    ou = np.zeros(n_days)
    for i in range(1, n_days):
        ou[i] = 0.93 * ou[i - 1] + rng.normal(0, 0.9)
    crash_start = dates.index(min(d for d in dates if d >= date(2020, 2, 20)))
    peak = dates.index(min(d for d in dates if d >= date(2020, 3, 16)))
    spike = np.zeros(n_days)
    spike[crash_start:peak] = np.linspace(0, 52, peak - crash_start)
    spike[peak:] = 52 * np.exp(-(t[peak:] - peak) / 22.0)
    vix = np.clip(15.5 + 3.5 * np.sin(2 * np.pi * t / 110) + ou + spike, 9.5, None)

    vol = vix / 100 / np.sqrt(252)
    mu = np.full(n_days, 0.0005)
    bottom = dates.index(min(d for d in dates if d >= date(2020, 3, 23)))
    mu[crash_start:bottom] = -0.013
    mu[bottom : bottom + 60] = 0.006
    spy = mu + vol * rng.standard_normal(n_days)
    qqq = 1.15 * spy + 0.003 * rng.standard_normal(n_days)
    tlt = 0.0002 + 0.008 * rng.standard_normal(n_days) + np.where(mu < 0, 0.002, 0.0)
    gld = 0.0002 + 0.009 * rng.standard_normal(n_days)
    rets = np.column_stack([spy, qqq, tlt, gld, np.zeros(n_days)])

    # weights held on day i were decided with the VIX of day i-1
    vix_dec = np.concatenate([[vix[0]], vix[:-1]])
    eq = np.clip(1.05 - (vix_dec - 12) / 28 + 0.04 * rng.standard_normal(n_days), 0.03, 0.97)
    rest = 1 - eq
    w_ppo = np.column_stack([0.7 * eq, 0.3 * eq, 0.4 * rest, 0.3 * rest, 0.3 * rest])
    w_spy = np.tile([1.0, 0, 0, 0, 0], (n_days, 1))
    w_6040 = np.tile([0.6, 0, 0.4, 0, 0], (n_days, 1))

    daily, allocs = [], []
    for name, w in (("ppo", w_ppo), ("spy_buy_hold", w_spy), ("sixty_forty", w_6040)):
        turnover = np.abs(np.diff(w, axis=0, prepend=w[:1])).sum(axis=1)
        turnover[0] = 2.0  # the first day buys everything from cash
        if name == "sixty_forty":
            turnover = turnover + 0.004  # rebalancing back to 60/40 after drift
        gross = (w * rets).sum(axis=1)
        net = gross - cost_bps / 1e4 * turnover
        daily.append(pl.DataFrame({"strategy": name, "date": dates, "net_return": net, "turnover": turnover, "gross": gross}))
        allocs.append(pl.DataFrame({"strategy": name, "date": dates, **{c: w[:, j] for j, c in enumerate(WCOLS)}}))
    daily_f = pl.concat(daily)
    alloc_f = pl.concat(allocs)
    vix_f = pl.DataFrame({"date": dates, "vix": vix})

    def stress(mult: float) -> dict[str, np.ndarray]:
        out = {}
        for name in ("ppo", "spy_buy_hold", "sixty_forty"):
            s = daily_f.filter(pl.col("strategy") == name)
            out[name] = s["gross"].to_numpy() - mult * cost_bps / 1e4 * s["turnover"].to_numpy()
        return out

    return {
        "daily": daily_f.drop("gross"),
        "allocations": alloc_f,
        "vix": vix_f,
        "metrics": _metrics(daily_f),
        "per_fold": _per_fold(daily_f),
        "cost_results": {1.0: stress(1.0), 2.0: stress(2.0), 3.0: stress(3.0)},
        "cost_bps": cost_bps,
    }


def _metrics(daily: pl.DataFrame) -> pl.DataFrame:
    rows = []
    for name in daily["strategy"].unique(maintain_order=True):
        s = daily.filter(pl.col("strategy") == name)
        r = s["net_return"].to_numpy()
        eq = np.cumprod(1 + r)
        dd = eq / np.maximum.accumulate(np.maximum(eq, 1.0)) - 1
        trough = int(np.argmin(dd))
        peak = int(np.argmax(eq[: trough + 1]))
        sh = sharpe(r)
        se = np.sqrt((1 + 0.5 * sh**2 / 252) / r.size) * np.sqrt(252)
        downside = r[r < 0].std(ddof=1) * np.sqrt(252)
        q = np.quantile(r, 0.05)
        rows.append({
            "strategy": name, "total_return": eq[-1] - 1, "cagr": cagr(r), "ann_vol": r.std(ddof=1) * np.sqrt(252),
            "sharpe": sh, "sharpe_ci_low": sh - 1.96 * se, "sharpe_ci_high": sh + 1.96 * se,
            "sortino": r.mean() * 252 / downside, "max_drawdown": max_drawdown(r),
            "max_dd_peak": s["date"][peak], "max_dd_trough": s["date"][trough],
            "calmar": cagr(r) / abs(max_drawdown(r)), "recovery_days": 87, "avg_turnover": s["turnover"].mean(),
            "hit_rate": float((r > 0).mean()), "worst_day": r.min(), "var_5": q, "cvar_5": r[r <= q].mean(),
            "psr": 0.93, "risk_free": 0.0,
        })  # fmt: skip
    return pl.DataFrame(rows)


def _per_fold(daily: pl.DataFrame) -> pl.DataFrame:
    rows = []
    d = daily.with_columns(pl.col("date").dt.year().alias("year"))
    for (name, year), s in d.group_by(["strategy", "year"], maintain_order=True):
        r = s["net_return"].to_numpy()
        rows.append({"fold": str(year), "strategy": name, "test_start": s["date"].min(), "test_end": s["date"].max(),
                     "sharpe": sharpe(r), "cagr": cagr(r), "max_drawdown": max_drawdown(r)})  # fmt: skip
    return pl.DataFrame(rows).sort(["fold", "strategy"])


@pytest.fixture(scope="module")
def synth() -> dict:
    return synthetic_inputs()


def _context(synth: dict, source: str = "synthetic", **kw) -> ReportContext:
    folds = [
        Fold("2020", date(2019, 6, 3), date(2019, 12, 20), 5, date(2020, 1, 2), date(2020, 12, 31)),
        Fold("2021", date(2019, 6, 3), date(2020, 12, 22), 5, date(2021, 1, 4), date(2021, 9, 17)),
    ]
    return ReportContext(
        source=source,
        code_version="test-sha-1234abc",
        folds=folds,
        cost_bps=synth["cost_bps"],
        seeds=[0, 1, 2],
        generated_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        metrics=synth["metrics"],
        daily=synth["daily"],
        allocations=synth["allocations"],
        vix=synth["vix"],
        per_fold=synth["per_fold"],
        cost_stress=an.cost_stress(synth["cost_results"]),
        **kw,
    )


@pytest.fixture(scope="module")
def synthetic_report(synth) -> tuple[ReportContext, str]:
    ctx = _context(synth).with_derived()
    return ctx, render_report("Walk-forward evaluation (test)", ctx)


# ------------------------------------------------------------------------------------ VIX-bucket table


def _tiny_alloc_vix() -> tuple[pl.DataFrame, pl.DataFrame]:
    days = _bdays(date(2024, 1, 2), 7)  # d0 .. d6
    # VIX dated d0..d5; the weights held on d(i+1) were decided at the close of d(i).
    vix = pl.DataFrame({"date": days[:6], "vix": [12.0, 17.0, 20.0, 30.0, 40.0, 14.99]})
    w = {  # held on d1..d6: SPY QQQ TLT GLD cash
        1: [0.5, 0.3, 0.1, 0.0, 0.1],  # decided at VIX 12   -> calm
        2: [0.4, 0.2, 0.2, 0.1, 0.1],  # 17    -> normal
        3: [0.3, 0.1, 0.3, 0.2, 0.1],  # 20    -> elevated (left-closed)
        4: [0.2, 0.0, 0.4, 0.2, 0.2],  # 30    -> stress
        5: [0.0, 0.0, 0.3, 0.2, 0.5],  # 40    -> panic
        6: [0.7, 0.1, 0.1, 0.1, 0.0],  # 14.99 -> calm
    }
    ppo = pl.DataFrame({"strategy": "ppo", "date": [days[i] for i in w], **{c: [w[i][j] for i in w] for j, c in enumerate(WCOLS)}})
    other = ppo.with_columns(pl.lit("spy_buy_hold").alias("strategy"), pl.lit(1.0).alias("w_SPY"))
    return pl.concat([ppo, other]), vix


def test_vix_bucket_table_hand_checked():
    alloc, vix = _tiny_alloc_vix()
    t = an.allocation_by_vix_bucket(alloc, vix, "ppo")
    assert t["bucket"].to_list() == ["calm", "normal", "elevated", "stress", "panic"]
    assert t["days"].to_list() == [2, 1, 1, 1, 1]
    assert t["share_days"].to_list() == pytest.approx([2 / 6, 1 / 6, 1 / 6, 1 / 6, 1 / 6])
    calm = t.row(0, named=True)
    assert calm["w_SPY"] == pytest.approx(0.6)
    assert calm["w_QQQ"] == pytest.approx(0.2)
    assert calm["w_cash"] == pytest.approx(0.05)
    assert calm["equity_exposure"] == pytest.approx(0.8)
    assert calm["avg_vix"] == pytest.approx((12 + 14.99) / 2)
    assert t["equity_exposure"].to_list() == pytest.approx([0.8, 0.6, 0.4, 0.2, 0.0])
    assert t["vix_range"].to_list() == ["< 15", "[15, 20)", "[20, 25)", "[25, 35)", ">= 35"]
    assert [c for c in t.columns if c.startswith("w_")] == WCOLS


def test_vix_bucket_table_same_day_timing_and_empty_bucket():
    alloc, vix = _tiny_alloc_vix()
    # same-day: the weights on d1..d5 meet the VIX dated d1..d5 (17, 20, 30, 40, 14.99); d6 has no VIX row
    # on its own date, so the as-of join takes d5's (14.99) -> calm.
    t = an.allocation_by_vix_bucket(alloc, vix, "ppo", vix_timing="same_day")
    assert t["days"].to_list() == [2, 1, 1, 1, 1]
    assert t.filter(pl.col("bucket") == "normal")["w_SPY"][0] == pytest.approx(0.5)
    # drop the stress day: the bucket stays in the table with 0 days and null averages
    t2 = an.allocation_by_vix_bucket(alloc.filter(pl.col("w_SPY") != 0.2), vix, "ppo")
    stress = t2.filter(pl.col("bucket") == "stress").row(0, named=True)
    assert stress["days"] == 0 and stress["w_SPY"] is None and stress["equity_exposure"] is None
    with pytest.raises(ValueError, match="no rows for strategy"):
        an.allocation_by_vix_bucket(alloc, vix, "sac")


def test_equity_vix_correlation_sign(synth):
    alloc, vix = _tiny_alloc_vix()
    assert an.equity_vix_correlation(alloc, vix, "ppo") < -0.9
    assert an.equity_vix_correlation(synth["allocations"], synth["vix"], "ppo") < -0.5
    assert np.isnan(an.equity_vix_correlation(synth["allocations"], synth["vix"], "spy_buy_hold"))  # constant
    table = an.equity_vix_correlation_table(synth["allocations"], synth["vix"])
    assert table["strategy"].to_list() == ["ppo", "sixty_forty", "spy_buy_hold"]
    assert table.filter(pl.col("strategy") == "ppo")["corr_equity_vix"][0] < -0.5


def test_synthetic_vix_visits_every_bucket(synth):
    t = an.allocation_by_vix_bucket(synth["allocations"], synth["vix"], "ppo")
    assert (t["days"] > 0).all()
    assert t["days"].sum() == synth["vix"].height - 1  # the first day has no decision-day VIX
    expo = t["equity_exposure"].to_list()
    assert expo[0] > expo[-1]  # it learned to fear (by construction)


# ------------------------------------------------------------------------------------- crisis windows


def _crisis_daily() -> pl.DataFrame:
    days = _bdays(date(2020, 1, 2), 260)
    n = len(days)
    start = days.index(date(2020, 2, 19))
    base = np.full(n, 0.001)
    dip = base.copy()
    dip[start : start + 20] = -0.02
    spy = dip.copy()
    spy[start + 20 :] = 0.01
    flat = dip.copy()
    flat[start + 20 :] = 0.0
    return pl.concat(
        [
            pl.DataFrame({"strategy": "spy_buy_hold", "date": days, "net_return": spy}),
            pl.DataFrame({"strategy": "sixty_forty", "date": days, "net_return": flat}),
            pl.DataFrame({"strategy": "ppo", "date": days, "net_return": base}),
        ]
    )


def test_crisis_windows_recovery_and_not_recovered():
    daily = _crisis_daily()
    t = an.crisis_windows(daily)
    assert t["window"].unique().to_list() == ["2020 COVID crash"]  # GFC, 2022, 2025 are outside the data
    assert t["strategy"].to_list() == ["spy_buy_hold", "ppo", "sixty_forty"]  # benchmark first

    spy = daily.filter(pl.col("strategy") == "spy_buy_hold")
    eq = np.cumprod(1 + spy["net_return"].to_numpy())
    dates = spy["date"].to_list()
    i0 = dates.index(date(2020, 2, 19))
    pre_peak = eq[:i0].max()
    expected = next(d for d, e, i in zip(dates, eq, range(len(eq))) if i > i0 and e >= pre_peak - 1e-12)
    row = t.filter(pl.col("strategy") == "spy_buy_hold").row(0, named=True)
    assert row["recovery_date"] == expected.isoformat()
    assert row["trough_date"] == dates[i0 + 19]
    assert row["max_drawdown"] == pytest.approx(0.98**20 - 1)
    assert row["vs_benchmark"] == pytest.approx(0.0)
    assert not row["partial"]

    flat = t.filter(pl.col("strategy") == "sixty_forty").row(0, named=True)
    assert flat["recovery_date"] == "not recovered" and flat["recovery_days"] is None
    assert flat["return"] == pytest.approx(0.98**20 - 1)
    assert flat["max_drawdown"] == pytest.approx(0.98**20 - 1)

    up = t.filter(pl.col("strategy") == "ppo").row(0, named=True)
    assert up["recovery_date"] == "stayed above peak"
    assert up["max_drawdown"] == pytest.approx(0.0)
    assert up["vs_benchmark"] == pytest.approx(up["return"] - row["return"])


def test_crisis_windows_custom_and_partial():
    daily = _crisis_daily()
    w = an.CrisisWindow("late 2020", date(2020, 11, 1), date(2021, 3, 31))
    t = an.crisis_windows(daily, [w])
    assert t.height == 3 and t["partial"].all()
    assert an.crisis_windows(daily, [an.CrisisWindow("none", date(2015, 1, 1), date(2015, 2, 1))]).is_empty()
    with pytest.raises(ValueError):
        an.CrisisWindow("bad", date(2020, 2, 1), date(2020, 1, 1))


# --------------------------------------------------------------------------- panic vol / diagnostics


def test_panic_day_volatility():
    days = _bdays(date(2024, 1, 2), 6)
    vix = pl.DataFrame({"date": days, "vix": [40.0, 36.0, 20.0, 50.0, 10.0, 10.0]})
    r = [0.0, 0.01, -0.03, 0.005, 0.02, -0.01]
    daily = pl.DataFrame({"strategy": "ppo", "date": days, "net_return": r})
    t = an.panic_day_volatility(daily, vix, threshold=35)
    row = t.row(0, named=True)
    # decision-day VIX of d1..d5 = 40, 36, 20, 50, 10 -> panic days d1, d2, d4
    panic = np.array([0.01, -0.03, 0.02])
    assert row["panic_days"] == 3
    assert row["panic_ann_vol"] == pytest.approx(panic.std(ddof=1) * np.sqrt(252))
    assert row["panic_worst_day"] == pytest.approx(-0.03)
    assert row["all_days_ann_vol"] == pytest.approx(np.std(r, ddof=1) * np.sqrt(252))
    same = an.panic_day_volatility(daily, vix, threshold=35, vix_timing="same_day").row(0, named=True)
    assert same["panic_days"] == 3  # d0, d1, d3


def test_action_diagnostics_hhi_turnover_cash():
    days = _bdays(date(2024, 1, 2), 3)
    w = [[0.2, 0.2, 0.2, 0.2, 0.2], [0.5, 0.5, 0.0, 0.0, 0.0], [0.4, 0.0, 0.0, 0.0, 0.6]]
    alloc = pl.DataFrame({"strategy": "ppo", "date": days, **{c: [x[j] for x in w] for j, c in enumerate(WCOLS)}})
    daily = pl.DataFrame({"strategy": "ppo", "date": days, "net_return": [0.0] * 3, "turnover": [0.0, 0.6, 1.0]})
    row = an.action_diagnostics(alloc, daily).row(0, named=True)
    assert row["hhi_mean"] == pytest.approx((0.2 + 0.5 + 0.52) / 3)
    assert row["hhi_p50"] == pytest.approx(0.5)
    assert row["hhi_p90"] == pytest.approx(0.516)
    assert row["turnover_mean"] == pytest.approx(1.6 / 3)
    assert row["turnover_p50"] == pytest.approx(0.6)
    assert row["turnover_p90"] == pytest.approx(0.92)
    assert row["turnover_max"] == pytest.approx(1.0)
    assert row["cash_mean"] == pytest.approx(0.8 / 3)
    assert row["cash_over_50_share"] == pytest.approx(1 / 3)
    no_turnover = an.action_diagnostics(alloc).row(0, named=True)
    assert no_turnover["turnover_mean"] is None and no_turnover["hhi_p50"] == pytest.approx(0.5)


def test_cost_stress_table(synth):
    t = an.cost_stress(synth["cost_results"])
    assert t.shape == (3, 1 + 3 * 3)
    assert t.columns[:4] == ["strategy", "sharpe_1x", "sharpe_2x", "sharpe_3x"]
    assert {"cagr_1x", "cagr_2x", "cagr_3x", "max_drawdown_3x"} <= set(t.columns)
    ppo = t.filter(pl.col("strategy") == "ppo").row(0, named=True)
    assert ppo["sharpe_1x"] > ppo["sharpe_2x"] > ppo["sharpe_3x"]
    assert ppo["cagr_1x"] > ppo["cagr_3x"]
    r1 = synth["cost_results"][1.0]["ppo"]
    assert ppo["sharpe_1x"] == pytest.approx(sharpe(r1)) and ppo["cagr_1x"] == pytest.approx(cagr(r1))
    partial = an.cost_stress({1: {"a": [0.01, 0.0, -0.01]}, 2.5: {"a": [0.0, 0.0, 0.01], "b": [0.01, 0.02, 0.0]}})
    assert partial.columns[1:3] == ["sharpe_1x", "sharpe_2.5x"]
    assert partial.filter(pl.col("strategy") == "b")["sharpe_1x"][0] is None


# --------------------------------------------------------------------------------------------- charts


def _png_size(png: bytes) -> tuple[int, int]:
    return struct.unpack(">II", png[16:24])


def test_charts_are_pngs(synth, tmp_path):
    pngs = {
        "growth": ch.growth_chart(synth["daily"], source="synthetic"),
        "growth_linear": ch.growth_chart(synth["daily"], log_scale=False),
        "drawdown": ch.drawdown_chart(synth["daily"]),
        "exposure": ch.exposure_vs_vix_chart(synth["allocations"], synth["vix"], strategies=("ppo", "sixty_forty")),
        "allocation": ch.allocation_area_chart(synth["allocations"], strategy="ppo", rolling_days=5),
        "folds": ch.fold_sharpe_chart(synth["per_fold"]),
        "empty": ch.growth_chart(synth["daily"].head(0)),
        "no_alloc": ch.allocation_area_chart(synth["allocations"], strategy="sac"),
    }
    for name, png in pngs.items():
        assert ch.is_png(png), name
        w, h = _png_size(png)
        assert (w, h) == (1200, 500), name
    p = ch.save_chart(tmp_path / "sub" / "growth.png", pngs["growth"])
    assert p.read_bytes() == pngs["growth"]
    assert not ch.is_png(b"GIF89a....")


# ----------------------------------------------------------------------------------------------- html


def test_html_is_self_contained_with_every_section(synthetic_report):
    ctx, html = synthetic_report
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert "<script" not in html.lower() and "<link" not in html.lower() and "@import" not in html
    for heading in SECTION_TITLES.values():
        assert f">{heading}</h2>" in html.replace("&#x27;", "'"), heading
    imgs = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(imgs) == len(ctx.charts) == 5
    assert all(base64.b64decode(b)[:8] == ch.PNG_MAGIC for b in imgs)


def test_html_provenance_and_synthetic_banner(synth, synthetic_report):
    _, html = synthetic_report
    assert "SYNTHETIC DATA" in html and 'class="synth-banner"' in html
    for text in ("test-sha-1234abc", "0, 1, 2", "5 bps", "2019-06-03", "2021-09-17", "2020-01-02",
                 "embargo 5 sessions", "2025-01-02 03:04:05", "0.00% a year"):  # fmt: skip
        assert text in html, text
    # the Sharpe confidence interval is shown next to Sharpe
    assert re.search(r"\d\.\d\d \[-?\d\.\d\d, -?\d\.\d\d\]", html)

    charts = _context(synth).with_derived().charts  # reuse, so the non-synthetic renders stay cheap
    for source, label in (("csv", "real snapshot (CSV)"), ("yahoo", "Yahoo")):
        real = render_report("Fold 2020", _context(synth, source=source, charts=charts))
        assert label in real
        assert "SYNTHETIC" not in real and 'class="synth-banner"' not in real


def test_html_skips_missing_sections(synth):
    ctx = ReportContext(source="csv", code_version="v", metrics=synth["metrics"], charts={})
    html = render_report("Metrics only", ctx)
    assert ">Performance metrics</h2>" in html and ">Provenance</h2>" in html
    for sid in ("growth", "crisis", "vix_buckets", "cost_stress", "per_fold"):
        assert f'id="{sid}"' not in html
    assert "&lt;script&gt;" in render_report("<script>", ctx)  # titles are escaped


def test_write_report_and_save_charts(tmp_path, synth):
    html = render_report("x", ReportContext(source="synthetic", metrics=synth["metrics"], charts={}))
    p = write_report(tmp_path / "reports" / "r.html", html)
    assert p.read_text(encoding="utf-8") == html
    write_report(p, html + "<!-- 2 -->")
    assert p.read_text(encoding="utf-8").endswith("<!-- 2 -->")
    assert [x.name for x in p.parent.iterdir()] == ["r.html"]  # no temp files left behind
    png = ch.growth_chart(synth["daily"].filter(pl.col("date") < date(2019, 9, 1)))
    out = save_charts(tmp_path / "charts", {"growth": png})
    assert out["growth"].read_bytes()[:8] == ch.PNG_MAGIC


def test_markdown_table_and_formatting(synth):
    md = markdown_table(synth["metrics"].select("strategy", "cagr", "sharpe", "max_dd_peak", "recovery_days"))
    lines = md.splitlines()
    assert lines[0] == "| strategy | cagr | sharpe | max_dd_peak | recovery_days |"
    assert lines[1] == "|---|---:|---:|---|---:|"
    assert len(lines) == 2 + 3 and "%" in lines[2]
    assert format_value("cagr", 0.1234) == "12.3%"
    assert format_value("worst_day", -0.01234) == "-1.23%"
    assert format_value("sharpe", 1.23456) == "1.23"
    assert format_value("hhi_mean", 0.51234) == "0.512"
    assert format_value("days", 12.0) == "12"
    assert format_value("w_SPY", 0.5) == "50.0%"
    assert format_value("sharpe", float("nan")) == "–" and format_value("cagr", None) == "–"
    assert format_value("max_dd_peak", date(2020, 2, 19)) == "2020-02-19"
    assert "more rows" in markdown_table(synth["daily"], max_rows=3)


class _Structure(HTMLParser):
    """Checks that tags nest (void elements aside) and collects nav links, section ids and headings."""

    VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.counts: dict[str, int] = {}
        self.nav_links: list[str] = []
        self.section_ids: list[str] = []
        self.headings: list[str] = []
        self._h2: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag == "a" and "nav" in self.stack:
            self.nav_links.append(a.get("href", ""))
        if tag == "section":
            self.section_ids.append(a.get("id", ""))
        if tag == "h2":
            self._h2 = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag == "h2" and self._h2 is not None:
            self.headings.append("".join(self._h2).strip())
            self._h2 = None
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self._h2 is not None:
            self._h2.append(data)


def _structure(html: str) -> _Structure:
    p = _Structure()
    p.feed(html)
    p.close()
    return p


def test_html_template_output_is_well_formed(synth, synthetic_report):
    _, full = synthetic_report
    small = render_report("Metrics only", ReportContext(source="csv", metrics=synth["metrics"], charts={}))
    for html, expected in ((full, list(SECTION_TITLES)), (small, ["provenance", "metrics"])):
        p = _structure(html)
        assert not p.errors and not p.stack, (p.errors[:5], p.stack)
        assert all(p.counts.get(t) == 1 for t in ("html", "head", "body", "style", "nav", "main", "footer"))
        # every nav entry has its section, in SECTION_TITLES order, and every section is in the nav
        assert p.nav_links == [f"#{sid}" for sid in p.section_ids]
        assert p.section_ids == expected
        assert p.headings == [SECTION_TITLES[sid] for sid in expected]
        assert p.counts.get("section") == len(expected) and p.counts.get("script") is None
    css = full[full.index("<style>") : full.index("</style>")]
    assert "tr.hl td{" in css and "&#34;" not in css  # the stylesheet is inlined as is (not escaped)


def test_template_environment_is_strict_and_escapes():
    env = template_environment()
    assert env is template_environment()  # built once
    assert env.undefined is jinja2.StrictUndefined
    with pytest.raises(jinja2.UndefinedError):
        env.from_string("{{ missing }}").render()
    out = env.from_string("{{ v|fmt('cagr') }} {{ s }} {{ 'sharpe_2x'|label }} {{ -0.1|cellclass('cagr') }}").render(
        v=0.1234, s="<b>&</b>"
    )
    assert out == "12.3% &lt;b&gt;&amp;&lt;/b&gt; Sharpe @ 2x num neg"


def test_html_escapes_user_strings(synth):
    metrics = synth["metrics"].with_columns(pl.col("strategy").replace("ppo", "<b>ppo</b>"))
    ctx = ReportContext(
        source="csv", code_version='"><img src=x>', source_detail="<i>snap</i>", strategy="<b>ppo</b>",
        notes=["<script>alert(1)</script>"], extra={"<k>": "<v & w>"}, seeds="<7>", metrics=metrics, charts={},
    )  # fmt: skip
    html = render_report("t", ctx)
    for raw in ("<b>ppo</b>", "<script>", "<img src=x>", "<i>snap</i>", "<k>", "<v & w>", "<7>"):
        assert raw not in html, raw
    for escaped in ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;i&gt;snap&lt;/i&gt;", "&lt;v &amp; w&gt;",
                    "&#34;&gt;&lt;img src=x&gt;", '<tr class="hl"><td class="">&lt;b&gt;ppo&lt;/b&gt;</td>'):  # fmt: skip
        assert escaped in html, escaped
    assert not _structure(html).errors


def test_vix_bucket_edges_come_from_the_config():
    alloc, vix = _tiny_alloc_vix()
    cfg = VixRegimeConfig(bucket_edges=(15.0, 20.0, 31.0, 35.0))  # VIX 30 moves from stress to elevated

    def derived(config):
        ctx = ReportContext(source="csv", allocations=alloc, vix=vix, vix_config=config, charts={})
        return ctx, ctx.with_derived().vix_buckets

    _, default = derived(None)
    ctx, custom = derived(cfg)
    assert default["vix_range"].to_list() == ["< 15", "[15, 20)", "[20, 25)", "[25, 35)", ">= 35"]
    assert custom["vix_range"].to_list() == ["< 15", "[15, 20)", "[20, 31)", "[31, 35)", ">= 35"]
    assert custom["days"].to_list() == [2, 1, 2, 0, 1] and default["days"].to_list() == [2, 1, 1, 1, 1]
    assert custom.equals(an.allocation_by_vix_bucket(alloc, vix, "ppo", config=cfg))  # = what the warehouse reads

    html = render_report("buckets", ctx)
    text = "calm &lt; 15 ≤ normal &lt; 20 ≤ elevated &lt; 31 ≤ stress &lt; 35 ≤ panic"
    assert text in html and "[20, 31)" in html and "[31, 35)" in html and "[20, 25)" not in html
    assert text.replace("31", "25") in render_report("buckets", derived(None)[0])


def test_one_markdown_renderer():
    assert markdown_table is md.markdown_table  # the HTML module re-exports the shared renderer
    frame = pl.DataFrame({"name": ["a|b", "multi\nline", None], "x": [1.234567, None, 1e-7], "n": [1, 2, 3]})
    plain = md.markdown_table(frame, formatter=md.plain_value)
    assert plain.splitlines() == [
        "| name | x | n |",
        "|---|---:|---:|",
        "| a\\|b | 1.235 | 1 |",
        "| multi line |  | 2 |",
        "|  | 1e-07 | 3 |",
    ]
    assert md.markdown_table(frame).splitlines()[2] == "| a\\|b | 1.235 | 1 |"  # report rules (no column kinds)
    assert md.markdown_table(frame).splitlines()[3] == "| multi line | – | 2 |"
    many = pl.DataFrame({"i": list(range(120))})
    assert len(md.markdown_table(many, max_rows=None).splitlines()) == 2 + 120
    assert md.markdown_table(many).endswith("_… 70 more rows_")
    assert md.markdown_table(pl.DataFrame()) == "_(empty)_"
    assert md.plain_value("x", 0.123456, digits=2) == "0.12" and md.plain_value("x", True) == "True"


def test_lookahead_markdown_uses_the_shared_renderer():
    checks = (
        FeatureCheck("rsi_14", True, 3, 1000, 0, 0.0),
        FeatureCheck("leak", False, 3, 1000, 12345, 0.0123456, date(2020, 1, 2), "AAA", date(2020, 1, 5), "garbage"),
        FeatureCheck("nodiff", True, 3, 0, 0, None),
    )
    report = LookaheadReport(checks, (date(2020, 1, 4), date(2020, 1, 5)), 1e-9, 1e-12, 5000, 1.0, notes=("a note",))
    lines = report.to_markdown().splitlines()
    assert lines[0].startswith("**Look-ahead check FAILED (1 leaking)") and lines[2] == "Cutoffs: 2020-01-04, 2020-01-05"
    assert lines[3:5] == ["> a note", ""]
    table = lines[5:]
    assert table[0] == (
        "| feature | status | max abs diff | mismatches / compared | first offending date | ticker | cutoff (variant) |"
    )
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert table[2] == "| leak | **LEAK** | 0.0123 | 12,345 / 1,000 | 2020-01-02 | AAA | 2020-01-05 (garbage) |"
    assert table[3:] == ["| nodiff | pass | n/a | 0 / 0 |  |  |  |", "| rsi_14 | pass | 0 | 0 / 1,000 |  |  |  |"]
    assert report.to_markdown(max_rows=1).endswith("_… 2 more features (all passed)_")


def test_reports_layer_has_no_dagster_or_duckdb():
    root = Path(__file__).resolve().parents[1] / "ml" / "reports"
    for f in root.glob("*.py"):
        src = f.read_text()
        assert not re.search(r"^\s*(import|from)\s+(dagster|duckdb)\b", src, re.MULTILINE), f.name


def write_example(path: str = "/tmp/regimeflow_report_example.html") -> str:
    """Render the synthetic example report (used to eyeball the layout)."""
    synth = synthetic_inputs()
    html = render_report("regimeflow — walk-forward evaluation (example)", _context(synth))
    write_report(path, html)
    return path



def test_benchmark_differences_render_with_their_intervals(synth):
    m = synth["metrics"].with_columns(  # the columns ml.metrics.metrics_table writes
        pl.lit(0.05).alias("mdd_diff_spy_buy_hold"), pl.lit(0.01).alias("mdd_diff_spy_buy_hold_ci_low"),
        pl.lit(0.09).alias("mdd_diff_spy_buy_hold_ci_high"))
    html = render_report("diffs", ReportContext(source="csv", metrics=m, charts={}))
    assert "Difference vs the benchmarks" in html
    assert "mdd_diff_spy_buy_hold_ci_low" not in html  # folded into the cell, not a column of its own
    row = m.row(0, named=True)
    lo, hi = row["mdd_diff_spy_buy_hold_ci_low"], row["mdd_diff_spy_buy_hold_ci_high"]
    from ml.reports.formatting import format_value
    assert f"[{format_value('max_drawdown', lo)}, {format_value('max_drawdown', hi)}]" in html

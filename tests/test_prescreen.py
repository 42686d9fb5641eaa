"""Prescreen classifiers: purged CV, fold isolation, generations (causal train-window scores), regime
routing, artifacts, smoke fit."""
from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest

from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.features import compute_features
from ml.folds import Fold, default_folds, first_usable_date, get_fold
from ml.labels import MAX_LABEL_HORIZON, compute_labels
from ml.prescreen import (
    REGIMES,
    SCORES_SCHEMA,
    SIDES,
    ArtifactIntegrityError,
    Generation,
    PrescreenConfig,
    PrescreenModels,
    SlotModel,
    evaluate_prescreen,
    generation_bounds,
    label_end_dates,
    load_models,
    purged_kfold,
    save_models,
    score_prescreen,
    slot_key,
    train_prescreen,
)
from ml.regimes.vix import vix_regimes, vol_regime_expr

FAST = PrescreenConfig(
    horizon=5,
    rf_n_estimators=15,
    rf_grid=({"max_depth": 4, "min_samples_leaf": 50}, {"max_depth": 6, "min_samples_leaf": 100}),
    hgb_grid=({"max_iter": 30, "max_leaf_nodes": 7, "min_samples_leaf": 50},),
    cv_splits=2,
    cv_max_rows=1500,
    n_jobs=1,
    min_rows=100,
    generations=3,
)


# ----------------------------------------------------------------------------- purged CV
def _panel(n_days=300, n_tickers=6, h=5, seed=0):
    rng = np.random.default_rng(seed)
    cal = np.arange(np.datetime64("2020-01-01"), np.datetime64("2020-01-01") + int(n_days * 1.5))
    cal = cal[rng.random(cal.size) < 0.7][:n_days]  # irregular trading calendar
    frame = pl.DataFrame(
        {"ticker": np.repeat([f"T{i}" for i in range(n_tickers)], cal.size), "date": np.tile(cal, n_tickers)}
    ).with_columns(pl.col("date").cast(pl.Date))
    frame = frame.with_columns(label_end_dates(frame, h)).drop_nulls("label_end")
    return frame, cal


@pytest.mark.parametrize("embargo", [0, 3])
def test_purged_kfold_no_overlap(embargo):
    frame, cal = _panel()
    d = frame.get_column("date").to_numpy().astype("datetime64[D]")
    e = frame.get_column("label_end").to_numpy().astype("datetime64[D]")
    splits = purged_kfold(frame.get_column("date"), frame.get_column("label_end"), 5, embargo, calendar=cal)
    assert len(splits) == 5
    seen = np.concatenate([va for _, va in splits])
    assert np.array_equal(np.sort(seen), np.arange(frame.height))  # validation blocks partition the rows
    for tr, va in splits:
        assert len(tr) > 0 and np.intersect1d(tr, va).size == 0
        # pairwise: no training label window [d_i, e_i] overlaps a validation label window [d_j, e_j]
        overlap = (d[tr][:, None] <= e[va][None, :]) & (e[tr][:, None] >= d[va][None, :])
        assert not overlap.any()
        # embargo: no training row within `embargo` sessions after the validation block
        v1 = d[va].max()
        i1 = int(np.searchsorted(cal, v1))
        after = d[tr][d[tr] > v1]
        if after.size:
            assert int(np.searchsorted(cal, after.min())) - i1 > embargo
        # validation rows are a contiguous run of dates
        vd = np.unique(d[va])
        assert np.array_equal(vd, np.unique(d[(d >= vd[0]) & (d <= vd[-1])]))


def test_purged_kfold_rejects_bad_input():
    with pytest.raises(ValueError):
        purged_kfold([date(2020, 1, 2)], [date(2020, 1, 1)], 2)
    with pytest.raises(ValueError):
        purged_kfold([date(2020, 1, 2)] * 3, [date(2020, 1, 3)] * 3, 2)  # one distinct date


# ----------------------------------------------------------------------------- synthetic fit
@pytest.fixture(scope="module")
def data():
    u = Universe(sector_etfs=["XLK", "XLF", "XLE"], history_start=date(2008, 1, 1), history_end=date(2013, 12, 31))
    md = generate_market(u, seed=2)
    cal = md.bars.filter(pl.col("ticker") == "SPY").get_column("date")
    feats = compute_features(md.bars, md.index_bars)
    labels = compute_labels(md.bars)
    vr = vix_regimes(md.index_bars, cal)
    fold = get_fold(default_folds(cal, first_usable_date(cal), MAX_LABEL_HORIZON, first_test_year=2013), "2013")
    return feats, labels, vr, fold


@pytest.fixture(scope="module")
def models(data):
    feats, labels, vr, fold = data
    return train_prescreen(feats, labels, vr, fold, FAST)


@pytest.fixture(scope="module")
def models_g1(data):
    feats, labels, vr, fold = data
    return train_prescreen(feats, labels, vr, fold, FAST.model_copy(update={"generations": 1}))


def _all_scores(models, data) -> pl.DataFrame:
    feats, _, vr, fold = data
    return score_prescreen(models, feats, vr, start=fold.train_start, end=fold.test_end)


def test_generations_train_on_labels_known_before_they_score(models, data):
    feats, labels, vr, fold = data
    gens = models.generations
    assert [g.name for g in gens] == ["g1", "g2", "final"]
    assert models.slots is gens[-1].slots and models.slot("buy", "low") is gens[-1].slot("buy", "low")
    assert gens[-1].valid_from == fold.train_end + timedelta(days=1) and gens[-1].label_cutoff == fold.train_end
    cal = feats.filter(fold.train_expr()).get_column("date").unique().sort().to_numpy().astype("datetime64[D]")
    blocks = np.array_split(cal, 3)
    assert [np.datetime64(g.valid_from, "D") for g in gens[:-1]] == [blocks[1][0], blocks[2][0]]
    assert [np.datetime64(g.label_cutoff, "D") for g in gens[:-1]] == [blocks[0][-1], blocks[1][-1]]
    assert [g[1:] for g in generation_bounds(cal, fold, 3)] == [(g.valid_from, g.label_cutoff) for g in gens]
    final_rows = {k: set(zip(s.train_tickers, s.train_dates)) for k, s in gens[-1].slots.items()}
    for g in gens:
        assert set(g.slots) == {slot_key(s, r) for s in SIDES for r in REGIMES}
        for key, s in g.slots.items():
            assert s.n_train > 0
            assert (s.train_dates >= np.datetime64(fold.train_start, "D")).all()
            assert (s.train_label_end < np.datetime64(g.valid_from, "D")).all()
            assert (s.train_label_end <= np.datetime64(g.label_cutoff, "D")).all()
            assert (s.train_label_end <= np.datetime64(fold.train_end, "D")).all()
            # same sub-sampling in every generation: an earlier generation's rows are the final's, truncated
            assert set(zip(s.train_tickers, s.train_dates)) <= final_rows[key]
    sizes = [g.slot("buy", "low").n_train for g in gens]
    assert sizes == sorted(set(sizes))


def test_train_window_scores_are_out_of_sample_generations(models, models_g1, data):
    feats, _, vr, fold = data
    scores = _all_scores(models, data)
    assert dict(scores.schema) == SCORES_SCHEMA
    gens = models.generations
    block0 = scores.filter(pl.col("date") < gens[0].valid_from)
    assert block0.height > 0 and block0.get_column("generation").null_count() == block0.height
    assert block0.get_column("buy_probability").null_count() == block0.height
    for g, nxt in zip(gens, [*(x.valid_from for x in gens[1:]), date.max]):
        rows = scores.filter((pl.col("date") >= g.valid_from) & (pl.col("date") < nxt))
        assert rows.height > 0 and (rows.get_column("generation") == g.name).all()
        # every row with all features and a regime is scored
        usable = rows.join(feats.drop_nulls(), on=["ticker", "date"], how="semi").drop_nulls("regime")
        assert usable.height > 0.5 * rows.height
        assert usable.get_column("buy_probability").null_count() == 0
        assert usable.get_column("sell_probability").null_count() == 0
    # the final generation is exactly today's model: identical test-window scores to generations=1
    test = score_prescreen(models, feats, vr, start=fold.test_start, end=fold.test_end)
    assert test.equals(score_prescreen(models_g1, feats, vr, start=fold.test_start, end=fold.test_end))
    assert (test.get_column("generation") == "final").all()


def test_generations_1_leaves_train_window_unscored(models_g1, data):
    feats, _, vr, fold = data
    assert [g.name for g in models_g1.generations] == ["final"]
    assert models_g1.summary_frame().height == 6
    scores = _all_scores(models_g1, data)
    train = scores.filter(pl.col("date") <= fold.train_end)
    assert train.height > 0
    assert train.select(pl.col("generation", "buy_probability", "sell_probability").null_count().sum()).row(0) == (
        train.height,) * 3
    after = scores.filter(pl.col("date") > fold.train_end)
    assert (after.get_column("generation") == "final").all()
    assert after.get_column("buy_probability").null_count() < after.height


def test_generation_depends_only_on_data_before_it_scores(models, data):
    """Structural causality: retraining generation g on frames cut at its valid_from (every features,
    labels and VIX row dated >= valid_from removed) gives the same models, so the same scores on block g."""
    feats, labels, vr, fold = data
    g, nxt = models.generations[1], models.generations[2]
    cut = pl.col("date") < g.valid_from
    short = Fold("cut", fold.train_start, g.label_cutoff, 0, g.valid_from, g.valid_from)
    again = train_prescreen(feats.filter(cut), labels.filter(cut), vr.filter(cut), short,
                            FAST.model_copy(update={"generations": 1}))
    for key, s in g.slots.items():
        r = again.slots[key]
        assert np.array_equal(s.train_dates, r.train_dates) and np.array_equal(s.train_tickers, r.train_tickers)
        assert s.rf_params == r.rf_params and s.hgb_params == r.hgb_params
    block = dict(start=g.valid_from, end=nxt.valid_from - timedelta(days=1))
    a = score_prescreen(models, feats, vr, **block)
    b = score_prescreen(again, feats, vr, **block)  # its final generation scores every date after its cut
    assert (a.get_column("generation") == g.name).all() and (b.get_column("generation") == "final").all()
    assert a.drop("generation").equals(b.drop("generation"))
    assert a.get_column("buy_probability").drop_nulls().n_unique() > 10


def test_per_generation_evaluation(models, data):
    feats, labels, vr, fold = data
    ev = evaluate_prescreen(models, feats, labels, vr, per_generation=True)
    m = ev["metrics"]
    assert m.height == 24 and ev["calibration"].height == 8 * 10
    assert m.group_by("generation").len().sort("generation").rows() == [("final", 8), ("g1", 8), ("g2", 8)]
    for g in ("g1", "g2"):
        row = m.filter((pl.col("generation") == g) & (pl.col("side") == "buy") & (pl.col("regime") == "all")).row(
            0, named=True)
        assert row["n_rows"] > 0 and 0 <= row["roc_auc"] <= 1
    # g2 is evaluated on its dates only, whose labels ended by train_end
    n_g2 = m.filter((pl.col("generation") == "g2") & (pl.col("side") == "buy") & (pl.col("regime") == "all"))
    scored = _all_scores(models, data).filter(pl.col("generation") == "g2").drop_nulls("buy_probability")
    assert 0 < n_g2.get_column("n_rows").item() < scored.height


def test_models_never_see_test_rows(models, data):
    feats, labels, vr, fold = data
    assert set(models.slots) == {slot_key(s, r) for s in SIDES for r in REGIMES}
    test_start = np.datetime64(fold.test_start, "D")
    regime_of = dict(vr.select("date", vol_regime_expr("band")).iter_rows())
    for s in models.slots.values():
        assert s.n_train > 0 and s.constant is None and len(s.estimators) == 2
        assert s.train_dates.size == s.train_tickers.size == s.train_label_end.size == s.n_train
        assert (s.train_dates >= np.datetime64(fold.train_start, "D")).all()
        assert (s.train_dates <= np.datetime64(fold.train_end, "D")).all()
        assert (s.train_label_end <= np.datetime64(fold.train_end, "D")).all()  # labels purged from train end
        assert (s.train_label_end < test_start).all()
        # every training row belongs to the slot's regime
        regimes = {regime_of[d] for d in s.train_dates.astype("datetime64[D]").astype(date)}
        assert regimes == {s.regime}
        # the recorded (ticker, date) rows exist in the train window of the features and none is a test row
        keys = pl.DataFrame({"ticker": s.train_tickers, "date": s.train_dates}).with_columns(pl.col("date").cast(pl.Date))
        assert keys.join(feats.filter(fold.test_expr()), on=["ticker", "date"]).height == 0
        assert keys.join(feats.filter(fold.train_expr()), on=["ticker", "date"]).height == s.n_train
        assert s.rf_params in [dict(g) for g in FAST.rf_grid]
        assert any(r.get("chosen") for r in s.cv_results)
    # every 5th session per ticker: ~1/5 of the eligible rows
    total = sum(s.n_train for s in models.slots.values()) / 2
    eligible = feats.filter(fold.train_expr()).drop_nulls().height
    assert 0.12 < total / eligible < 0.25
    summary = models.summary_frame()
    assert summary.height == 18 and summary.get_column("train_last_label_end").max() <= fold.train_end
    assert summary.get_column("generation").value_counts().sort("generation").rows() == [
        ("final", 6), ("g1", 6), ("g2", 6)
    ]


def test_score_and_evaluate(models, data):
    feats, labels, vr, fold = data
    scores = score_prescreen(models, feats, vr, start=fold.test_start, end=fold.test_end)
    assert dict(scores.schema) == SCORES_SCHEMA
    assert scores.height == feats.filter(fold.test_expr()).height
    p = scores.drop_nulls().select("buy_probability", "sell_probability").to_numpy()
    assert p.size and ((p >= 0) & (p <= 1)).all()
    # rows with a null feature get null probabilities
    nulls = feats.filter(fold.test_expr()).filter(pl.any_horizontal(pl.all().exclude("ticker", "date").is_null()))
    got = scores.join(nulls.select("ticker", "date"), on=["ticker", "date"])
    assert got.get_column("buy_probability").null_count() == got.height
    ev = evaluate_prescreen(models, feats, labels, vr, top_fraction=0.2)
    m = ev["metrics"]
    assert m.height == 8 and set(m.get_column("regime")) == {*REGIMES, "all"}
    assert (m.get_column("generation") == "final").all()
    all_buy = m.filter((pl.col("side") == "buy") & (pl.col("regime") == "all")).row(0, named=True)
    assert 0 <= all_buy["roc_auc"] <= 1 and 0 <= all_buy["brier"] <= 1
    assert all_buy["baseline_feature"] == "atr_pct_14" and 0 <= all_buy["baseline_roc_auc"] <= 1
    assert all_buy["n_rows"] == m.filter((pl.col("side") == "buy") & (pl.col("regime") != "all")).get_column("n_rows").sum()
    cal = ev["calibration"]
    assert cal.height == 8 * 10
    assert cal.group_by("side", "regime").agg(pl.col("n_rows").sum()).sort("side", "regime").get_column("n_rows").to_list() == (
        m.sort("side", "regime").get_column("n_rows").to_list()
    )


def _constant_slots(offset: float = 0.0) -> dict[str, SlotModel]:
    empty = np.array([], dtype="datetime64[D]")
    values = {("buy", "low"): 0.1, ("buy", "moderate"): 0.2, ("buy", "high"): 0.3,
              ("sell", "low"): 0.4, ("sell", "moderate"): 0.5, ("sell", "high"): 0.6}
    return {
        slot_key(s, r): SlotModel(
            side=s, regime=r, label_column=f"{s}_5d", estimators=(), constant=v + offset, rf_params={},
            hgb_params={}, cv_results=[], n_train=0, n_positive=0, train_dates=empty,
            train_tickers=np.array([], dtype=str), train_label_end=empty,
        )
        for (s, r), v in values.items()
    }


def _constant_models(fold: Fold, earlier: tuple[Generation, ...] = ()) -> PrescreenModels:
    final = Generation("final", fold.train_end + timedelta(days=1), fold.train_end, _constant_slots())
    return PrescreenModels(fold=fold, config=PrescreenConfig(), feature_names=("f1",), generations=(*earlier, final))


def test_regime_routing():
    fold = Fold("2021", date(2010, 1, 4), date(2020, 11, 30), 21, date(2021, 1, 4), date(2021, 12, 31))
    models = _constant_models(fold)
    days = [date(2021, 3, d) for d in (1, 2, 3, 4, 5)]
    vix = pl.DataFrame(
        {"symbol": "VIX", "date": days[:4], "open": 0.0, "high": 0.0, "low": 0.0, "close": [12.0, 17.0, 25.0, 45.0]},
        schema={"symbol": pl.Utf8, "date": pl.Date, "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64},
    )
    vr = vix_regimes(vix).vstack(pl.DataFrame({"date": [days[4]], "vix": [None], "band": [None], "bucket": [None]},
                                              schema=dict(vix_regimes(vix).schema)))
    feats = pl.DataFrame(
        {"ticker": ["A"] * 5 + ["B"] * 5, "date": days * 2, "f1": [1.0] * 5 + [1.0, None, 1.0, 1.0, 1.0]},
        schema={"ticker": pl.Utf8, "date": pl.Date, "f1": pl.Float64},
    )
    out = score_prescreen(models, feats, vr)
    a = out.filter(pl.col("ticker") == "A").sort("date")
    assert a.get_column("regime").to_list() == ["low", "moderate", "high", "high", None]
    assert a.get_column("buy_probability").to_list() == [0.1, 0.2, 0.3, 0.3, None]
    assert a.get_column("sell_probability").to_list() == [0.4, 0.5, 0.6, 0.6, None]
    b = out.filter(pl.col("ticker") == "B").sort("date")
    assert b.get_column("buy_probability").to_list() == [0.1, None, 0.3, 0.3, None]  # null feature -> null
    only = score_prescreen(models, feats, vr, dates=[days[2]])
    assert only.height == 2 and only.get_column("buy_probability").to_list() == [0.3, 0.3]
    assert out.get_column("generation").unique().to_list() == ["final"]


def test_generation_routing_by_date():
    fold = Fold("2021", date(2010, 1, 4), date(2021, 3, 3), 0, date(2021, 3, 4), date(2021, 12, 31))
    g1 = Generation("g1", date(2021, 3, 2), date(2021, 3, 1), _constant_slots(0.01))
    models = _constant_models(fold, (g1,))
    days = [date(2021, 3, d) for d in (1, 2, 3, 4, 5)]
    vix = pl.DataFrame({"symbol": "VIX", "date": days, "open": 0.0, "high": 0.0, "low": 0.0, "close": 12.0},
                       schema_overrides={"date": pl.Date})
    feats = pl.DataFrame({"ticker": "A", "date": days, "f1": 1.0}, schema_overrides={"date": pl.Date})
    out = score_prescreen(models, feats, vix_regimes(vix)).sort("date")
    assert out.get_column("generation").to_list() == [None, "g1", "g1", "final", "final"]
    assert out.get_column("buy_probability").to_list() == [None, pytest.approx(0.11), pytest.approx(0.11), 0.1, 0.1]
    assert out.get_column("sell_probability").to_list() == [None, pytest.approx(0.41), pytest.approx(0.41), 0.4, 0.4]


def test_artifact_without_generations_loads_as_final(data):
    fold = data[3]
    state = {"fold": fold, "config": PrescreenConfig(), "feature_names": ("f1",), "slots": _constant_slots(),
             "fit_seconds": 1.0, "meta": {}}
    old = PrescreenModels.__new__(PrescreenModels)
    old.__setstate__(state)
    assert [g.name for g in old.generations] == ["final"] and old.slot("buy", "low").constant == 0.1
    assert old.final.valid_from == fold.train_end + timedelta(days=1) and old.final.label_cutoff == fold.train_end


def test_artifacts_roundtrip(tmp_path, models, data):
    feats, _, vr, fold = data
    path = tmp_path / "models" / "prescreen.joblib"
    sha = save_models(models, path)
    assert len(sha) == 64
    loaded = load_models(path, sha)
    a = score_prescreen(models, feats, vr, start=fold.test_start, end=fold.test_end)
    b = score_prescreen(loaded, feats, vr, start=fold.test_start, end=fold.test_end)
    assert a.equals(b)
    with pytest.raises(ArtifactIntegrityError, match="SHA-256"):
        load_models(path, "0" * 64)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ArtifactIntegrityError):
        load_models(path, sha)
    with pytest.raises(FileNotFoundError):
        load_models(tmp_path / "missing.joblib", sha)


def test_thin_slot_falls_back_to_base_rate(data):
    feats, labels, vr, fold = data
    cfg = FAST.model_copy(update={"min_rows": 10**7})
    m = train_prescreen(feats, labels, vr, fold, cfg)
    for s in m.slots.values():
        assert s.constant == pytest.approx(s.base_rate) and s.estimators == ()
    scores = score_prescreen(m, feats, vr, start=fold.test_start, end=fold.test_end).drop_nulls()
    low = scores.filter(pl.col("regime") == "low").get_column("buy_probability").unique().to_list()
    assert low == [pytest.approx(m.slot("buy", "low").base_rate)]

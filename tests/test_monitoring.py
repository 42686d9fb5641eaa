"""Drift statistics: PSI, HMM state-mix shift, paper-track decay."""
import json

import numpy as np
import polars as pl
import pytest

from ml.monitoring import feature_psi, paper_decay, psi, state_shift


def test_psi_is_near_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 5000)
    assert psi(ref, rng.normal(0, 1, 2000)) < 0.02
    assert psi(ref, rng.normal(1.0, 1, 2000)) > 0.25
    assert psi(ref, rng.normal(0, 3, 2000)) > 0.25
    assert psi(np.ones(100), np.ones(30)) == 0.0  # a constant (or binary) feature that stayed put
    assert psi(np.ones(100), rng.normal(0, 1, 50)) > 0.25
    assert np.isnan(psi(ref, np.array([np.nan])))


def test_psi_matches_the_textbook_formula_on_deciles():
    ref = np.arange(1000.0)
    cur = np.concatenate([np.arange(0, 100.0), np.full(100, 950.0)])  # half in the first, half in the last decile
    p, q = np.full(10, 0.1), np.array([0.5] + [1e-4] * 8 + [0.5])
    assert psi(ref, cur) == pytest.approx(float(np.sum((q - p) * np.log(q / p))), rel=1e-9)


def test_feature_psi_ranks_features():
    rng = np.random.default_rng(1)
    ref = rng.normal(0, 1, (3000, 3))
    cur = np.column_stack([rng.normal(0, 1, 500), rng.normal(2, 1, 500), rng.normal(0.5, 1, 500)])
    table = feature_psi(ref, cur, ["same", "far", "near"])
    assert table["feature"].to_list() == ["far", "near", "same"]


def test_state_shift_total_variation():
    ref = pl.DataFrame({"sector": ["A"] * 4 + ["B"] * 4,
                        "state": ["Bull", "Bull", "Bear", "Bear", "Bull", "Bull", "Bull", None]})
    cur = pl.DataFrame({"sector": ["A", "A", "B", "B"], "state": ["Bull", "Bear", "Bear", "Bear"]})
    out = state_shift(ref, cur)
    assert out["sector"].to_list() == ["B", "A"]
    assert out["tv_distance"].to_list() == pytest.approx([1.0, 0.0])
    assert json.loads(out["reference_shares"][0]) == {"Bull": 1.0}


def test_paper_decay():
    d = paper_decay(np.array([0.01, -0.02]), np.array([0.0, 0.01]))
    assert d["days"] == 2 and d["paper_return"] == pytest.approx(1.01 * 0.98 - 1)
    assert d["excess_return"] == pytest.approx(1.01 * 0.98 - 1.01)
    with pytest.raises(ValueError, match="same days"):
        paper_decay(np.zeros(2), np.zeros(3))

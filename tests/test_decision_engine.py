"""The stock book's decision engine on hand-computed cases: source weights per VIX band, the combination
(score, agreement, conviction, action), HOLD-AS-BUY, the technical transforms, the risk limits and sizing
(bands, caps, scale-down, stop-loss, cooldown, min trade), max-Sharpe weights and one end-to-end day."""
import numpy as np
import pytest
from pydantic import ValidationError

from ml.decision_engine import (
    BUY,
    HOLD,
    SELL,
    EngineConfig,
    band_limits,
    classify,
    combine,
    conviction_weights,
    decide_day,
    investable,
    max_position_pct,
    max_sharpe_weights,
    rl_signal,
    rl_vote,
    signal_weights,
    stop_distance,
    stop_hit,
    target_weights,
    technical_components,
    technical_signal,
)

NAN = np.nan
NEVER = 10_000  # days since the last trade of a name never traded


def _targets(held, action, conviction, band, vix, cfg=None, dst=None, stop=None, **kw):
    held = np.asarray(held, dtype=float)
    dst = np.full(held.size, NEVER) if dst is None else np.asarray(dst)
    stop = np.zeros(held.size, dtype=bool) if stop is None else np.asarray(stop)
    return target_weights(held, np.asarray(action), np.asarray(conviction, dtype=float), band, vix, cfg,
                          days_since_trade=dst, stop=stop, **kw)


# ----------------------------------------------------------------------------- source weights
@pytest.mark.parametrize("band,raw", [("low", (0.30, 0.40, 0.20)), ("moderate", (0.35, 0.30, 0.25)),
                                      ("high", (0.35, 0.20, 0.35)), ("extreme", (0.40, 0.10, 0.40))])
def test_three_signal_weights_drop_fundamentals_and_renormalise(band, raw):
    w = signal_weights(band)
    np.testing.assert_allclose(w, np.array([*raw, 0.0]) / 0.90)
    assert w.sum() == pytest.approx(1.0)


def test_all_four_sources_and_equal_weights_ablation():
    np.testing.assert_allclose(signal_weights("low", EngineConfig(available=("prescreen", "rl", "technical",
                                                                              "fundamental"))),
                               [0.30, 0.40, 0.20, 0.10])
    eq = EngineConfig(equal_regime_weights=True)
    for band in ("low", "moderate", "high", "extreme"):
        np.testing.assert_allclose(signal_weights(band, eq), [1 / 3, 1 / 3, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="unknown VIX band"):
        signal_weights("calm")


def test_config_validation():
    EngineConfig()  # the defaults are valid
    weights = EngineConfig().regime_weights
    with pytest.raises(ValidationError, match=">= 0"):
        EngineConfig(regime_weights={**weights, "low": (-0.1, 0.5, 0.5, 0.1)})
    with pytest.raises(ValidationError, match="no positive weight"):
        EngineConfig(regime_weights={**weights, "high": (0.0, 0.0, 0.0, 1.0)})
    with pytest.raises(ValidationError, match="exactly the bands"):
        EngineConfig(regime_weights={k: v for k, v in weights.items() if k != "extreme"})
    with pytest.raises(ValidationError, match="exactly the bands"):
        EngineConfig(cash_reserve={"low": 0.05})
    with pytest.raises(ValidationError, match="available"):
        EngineConfig(available=("prescreen", "news"))
    with pytest.raises(ValidationError):
        EngineConfig(threshold=0.2, bogus=1)  # extra fields are forbidden


# ----------------------------------------------------------------------------- combination
def test_combine_hand_case_low_band():
    out = combine(np.array([[0.6, 0.5, -0.2, NAN]]), "low")
    score = (0.30 * 0.6 + 0.40 * 0.5 + 0.20 * -0.2) / 0.90  # 0.34 / 0.9
    assert out.score[0] == pytest.approx(score)
    assert out.agreement[0] == pytest.approx(2 / 3)  # two of three active signals agree with the positive score
    assert out.conviction[0] == pytest.approx(score * (0.5 + 0.5 * 2 / 3))  # 0.3148
    assert out.action[0] == BUY
    np.testing.assert_allclose(out.weights[0], [0.30 / 0.9, 0.40 / 0.9, 0.20 / 0.9, 0.0])


def test_all_neutral_signals_agreement_half_and_hold():
    out = combine(np.array([[0.005, -0.005, 0.0, NAN], [0.0, 0.0, 0.0, NAN]]), "moderate")
    assert out.score[0] == pytest.approx((0.35 * 0.005 - 0.30 * 0.005) / 0.90)
    np.testing.assert_array_equal(out.agreement, [0.5, 0.5])
    assert out.conviction[0] == pytest.approx(out.score[0] * 0.75)
    np.testing.assert_array_equal(out.action, [HOLD, HOLD])


def test_zero_score_with_active_signals_has_half_agreement():
    cfg = EngineConfig(equal_regime_weights=True, available=("prescreen", "rl"))
    out = combine(np.array([[0.4, -0.4, 0.9, 0.9]]), "high", cfg)  # technical/fundamental not available
    assert out.score[0] == 0.0 and out.agreement[0] == 0.5 and out.action[0] == HOLD


def test_missing_source_renormalises_per_row():
    sig = np.array([[0.5, NAN, -0.1, NAN],
                    [0.5, NAN, -0.1, 0.9],   # fundamental not available: ignored
                    [NAN, NAN, NAN, NAN]])   # nothing usable
    out = combine(sig, "low")
    for i in (0, 1):
        np.testing.assert_allclose(out.weights[i], [0.6, 0.0, 0.4, 0.0])  # 0.3 / 0.5, 0.2 / 0.5
        assert out.score[i] == pytest.approx(0.6 * 0.5 - 0.4 * 0.1)      # 0.26
        assert out.agreement[i] == pytest.approx(0.5)
        assert out.conviction[i] == pytest.approx(0.26 * 0.75)            # 0.195 > 0.15
        assert out.action[i] == BUY
    assert out.score[2] == 0.0 and out.agreement[2] == 0.5 and out.action[2] == HOLD
    np.testing.assert_array_equal(out.weights[2], np.zeros(4))


def test_thresholds_on_conviction():
    np.testing.assert_array_equal(classify(np.array([0.15, 0.1501, -0.16, -0.15, NAN])),
                                  [HOLD, BUY, SELL, HOLD, HOLD])
    tech_only = EngineConfig(available=("technical",))
    out = combine(np.array([[NAN, NAN, 0.15, NAN], [NAN, NAN, 0.1501, NAN], [NAN, NAN, -0.16, NAN]]), "low",
                  tech_only)
    np.testing.assert_allclose(out.conviction, [0.15, 0.1501, -0.16])  # one agreeing signal: factor 1
    np.testing.assert_array_equal(out.action, [HOLD, BUY, SELL])


# ----------------------------------------------------------------------------- RL and technical signals
def test_rl_signal_hold_as_buy():
    a = np.array([0.1, 0.1, 0.2, -0.1, -0.2, 0.15, NAN])
    held = np.array([0.05, 0.0, 0.0, 0.05, 0.05, 0.05, 0.05])
    np.testing.assert_allclose(rl_signal(a, held), [0.05, 0.0, 0.2, 0.0, -0.2, 0.075, NAN])
    np.testing.assert_array_equal(rl_vote(a, held), [BUY, HOLD, BUY, HOLD, SELL, BUY, HOLD])


def test_technical_transforms_by_hand():
    comps = technical_components(rsi_14=[30.0, 60.0, NAN], macd_hist=[0.005, NAN, NAN], bb_pctb_20=[0.25, 1.2, NAN],
                                 adx_14=[30.0, 15.0, NAN], plus_di_14=[25.0, 10.0, NAN],
                                 minus_di_14=[15.0, 20.0, NAN], sma_cross_50_200=[-1.0, 1.0, NAN],
                                 rel_volume_20=[1.5, 0.8, NAN], ret_1d=[0.01, -0.02, NAN])
    assert comps.shape == (3, 6)
    np.testing.assert_allclose(comps[0], [1.0, np.tanh(1.0), 0.5, 0.5, -1.0, 0.5])
    np.testing.assert_allclose(comps[1], [-0.5, NAN, -1.0, 0.0, 1.0, 0.0])
    assert np.isnan(comps[2]).all()
    sig = technical_signal([30.0, 60.0, NAN], [0.005, NAN, NAN], [0.25, 1.2, NAN], [30.0, 15.0, NAN],
                           [25.0, 10.0, NAN], [15.0, 20.0, NAN], [-1.0, 1.0, NAN], [1.5, 0.8, NAN],
                           [0.01, -0.02, NAN])
    np.testing.assert_allclose(sig, [(1.0 + np.tanh(1.0) + 0.5 + 0.5 - 1.0 + 0.5) / 6, -0.1, 0.0])
    # extremes saturate at +-1; a strong downtrend (ADX 50, -DI above +DI) on high volume of a down day
    c = technical_components(90.0, -0.05, -0.5, 50.0, 10.0, 30.0, -1.0, 3.0, -0.03)
    np.testing.assert_allclose(c[0], [-1.0, np.tanh(-10.0), 1.0, -1.0, -1.0, -1.0])


# ----------------------------------------------------------------------------- risk limits and sizing
def test_max_position_pct_by_vix():
    assert max_position_pct(15.0) == pytest.approx(0.08)
    assert max_position_pct(25.0) == pytest.approx(0.07)   # 0.08 - 0.002 * 5
    assert max_position_pct(60.0) == pytest.approx(0.02)   # 0.08 - 0.08 = 0 -> the floor
    np.testing.assert_allclose(max_position_pct(np.array([20.0, 30.0, NAN])), [0.08, 0.06, 0.02])


def test_band_limits_and_investable():
    assert band_limits("low") == (1.0, 0.80, 0.05)
    assert band_limits("extreme") == (0.0, 0.0, 0.15)
    assert [investable(b) for b in ("low", "moderate", "high", "extreme")] == pytest.approx([0.80, 0.60, 0.40, 0.0])
    cfg = EngineConfig(max_invested={"low": 0.98, "moderate": 0.6, "high": 0.4, "extreme": 0.0})
    assert investable("low", cfg) == pytest.approx(0.95)   # the cash reserve binds


@pytest.mark.parametrize("band,vix,expected", [("low", 12.0, 1.0 * 0.80), ("moderate", 17.0, 0.75 * 0.60),
                                               ("high", 25.0, 0.5 * 0.40)])
def test_single_buy_sized_by_band(band, vix, expected):
    loose = EngineConfig(max_position_base=1.0)  # no binding cap: size = multiplier * 1 * investable
    assert _targets([0.0], [BUY], [0.5], band, vix, loose)[0] == pytest.approx(expected)
    # the default cap binds: min(size, max_position_pct(vix))
    assert _targets([0.0], [BUY], [0.5], band, vix)[0] == pytest.approx(min(expected, max_position_pct(vix)))


def test_conviction_weighting_over_the_buy_set():
    np.testing.assert_allclose(conviction_weights(np.array([0.3, 0.1, -0.2, NAN])), [0.75, 0.25, 0.0, 0.0])
    np.testing.assert_array_equal(conviction_weights(np.array([-0.1, 0.0])), [0.0, 0.0])
    # 20 equal BUYs in the moderate band: 0.75 * (1/20) * 0.60 each, under the 0.08 cap
    t = _targets(np.zeros(20), np.full(20, BUY), np.full(20, 0.4), "moderate", 17.0)
    np.testing.assert_allclose(t, 0.0225)


def test_extreme_band_sells_everything():
    t = _targets([0.05, 0.04, 0.0], [BUY, HOLD, BUY], [0.9, 0.0, 0.8], "extreme", 45.0, dst=[0, 1, NEVER])
    np.testing.assert_array_equal(t, [0.0, 0.0, 0.0])


def test_new_buys_scaled_down_to_fit_investable():
    # low band: held 0.5 + 0.2 (HOLD) + two new BUYs at the 0.08 cap = 0.86 > 0.80 -> the new ones share 0.10
    t = _targets([0.5, 0.2, 0.0, 0.0], [HOLD, HOLD, BUY, BUY], [0.0, 0.0, 0.4, 0.4], "low", 12.0)
    np.testing.assert_allclose(t, [0.5, 0.2, 0.05, 0.05])
    assert t.sum() == pytest.approx(0.80)


def test_held_names_alone_over_investable_are_scaled():
    # high band (investable 0.40): held 0.3 + 0.2 -> scaled by 0.4 / 0.5; the new BUY gets nothing
    t = _targets([0.3, 0.2, 0.0], [HOLD, HOLD, BUY], [0.0, 0.0, 0.5], "high", 25.0)
    np.testing.assert_allclose(t, [0.24, 0.16, 0.0])
    # the first name is in cooldown: it keeps 0.3, the other fits into the remaining 0.1
    t = _targets([0.3, 0.2, 0.0], [HOLD, HOLD, BUY], [0.0, 0.0, 0.5], "high", 25.0, dst=[1, NEVER, NEVER])
    np.testing.assert_allclose(t, [0.3, 0.1, 0.0])


def test_stop_distance_and_hits():
    np.testing.assert_allclose(stop_distance(np.array([0.01, 0.04, NAN])), [0.05, 0.08, 0.05])
    hit = stop_hit(np.array([95.0, 95.01, 92.5, 92.0, NAN]), np.full(5, 100.0),
                   np.array([0.01, 0.01, 0.04, 0.04, 0.01]))
    np.testing.assert_array_equal(hit, [True, False, False, True, False])


def test_stop_and_sell_exit_despite_cooldown_and_min_trade():
    t = _targets([0.05, 0.003, 0.04], [BUY, SELL, SELL], [0.6, -0.3, -0.2], "low", 12.0,
                 dst=[0, 1, NEVER], stop=[True, False, False])
    np.testing.assert_array_equal(t, [0.0, 0.0, 0.0])


def test_cooldown_keeps_held_weight_but_not_entries():
    # held 0.05 with a BUY would go to the 0.08 cap; traded 2 sessions ago: kept; 5 sessions ago: resized
    assert _targets([0.05], [BUY], [0.5], "low", 12.0, dst=[2])[0] == pytest.approx(0.05)
    assert _targets([0.05], [BUY], [0.5], "low", 12.0, dst=[5])[0] == pytest.approx(0.08)
    # a name not held is entered even if it was traded (sold) yesterday
    assert _targets([0.0], [BUY], [0.5], "low", 12.0, dst=[1])[0] == pytest.approx(0.08)


def test_min_trade_skips_small_resizes_and_entries():
    assert _targets([0.077], [BUY], [0.5], "low", 12.0)[0] == pytest.approx(0.077)  # |0.08 - 0.077| < 0.005
    assert _targets([0.07], [BUY], [0.5], "low", 12.0)[0] == pytest.approx(0.08)    # 0.01 traded
    # 50 equal BUYs in the high band: 0.5 * (1/50) * 0.40 = 0.004 each < 0.005 -> nothing entered
    t = _targets(np.zeros(50), np.full(50, BUY), np.full(50, 0.3), "high", 25.0)
    np.testing.assert_array_equal(t, np.zeros(50))


# ----------------------------------------------------------------------------- max-Sharpe weights
def test_max_sharpe_bounds_sum_and_alpha_tilt():
    rng = np.random.default_rng(0)
    r = rng.normal(0.0, 0.02, size=(300, 5))
    w = max_sharpe_weights(r, np.array([0.9, 0.2, 0.2, 0.2, 0.2]), cap=0.3)
    assert w.sum() == pytest.approx(1.0)
    assert (w >= 0).all() and (w <= 0.3 + 1e-9).all()
    assert w[0] == pytest.approx(0.3, abs=1e-6)   # the high-alpha name sits at its cap
    w2 = max_sharpe_weights(rng.normal(0.0, 0.02, size=(500, 2)), np.array([0.8, 0.3]), cap=1.0)
    assert w2[0] > 0.6 > 0.4 > w2[1]
    # a cap below 1/n is raised to 1/n: only equal weights are feasible
    np.testing.assert_allclose(max_sharpe_weights(r[:, :4], np.array([0.9, 0.2, 0.2, 0.2]), cap=0.1), 0.25)


def test_max_sharpe_equal_for_iid_and_lower_vol_preferred():
    rng = np.random.default_rng(1)
    w = max_sharpe_weights(rng.normal(0.0005, 0.02, size=(1000, 4)), np.full(4, 0.5), cap=1.0)
    np.testing.assert_allclose(w, 0.25, atol=0.02)
    # equal alpha, vols 1 % vs 3 %: mu = alpha * sigma, so w ~ alpha / sigma tilts to the calm name
    r = rng.normal(0.0, 1.0, size=(1000, 2)) * np.array([0.01, 0.03])
    w = max_sharpe_weights(r, np.array([0.5, 0.5]), cap=1.0)
    assert w[0] > 0.6 and w.sum() == pytest.approx(1.0)


def test_max_sharpe_fallbacks():
    rng = np.random.default_rng(2)
    alpha = np.array([0.6, 0.2])
    np.testing.assert_allclose(max_sharpe_weights(rng.normal(size=(10, 2)), alpha, 1.0), [0.75, 0.25])
    r = rng.normal(0.0, 1.0, size=(40, 2)) * np.array([0.01, 0.03])  # unequal vols: max-Sharpe != conviction
    r[::2, 0] = NAN  # 20 complete rows left: enough; 19 are not
    assert max_sharpe_weights(r, alpha, 1.0)[0] > 0.8
    r[1, 1] = NAN
    np.testing.assert_allclose(max_sharpe_weights(r, alpha, 1.0), [0.75, 0.25])
    np.testing.assert_allclose(max_sharpe_weights(rng.normal(size=(50, 1)), np.array([0.4]), 0.1), [1.0])
    np.testing.assert_array_equal(max_sharpe_weights(rng.normal(size=(50, 2)), np.array([-0.4, 0.0]), 1.0), [0, 0])


def test_target_weights_max_sharpe_respects_caps():
    cfg = EngineConfig(weighting="max_sharpe", max_position_base=0.3)
    rng = np.random.default_rng(3)
    window = rng.normal(0.0, 0.02, size=(300, 4))
    t = _targets(np.zeros(4), [BUY, BUY, BUY, HOLD], [0.9, 0.3, 0.3, 0.0], "low", 12.0, cfg,
                 returns_window=window)
    assert t[3] == 0.0 and (t[:3] > 0).all()
    assert (t <= 0.3 + 1e-9).all() and t.sum() <= 0.80 + 1e-9
    assert t[0] == pytest.approx(0.3, abs=1e-6)  # raw at its cap 0.3 / 0.8, sized 1.0 * 0.375 * 0.8
    with pytest.raises(ValueError, match="returns_window"):
        _targets(np.zeros(4), [BUY, BUY, BUY, HOLD], [0.9, 0.3, 0.3, 0.0], "low", 12.0, cfg)


# ----------------------------------------------------------------------------- one day end to end
def test_decide_day_five_stocks():
    cfg = EngineConfig(max_position_base=0.5)  # the per-name cap 0.5 at VIX 12
    signals = np.array([[0.6, 0.5, -0.2, NAN],    # BUY (the hand case)
                        [-0.5, -0.4, -0.3, NAN],  # SELL, held, traded yesterday: exits anyway
                        [0.1, NAN, 0.05, NAN],    # weak: HOLD, held -> kept
                        [0.9, 0.9, 0.9, NAN],     # not a candidate: ignored, held -> kept
                        [0.9, 0.8, 0.7, NAN]])    # strong BUY
    cand = np.array([True, True, True, False, True])
    held = np.array([0.0, 0.05, 0.04, 0.03, 0.0])
    d = decide_day(signals, cand, held, "low", 12.0, cfg, days_since_trade=np.array([NEVER, 1, NEVER, NEVER, NEVER]),
                   stop=np.zeros(5, dtype=bool))
    conv0 = 0.34 / 0.9 * (0.5 + 0.5 * 2 / 3)
    conv4 = 0.73 / 0.9
    np.testing.assert_allclose(d.score, [0.34 / 0.9, -0.37 / 0.9, 0.08, NAN, 0.73 / 0.9])
    np.testing.assert_allclose(d.agreement, [2 / 3, 1.0, 1.0, NAN, 1.0])
    np.testing.assert_allclose(d.conviction, [conv0, -0.37 / 0.9, 0.08, NAN, conv4])
    np.testing.assert_array_equal(d.action, [BUY, SELL, HOLD, HOLD, BUY])
    np.testing.assert_allclose(d.weights_used[2], [0.6, 0.0, 0.4, 0.0])
    np.testing.assert_array_equal(d.weights_used[3], np.zeros(4))
    raw0 = conv0 / (conv0 + conv4)
    expected = [0.80 * raw0, 0.0, 0.04, 0.03, 0.5]  # 0.2237, exit, kept, kept, min(0.80 * 0.7204, 0.5)
    np.testing.assert_allclose(d.targets, expected)
    assert d.targets.sum() <= 0.80

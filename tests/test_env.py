"""Allocation environment: cost/timing arithmetic, the two faces agreeing, gymnasium API, the panel it runs on
(the panel's columns themselves: tests/test_dataset.py)."""
from __future__ import annotations

import math
import warnings
from datetime import date

import numpy as np
import polars as pl
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from ml.costs import drift_weights, net_returns, rebalance
from ml.data.synthetic import generate_market
from ml.data.universe import Universe
from ml.dataset import OBSERVATION_VARIANTS, allocation_panel
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import BatchedPortfolioEnv, EnvConfig, PortfolioEnv, softmax_weights
from ml.features import compute_features

ASSETS = ("SPY", "QQQ", "TLT", "GLD")


@pytest.fixture(scope="module")
def market():
    return generate_market(
        Universe(include_stocks=False, sector_etfs=[], history_start=date(2015, 1, 1), history_end=date(2017, 12, 31)),
        seed=11,
    )


@pytest.fixture(scope="module")
def features(market) -> pl.DataFrame:
    return compute_features(market.bars, market.index_bars)


@pytest.fixture(scope="module")
def panel(features) -> MarketPanel:
    return allocation_panel(features, None, ASSETS)


def _tiny_panel() -> MarketPanel:
    """4 rows, 2 assets; returns of days 1..3 chosen by hand (row 0's return is never earned)."""
    returns = np.array([[0.0, 0.0], [0.01, -0.02], [0.03, 0.0], [-0.01, 0.02]])
    feats = np.arange(4 * 2 * 3, dtype=float).reshape(4, 6) / 100.0
    vixf = np.array([[1.0, 0.1, 0.05, 1.0], [0.5, 0.0, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    names = [f"{a}.{f}" for a in ("EQ", "BOND") for f in ("ret_5d", "ret_21d", "rv_21d_ann")]
    names += ["vix_centered", "vix_chg_5d", "vix_rel_21", "vix_high_63"]
    return MarketPanel.from_arrays(returns, np.hstack([feats, vixf]), feature_names=names, assets=("EQ", "BOND"),
                                   vix=20.0 + 10.0 * vixf[:, 0])


# ----------------------------------------------------------------------------------------------------
# costs / timing
# ----------------------------------------------------------------------------------------------------


def test_hand_computed_three_days_both_faces():
    """Decision at close t earns t -> t+1, costs on turnover incl. cash, drift between steps."""
    p = _tiny_panel()
    cfg = EnvConfig(reward="net", equity_assets=("EQ",), terminate_below=None, dtype="float64", execution="close")
    c = 0.0005
    big = 1e3
    actions = [np.log([0.5, 0.3, 0.2]), np.array([-big, -big, 0.0]), np.array([0.0, -big, -big])]
    # hand computation
    net1 = (0.5 * 0.01 + 0.3 * -0.02) - c * (0.5 + 0.3 + 0.8)  # -0.001 - 0.0008
    drift1 = np.array([0.505, 0.294, 0.2]) / 0.999
    net2 = 0.0 - c * (drift1[0] + drift1[1] + (1.0 - drift1[2]))  # all to cash: the +3% of day 2 is NOT earned
    net3 = -0.01 - c * 2.0  # cash -> EQ, earns day 3's -1%
    expected_net = [net1, net2, net3]
    assert net1 == pytest.approx(-0.0018, abs=1e-15)

    gym_env = PortfolioEnv(p, cfg, 0, 3)
    obs, _ = gym_env.reset(options={"start_idx": 0})
    np.testing.assert_allclose(obs, np.concatenate([p.features[0], [0.0, 0.0, 1.0]]))
    b_env = BatchedPortfolioEnv(p, cfg, 0, 3, num_envs=1)
    b_obs = b_env.reset(starts=[0])
    np.testing.assert_allclose(b_obs[0].numpy(), obs)
    equity = 1.0
    for k, a in enumerate(actions):
        obs, r, term, trunc, info = gym_env.step(a)
        b_obs, b_r, b_term, b_trunc, b_info = b_env.step(torch.as_tensor(a)[None])
        equity *= 1.0 + expected_net[k]
        assert r == pytest.approx(expected_net[k], abs=1e-15)
        assert info["net"] == pytest.approx(expected_net[k], abs=1e-15)
        assert float(b_r[0]) == pytest.approx(expected_net[k], abs=1e-15)
        assert info["equity"] == pytest.approx(equity, abs=1e-15)
        if k == 0:  # next observation: row 1 features + drifted weights
            np.testing.assert_allclose(obs, np.concatenate([p.features[1], drift1]), atol=1e-15)
            np.testing.assert_allclose(b_obs[0].numpy(), obs, atol=1e-15)
            assert info["turnover"] == pytest.approx(1.6, abs=1e-15)
        assert term is False and bool(b_term[0]) is False
        assert trunc is (k == 2) and bool(b_trunc[0]) is (k == 2)  # the window ends at row 3


def _dollar_book(gaps, returns, targets, c):
    """Independent bookkeeping in dollars for ``next_open``: positions ride the overnight gap, the book
    trades to the target at the open paying ``c`` x turnover of equity, then rides the session."""
    pos = np.array([0.0, 0.0, 1.0])  # EQ, BOND, cash in dollars; all cash going in
    nets = []
    for g, r, w in zip(gaps, returns, targets, strict=True):
        before = pos.sum()
        pos = pos * np.append(1.0 + g, 1.0)  # close t -> open t+1
        at_open = pos.sum()
        turnover = np.abs(w - pos / at_open).sum()
        pos = w * at_open * (1.0 - c * turnover)  # fill at the open, costs out of equity
        pos = pos * np.append((1.0 + r) / (1.0 + g), 1.0)  # open t+1 -> close t+1
        nets.append(pos.sum() / before - 1.0)
    return nets


def test_hand_computed_three_days_next_open_both_faces():
    """Decision at close t fills at the open of t+1: the old book earns the gap, the new one the session."""
    base = _tiny_panel()
    gaps = np.array([[0.0, 0.0], [0.02, -0.01], [-0.01, 0.005], [0.0, 0.01]])
    p = MarketPanel.from_arrays(base.returns, base.features, feature_names=base.feature_names, assets=base.assets,
                                vix=base.vix, gaps=gaps)
    cfg = EnvConfig(reward="net", equity_assets=("EQ",), terminate_below=None, dtype="float64",
                    execution="next_open")
    c, big = 0.0005, 1e3
    targets = [np.array([0.5, 0.3, 0.2]), np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])]
    actions = [np.log([0.5, 0.3, 0.2]), np.array([-big, -big, 0.0]), np.array([0.0, -big, -big])]
    expected = _dollar_book(gaps[1:], base.returns[1:], targets, c)
    # day 1 by hand: from cash the gap earns nothing; turnover 1.6 at the open; the session is
    # EQ 1.01/1.02 - 1 and BOND 0.98/0.99 - 1
    day1 = (1 - c * 1.6) * (1 + 0.5 * (1.01 / 1.02 - 1) + 0.3 * (0.98 / 0.99 - 1)) - 1
    assert expected[0] == pytest.approx(day1, abs=1e-15)
    # day 3: all cash at the close of day 2, so day 3's +0% gap is missed and EQ is bought at the open
    assert expected[2] == pytest.approx((1 - c * 2.0) * (0.99 / 1.0) - 1, abs=1e-15)
    close = [(0.5 * 0.01 + 0.3 * -0.02) - c * 1.6]  # what "close" execution earns on day 1: not the same
    assert abs(expected[0] - close[0]) > 1e-4

    gym_env = PortfolioEnv(p, cfg, 0, 3)
    gym_env.reset(options={"start_idx": 0})
    b_env = BatchedPortfolioEnv(p, cfg, 0, 3, num_envs=1)
    b_env.reset(starts=[0])
    for k, a in enumerate(actions):
        _, r, _, _, info = gym_env.step(a)
        _, b_r, _, _, b_info = b_env.step(torch.as_tensor(a)[None])
        assert info["net"] == pytest.approx(expected[k], abs=1e-14)
        assert float(b_r[0]) == pytest.approx(expected[k], abs=1e-14)
        np.testing.assert_allclose(info["weights"], targets[k], atol=1e-12)


def test_next_open_needs_opens_and_next_close_fills_a_day_late():
    p = _tiny_panel()  # no gaps: no opens
    with pytest.raises(ValueError, match="overnight gaps"):
        PortfolioEnv(p, EnvConfig(execution="next_open"), 0, 3)
    c = 0.0005
    cfg = EnvConfig(reward="net", terminate_below=None, dtype="float64", execution="next_close")
    env = PortfolioEnv(p, cfg, 0, 3)
    env.reset(options={"start_idx": 0})
    _, _, _, _, info = env.step(np.log([0.5, 0.3, 0.2]))
    assert info["net"] == pytest.approx((1 - c * 1.6) * 1.0 - 1, abs=1e-15)  # cash earns day 1, then trades
    _, _, _, _, info = env.step(np.array([-1e3, -1e3, 0.0]))  # day 2: the 50/30/20 book earns +1.5%
    held = np.array([0.5 * 1.03, 0.3, 0.2]) / 1.015
    assert info["net"] == pytest.approx(1.015 * (1 - c * (held[0] + held[1] + 1 - held[2])) - 1, abs=1e-15)


def test_vix_shaped_reward_by_hand():
    p = _tiny_panel()  # VIX at row 0 = 20 + 10 * 1.0 = 30
    assert p.vix[0] == 30.0
    cfg = EnvConfig(equity_assets=("EQ",), terminate_below=None, dtype="float64", execution="close")
    env = PortfolioEnv(p, cfg, 0, 3)
    env.reset(options={"start_idx": 0})
    _, r, *_ = env.step(np.log([0.5, 0.3, 0.2]))
    net = -0.0018
    expected = net - 0.05 * abs(net) * 30 / 20 - 2.0 * (30 - 22) / 22 * 0.5 * 1e-3
    assert r == pytest.approx(expected, abs=1e-15)


def test_cost_function_numpy_torch_and_axis():
    rng = np.random.default_rng(0)
    w_new = softmax_weights(rng.normal(size=(7, 5)) * 3)
    w_old = softmax_weights(rng.normal(size=(7, 5)) * 3)
    r = rng.normal(0, 0.02, size=(7, 4))
    n_np = net_returns(w_new, w_old, r, 0.0005)
    n_t = net_returns(torch.as_tensor(w_new), torch.as_tensor(w_old), torch.as_tensor(r), 0.0005)
    n_ax = net_returns(w_new.T.copy(), w_old.T.copy(), r.T.copy(), 0.0005, axis=0)
    np.testing.assert_allclose(n_t.numpy(), n_np, rtol=0, atol=1e-15)
    np.testing.assert_allclose(n_ax, n_np, rtol=0, atol=1e-15)
    manual = (w_new[:, :4] * r).sum(1) - 0.0005 * np.abs(w_new - w_old).sum(1)
    np.testing.assert_allclose(n_np, manual, atol=1e-15)
    d = drift_weights(w_new, r)
    np.testing.assert_allclose(d.sum(1), 1.0, atol=1e-14)
    np.testing.assert_allclose(d, rebalance(w_new, w_old, r, 0.0005).drifted, atol=1e-15)
    # explicit cash return column
    r_cash = np.concatenate([r, np.full((7, 1), 0.001)], axis=1)
    np.testing.assert_allclose(
        net_returns(w_new, w_old, r_cash, 0.0) - net_returns(w_new, w_old, r, 0.0), w_new[:, 4] * 0.001, atol=1e-15
    )


@pytest.mark.parametrize("xp", ["numpy", "torch"])
def test_softmax_weights_simplex_property(xp):
    rng = np.random.default_rng(1)
    logits = np.concatenate(
        [
            rng.normal(0, 1, (500, 5)),
            rng.normal(0, 100, (500, 5)),
            rng.choice([-1e3, 1e3, 0.0], size=(500, 5)),
            np.full((3, 5), 1e3),
            np.full((3, 5), -1e3),
        ]
    )
    x = logits if xp == "numpy" else torch.as_tensor(logits, dtype=torch.float32)
    w = softmax_weights(x)
    w = np.asarray(w, dtype=np.float64)
    assert np.isfinite(w).all()
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-6 if xp == "torch" else 1e-12)


def test_extreme_logits_in_env_stay_finite(panel):
    env = BatchedPortfolioEnv(panel, EnvConfig(dtype="float32"), 0, panel.n_dates - 1, num_envs=64, seed=3)
    env.reset()
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        logits = torch.randn(64, 5, generator=g) * 1e3
        obs, r, _term, _trunc, info = env.step(logits)
        assert torch.isfinite(obs).all() and torch.isfinite(r).all()
        torch.testing.assert_close(info["weights"].sum(1), torch.ones(64), rtol=0, atol=1e-5)
        assert (info["weights"] >= 0).all()
        assert (env.weights >= 0).all()


# ----------------------------------------------------------------------------------------------------
# the two faces
# ----------------------------------------------------------------------------------------------------


def test_gymnasium_check_env(panel, features):
    term = OBSERVATION_VARIANTS["term"]
    term_panel = allocation_panel(features, term, ASSETS)
    for p, cfg in ((panel, EnvConfig()),
                   (term_panel, EnvConfig(observation=term, dtype="float64", reward="differential_sharpe")),
                   (panel, EnvConfig(clip_obs=5.0))):
        env = PortfolioEnv(p, cfg, 10, 300)
        with warnings.catch_warnings():  # unbounded logits: gymnasium warns about the infinite action Box
            warnings.simplefilter("ignore", UserWarning)
            check_env(env, skip_render_check=True)
        assert env.observation_space.shape == (cfg.obs_dim(p),)
    assert EnvConfig().obs_dim(panel) == 21
    assert EnvConfig(observation=term).obs_dim(term_panel) == 23
    assert EnvConfig().obs_names(term_panel)[-7:] == ["vix_term", "vix_term_chg_5d", *(f"w.{a}" for a in ASSETS),
                                                      "w.cash"]


def test_clip_obs_clips_features_never_weights(panel):
    assert EnvConfig().clip_obs is None
    np.testing.assert_array_equal(EnvConfig().obs_features(panel), panel.features)  # no raw clip by default
    cfg = EnvConfig(clip_obs=1.0, dtype="float64")
    feats = cfg.obs_features(panel)
    np.testing.assert_array_equal(feats, np.clip(panel.features, -1.0, 1.0))
    assert (np.abs(panel.features) > 1.0).any()  # the clip bites (vix_chg_5d is in index points)
    w = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(cfg.observe(panel.features[5], w), np.concatenate([feats[5], w]))
    obs, _ = PortfolioEnv(panel, cfg, 0, 100).reset(options={"start_idx": 5})
    np.testing.assert_array_equal(obs, np.concatenate([feats[5], w]))
    env = BatchedPortfolioEnv(panel, cfg, 0, 100, num_envs=2)
    np.testing.assert_array_equal(env.reset([5, 6]).numpy(), np.stack([np.concatenate([feats[k], w]) for k in (5, 6)]))
    with pytest.raises(ValueError):
        EnvConfig(clip_obs=0.5)  # would clip the weights


@pytest.mark.parametrize(("reward", "execution"), [
    ("vix_shaped", "close"), ("vol_penalty", "close"), ("differential_sharpe", "close"), ("net", "close"),
    ("vix_shaped", "next_open"), ("net", "next_open"), ("net", "next_close"), ("vix_shaped", "seed_protocol")])
def test_batched_and_gym_faces_agree(panel, reward, execution):
    """Same start rows and action sequences -> same observations, rewards and done flags (float64).

    Both faces call the same arithmetic; the batched one in Torch with assets-first layout, so results
    agree to rounding (<= 1e-12 absolute), not necessarily bit for bit.
    """
    E, lo, hi = 6, 20, 160
    extra = ({"observed_weights": "target", "episode_starts": "sequential"} if execution == "seed_protocol"
             else {"execution": execution})
    cfg = EnvConfig(reward=reward, episode_length=25, terminate_below=0.97, vol_kappa=0.001, dtype="float64", **extra)
    benv = BatchedPortfolioEnv(panel, cfg, lo, hi, num_envs=E, seed=5)
    obs_b = benv.reset()
    envs = [PortfolioEnv(panel, cfg, lo, hi) for _ in range(E)]
    obs_g = [e.reset(options={"start_idx": int(benv.start[i])})[0] for i, e in enumerate(envs)]
    np.testing.assert_allclose(obs_b.numpy(), np.stack(obs_g), rtol=0, atol=1e-12)
    rng = np.random.default_rng(2)
    n_done = n_term = 0
    for _step in range(120):
        logits = rng.normal(0, 4.0, size=(E, 5))
        obs_b, r_b, term_b, trunc_b, _ = benv.step(torch.as_tensor(logits))
        for i, env in enumerate(envs):
            o, r, term, trunc, _ = env.step(logits[i])
            assert r == pytest.approx(float(r_b[i]), rel=1e-10, abs=1e-12)
            assert term == bool(term_b[i]) and trunc == bool(trunc_b[i])
            if term or trunc:
                n_done += 1
                n_term += term
                o, _ = env.reset(options={"start_idx": int(benv.start[i])})
            np.testing.assert_allclose(obs_b[i].numpy(), o, rtol=0, atol=1e-12)
    assert n_done > 10  # several auto-resets were exercised
    assert n_term > 0  # and at least one equity-floor termination


def test_batched_episode_bookkeeping(panel):
    cfg = EnvConfig(episode_length=7, terminate_below=None)
    env = BatchedPortfolioEnv(panel, cfg, 30, 100, num_envs=256, seed=0)
    env.reset()
    assert int(env.start.min()) >= 30 and int(env.start.max()) <= 99
    for _ in range(40):
        _, _, term, trunc, _ = env.step(torch.zeros(256, 5))
        assert not term.any()
        assert int(env.t.max()) <= 100
        assert int(env.steps.max()) < 7
    # random starts are reproducible from the seed
    a = BatchedPortfolioEnv(panel, cfg, 30, 100, num_envs=8, seed=9).reset()
    b = BatchedPortfolioEnv(panel, cfg, 30, 100, num_envs=8, seed=9).reset()
    assert torch.equal(a, b)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_batched_env_on_cuda_matches_cpu(panel):
    cfg = EnvConfig(dtype="float64")
    cpu = BatchedPortfolioEnv(panel, cfg, 0, 300, num_envs=4, device="cpu")
    gpu = BatchedPortfolioEnv(panel, cfg, 0, 300, num_envs=4, device="cuda")
    starts = [5, 50, 100, 200]
    torch.testing.assert_close(cpu.reset(starts), gpu.reset(starts).cpu())
    for k in range(20):
        logits = torch.full((4, 5), float(k % 3)) + torch.arange(5.0)
        o1, r1, *_ = cpu.step(logits)
        o2, r2, *_ = gpu.step(logits.cuda())
        torch.testing.assert_close(r1, r2.cpu())
        torch.testing.assert_close(o1, o2.cpu())


# ----------------------------------------------------------------------------------------------------
# panel
# ----------------------------------------------------------------------------------------------------


def test_panel_shapes_alignment_and_window(panel, market):
    assert panel.assets == ASSETS
    assert panel.returns.shape == (panel.n_dates, 4)
    assert panel.features.shape == (panel.n_dates, 16) and len(panel.feature_names) == 16
    assert panel.feature_names[:3] == ("SPY.ret_5d", "SPY.ret_21d", "SPY.rv_21d_ann")
    # returns are close-to-close between consecutive panel rows
    spy = market.bars.filter(pl.col("ticker") == "SPY").select("date", "close")
    closes = dict(zip(spy["date"].to_list(), spy["close"].to_list()))
    d = [x.astype(object) for x in panel.dates]
    for k in (1, 50, panel.n_dates - 1):
        assert panel.returns[k, 0] == pytest.approx(closes[d[k]] / closes[d[k - 1]] - 1.0, rel=1e-12)
    lo, hi = panel.index_range(d[10], d[40])
    assert (lo, hi) == (9, 40)  # decisions at rows 9..39 earn rows 10..40
    assert panel.index_range(None, None) == (0, panel.n_dates - 1)
    with pytest.raises(ValueError):
        panel.index_range(date(1990, 1, 1), date(1990, 2, 1))


def test_panel_is_causal_and_hash_tracks_data(market, panel):
    full = panel
    cut = date(2016, 6, 30)
    part = allocation_panel(compute_features(market.bars.filter(pl.col("date") <= cut),
                                             market.index_bars.filter(pl.col("date") <= cut)), None, ASSETS)
    n = part.n_dates
    assert part.dates[-1] <= np.datetime64(cut)
    np.testing.assert_array_equal(full.dates[:n], part.dates)
    for name in ("returns", "features", "vix"):
        np.testing.assert_array_equal(getattr(full, name)[:n], getattr(part, name), err_msg=name)
    assert full.data_hash(0, n - 1) == part.data_hash()
    assert full.data_hash() != part.data_hash()


def test_vix_holiday_rows_never_become_rows(market, panel):
    sat = date(2016, 7, 2)  # a Saturday: CBOE-style row on a non-trading day
    extra_vix = pl.DataFrame(
        {"symbol": ["VIX"], "date": [sat], "open": [99.0], "high": [99.0], "low": [99.0], "close": [99.0]}
    ).cast(dict(market.index_bars.schema))
    idx = pl.concat([market.index_bars, extra_vix]).sort("symbol", "date")
    p2 = allocation_panel(compute_features(market.bars, idx), None, ASSETS)
    np.testing.assert_array_equal(p2.dates, panel.dates)
    assert np.datetime64(sat) not in set(p2.dates)
    np.testing.assert_array_equal(p2.vix, panel.vix)
    np.testing.assert_array_equal(p2.features, panel.features)
    assert p2.data_hash() == panel.data_hash()


@pytest.mark.real_data
def test_real_snapshot_panel(real_data_dir):
    from ml.data.csv_source import CsvMarketSource

    m = CsvMarketSource(real_data_dir).load(Universe(include_stocks=False), on_progress=lambda _: None)
    p = allocation_panel(compute_features(m.bars, m.index_bars))
    i = int(np.searchsorted(p.dates, np.datetime64("2020-03-16")))
    assert p.vix[i] == pytest.approx(82.69)
    assert p.column("vix_high_63")[i] == 1.0 and p.column("vix_centered")[i] == pytest.approx(6.269)
    # CBOE publishes VIX on some exchange holidays (e.g. 2022-05-30): never a panel row
    assert np.datetime64("2022-05-30") not in set(p.dates)
    lo, hi = p.index_range("2008-01-01", "2019-12-31")
    assert str(p.dates[lo + 1]) == "2008-01-02" and str(p.dates[hi]) == "2019-12-31"
    # SPY total return 2008-01-02 .. 2019-12-31 (dividends reinvested): about x2.82
    assert math.isclose(float(np.prod(1 + p.returns[lo + 1 : hi + 1, 0])), 2.82, rel_tol=0.02)


def test_target_weights_in_the_observation_and_sequential_episodes(panel):
    cfg = EnvConfig(reward="net", episode_length=30, terminate_below=None, dtype="float64",
                    observed_weights="target", episode_starts="sequential")
    lo, hi = 10, 100
    env = BatchedPortfolioEnv(panel, cfg, lo, hi, num_envs=3, seed=0)
    obs = env.reset()
    assert env.start.tolist() == [lo, lo + 30, lo + 60]  # spread over the window
    np.testing.assert_array_equal(obs[:, -5:].numpy(), np.tile([0, 0, 0, 0, 1.0], (3, 1)))
    logits = torch.log(torch.tensor([[0.4, 0.3, 0.1, 0.1, 0.1]] * 3, dtype=torch.float64))
    obs, *_ , info = env.step(logits)
    np.testing.assert_allclose(obs[:, -5:].numpy(), info["weights"].numpy(), atol=1e-15)  # undrifted target
    assert not np.allclose(env.weights.numpy(), info["weights"].numpy())  # while the book has drifted
    for _ in range(29):
        env.step(logits)
    # episodes of 30: each env continues where it stopped; the last one wraps to the window start
    assert env.start.tolist() == [lo + 30, lo + 60, lo]
    gym_env = PortfolioEnv(panel, cfg, lo, hi)
    gym_env.reset(seed=1)
    assert gym_env._t == lo
    for _ in range(30):
        gym_env.step(np.zeros(5))
    gym_env.reset(seed=1)
    assert gym_env._t == lo + 30  # the next episode starts where the last one ended

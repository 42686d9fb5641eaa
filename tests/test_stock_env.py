"""Stock environment: the BUY / SELL / HOLD mapping and its cap, one day's net return and drift by hand,
candidates = top N or held, auto-reset with the final observation, observe() = the step's observation, the
observation layout (NaN fills), batched = one env at a time, float32 = float64."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml.envs.stock_env import BatchedStockEnv, StockEnvConfig, action_targets, compact, feature_fill
from ml.envs.stock_panel import StockPanel
from ml.strategies.funnel import daily_top_n

CFG = StockEnvConfig(top_n=4, threshold=0.15, max_position=0.1, max_invested=1.0)


def _panel(seed: int = 0, n_dates: int = 120, n_stocks: int = 8) -> StockPanel:
    return StockPanel.synthetic(n_dates=n_dates, n_stocks=n_stocks, n_features=3, seed=seed)


def test_action_targets_buy_sell_hold_and_non_candidates():
    w_open = np.array([0.05, 0.0, 0.03, 0.0, 0.0, 0.0])
    # HOLD held, BUY, SELL held, BUY non-candidate, BUY (clamped), HOLD not held
    a = np.array([0.1, 0.5, -0.5, 1.0, 2.0, 0.1])
    cand = np.array([True, True, True, False, True, True])
    want = np.array([0.05, 0.05, 0.0, 0.0, 0.1, 0.0])
    np.testing.assert_allclose(action_targets(a, w_open, cand, CFG), want, atol=1e-15)
    got = action_targets(torch.tensor(a), torch.tensor(w_open), torch.tensor(cand), CFG)  # torch in -> torch out
    assert isinstance(got, torch.Tensor) and torch.allclose(got, torch.tensor(want), atol=1e-15)
    edge = action_targets(np.array([0.15, -0.15, 0.1501]), np.array([0.02, 0.02, 0.0]), np.ones(3, bool), CFG)
    np.testing.assert_allclose(edge, [0.02, 0.02, 0.01501])  # |a| = threshold is HOLD


def test_action_targets_scale_down_new_buys_then_everything():
    cfg = CFG.model_copy(update={"max_invested": 0.2})
    # holds fit (0.12 <= 0.2): only the new BUYs (0.1 + 0.05) shrink into the 0.08 left
    got = action_targets(np.array([0.1, 1.0, 0.5, -1.0]), np.array([0.12, 0.0, 0.0, 0.0]), np.ones(4, bool), cfg)
    np.testing.assert_allclose(got, [0.12, 0.08 * 2 / 3, 0.08 / 3, 0.0], atol=1e-15)
    assert got.sum() == pytest.approx(0.2)
    # the held names alone (0.15 HOLD + 0.1 BUY resize) exceed 0.2: every target scales by 0.2 / 0.35
    got = action_targets(np.array([0.0, 1.0, 1.0]), np.array([0.15, 0.1, 0.0]), np.ones(3, bool), cfg)
    np.testing.assert_allclose(got, np.array([0.15, 0.1, 0.1]) * 0.2 / 0.35, atol=1e-15)
    # under the cap nothing moves
    got = action_targets(np.array([1.0, 1.0]), np.array([0.0, 0.0]), np.ones(2, bool), cfg)
    np.testing.assert_allclose(got, [0.1, 0.1])


def _fill_day(w, a, cand, g, s, cfg):
    """Hand arithmetic of one earned day (as ml.backtest.sector_book.fill_day, long only)."""
    eq_on = 1.0 + w @ g
    w_open = w * (1.0 + g) / eq_on
    w_new = action_targets(a, w_open, cand, cfg)
    turnover = np.abs(w_new - w_open).sum()
    net = eq_on * (1.0 - cfg.cost_rate * turnover) * (1.0 + w_new @ s) - 1.0
    return net, turnover, w_new, w_new * (1.0 + s) / (1.0 + w_new @ s)


def test_two_steps_match_hand_arithmetic_gap_cost_session_and_drift():
    panel = _panel()
    cfg = CFG.model_copy(update={"dtype": "float64"})
    env = BatchedStockEnv(panel, cfg, 0, 100, num_envs=1)
    t0 = 10
    env.reset(starts=[t0])
    top = daily_top_n(panel.buy_prob, panel.valid, cfg.top_n)
    w = np.zeros(panel.n_stocks)
    rng = np.random.default_rng(0)
    for t in (t0, t0 + 1, t0 + 2):
        a = rng.uniform(-1, 1, panel.n_stocks)
        if t == t0 + 1:  # make sure there is a held name to HOLD and one to SELL
            held = np.flatnonzero(w > 0)
            a[held[0]], a[held[-1]] = 0.0, -0.9
        cand = top[t] | (w > 0)
        net, turnover, w_new, w = _fill_day(w, a, cand, panel.gap[t + 1], panel.session[t + 1], cfg)
        _, reward, term, trunc, info = env.step(torch.tensor(a))
        assert info["net"].item() == pytest.approx(net, abs=1e-14)
        assert info["turnover"].item() == pytest.approx(turnover, abs=1e-14)
        np.testing.assert_allclose(info["weights"][0].numpy(), w_new, atol=1e-15)
        np.testing.assert_allclose(env.w[0].numpy(), w, atol=1e-15)  # drifted to the close of t+1
        assert reward.item() == pytest.approx(100.0 * net, abs=1e-12)
        assert env.t.item() == t + 1 and not term.item() and not trunc.item()
    assert env.equity.item() != 1.0 and (w > 0).sum() >= 2


def test_candidates_are_top_n_or_held():
    panel = _panel(seed=3)
    env = BatchedStockEnv(panel, CFG, 0, 100, num_envs=1)
    top = daily_top_n(panel.buy_prob, panel.valid, CFG.top_n)
    # a stock in the top N at t that drops out at t+1
    t = next(t for t in range(100) if (top[t] & ~top[t + 1]).any())
    j = int(np.flatnonzero(top[t] & ~top[t + 1])[0])
    obs = env.reset(starts=[t])
    np.testing.assert_array_equal(obs.mask[0].numpy(), top[t])  # all cash: the top N only
    a = torch.zeros(1, panel.n_stocks)
    a[0, j] = 1.0
    obs, *_ = env.step(a)
    assert env.w[0, j] > 0 and not top[t + 1, j]
    np.testing.assert_array_equal(obs.mask[0].numpy(), top[t + 1] | (env.w[0].numpy() > 0))
    assert obs.mask[0, j] and obs.mask[0].sum() == CFG.top_n + 1
    # a BUY for a non-candidate is ignored; the held non-top stock can still be sold
    k = int(np.flatnonzero(~top[t + 1] & (env.w[0].numpy() == 0))[0])
    a = torch.zeros(1, panel.n_stocks)
    a[0, k], a[0, j] = 1.0, -1.0
    _, _, _, _, info = env.step(a)
    assert info["weights"][0, k] == 0 and info["weights"][0, j] == 0


def test_auto_reset_truncation_termination_and_final_obs():
    panel = _panel()
    cfg = CFG.model_copy(update={"episode_length": 3})
    env = BatchedStockEnv(panel, cfg, 5, 60, num_envs=4, seed=1)
    env.reset()
    buy = torch.ones(4, panel.n_stocks)
    for i in range(3):
        obs, _, term, trunc, info = env.step(buy)
        assert not term.any()
        assert bool(trunc.all()) == (i == 2)
    # the final observation is the pre-reset state, the returned one a fresh all-cash start
    final = env.observe(info["final_t"], info["final_w"])
    assert all(torch.equal(a, b) for a, b in zip(info["final_obs"], final))
    assert (info["final_w"].sum(-1) > 0).all() and (env.w == 0).all() and (env.steps == 0).all()
    assert ((env.t >= 5) & (env.t < 60)).all()
    assert all(torch.equal(a, b) for a, b in zip(obs, env.observe(env.t, env.w)))
    # truncation at the end of the window
    env.reset(starts=[59, 59, 58, 58])
    _, _, _, trunc, _ = env.step(buy)
    assert trunc.tolist() == [True, True, False, False]
    # termination below the equity floor (a 50 % cost rate: buying 4 x 25 % loses half the book)
    harsh_cfg = cfg.model_copy(update={"cost_rate": 0.5, "max_position": 0.25, "terminate_below": 0.6})
    harsh = BatchedStockEnv(panel, harsh_cfg, 5, 60, 2)
    harsh.reset()
    _, _, term, trunc, info = harsh.step(torch.ones(2, panel.n_stocks))
    assert term.all() and not trunc.any() and (info["equity"] < 0.6).all() and (harsh.equity == 1).all()


def test_observe_is_the_steps_observation_and_the_layout():
    panel = _panel(seed=2)
    feats = panel.features.copy()
    feats[20:40, 1, 0] = np.nan
    buy = panel.buy_prob.copy()
    buy[20:40, 2] = np.nan
    valid = panel.valid.copy()
    valid[20:40, 1] = False
    panel = StockPanel(**{**panel.__dict__, "features": feats, "buy_prob": buy, "valid": valid})
    env = BatchedStockEnv(panel, CFG, 0, 100, num_envs=6, seed=4)
    obs = env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):
        assert all(torch.equal(a, b) for a, b in zip(obs, env.observe(env.t, env.w)))
        obs, *_ = env.step(torch.rand(6, panel.n_stocks, generator=gen) * 2 - 1)
    assert env.stock_feature_names == ["f0", "f1", "f2", "buy_prob", "sell_prob", "weight", "held", "top_n"]
    assert env.global_feature_names == ["vix_centered", "vix_term", "cash", "n_held/top_n"]
    t = torch.tensor([30])
    w = torch.zeros(1, panel.n_stocks)
    w[0, 3] = 0.07
    o = env.observe(t, w)
    fill = feature_fill(panel, 0, 100)
    assert fill[0] == pytest.approx(panel.features[:101][panel.valid[:101]][:, 0].mean())
    assert o.x[0, 1, 0].item() == pytest.approx(fill[0], rel=1e-6)  # NaN feature -> train-window mean
    assert o.x[0, 2, 3].item() == 0.5  # NaN P(buy) -> 0.5
    assert o.x[0, 3, 5].item() == pytest.approx(0.07) and o.x[0, 3, 6] == 1 and o.x[0, 4, 6] == 0
    top = daily_top_n(panel.buy_prob, panel.valid, CFG.top_n)[30]
    np.testing.assert_array_equal(o.x[0, :, 7].numpy(), top.astype(np.float32))
    np.testing.assert_allclose(o.g[0].numpy(), [*panel.market[30], 0.93, 1 / CFG.top_n], rtol=1e-6)
    assert not top[1]  # the invalid stock is never a top-N candidate


def test_batched_envs_equal_one_env_at_a_time():
    panel = _panel(seed=5)
    starts = [3, 40, 77]
    gen = torch.Generator().manual_seed(1)
    actions = torch.rand(10, 3, panel.n_stocks, generator=gen) * 2 - 1
    env = BatchedStockEnv(panel, CFG, 0, 100, num_envs=3)
    env.reset(starts=starts)
    batched = torch.stack([env.step(actions[i])[4]["net"] for i in range(10)], 1)
    for e, s in enumerate(starts):
        one = BatchedStockEnv(panel, CFG, 0, 100, num_envs=1)
        one.reset(starts=[s])
        nets = torch.stack([one.step(actions[i, e : e + 1])[4]["net"][0] for i in range(10)])
        assert torch.equal(nets, batched[e])


def test_float32_and_float64_agree():
    panel = _panel(seed=6)
    gen = torch.Generator().manual_seed(2)
    actions = torch.rand(40, 4, panel.n_stocks, generator=gen) * 2 - 1
    out = {}
    for dt in ("float32", "float64"):
        env = BatchedStockEnv(panel, CFG.model_copy(update={"dtype": dt}), 0, 100, num_envs=4, seed=9)
        env.reset()
        nets, ts = [], []
        for i in range(40):
            _, _, _, _, info = env.step(actions[i])
            nets.append(info["net"].double())
            ts.append(env.t.clone())
        out[dt] = torch.stack(nets), torch.stack(ts)
    assert torch.equal(out["float32"][1], out["float64"][1])  # same episode starts and resets
    assert torch.allclose(out["float32"][0], out["float64"][0], atol=1e-6)
    assert out["float64"][0].abs().max() > 1e-3


def test_compact_keeps_candidates_in_stock_order():
    mask = torch.tensor([[False, True, False, True], [True, False, False, False]])
    x = torch.arange(8.0).reshape(2, 4)[..., None]
    m, idx, (xc,) = compact(mask, x)
    assert m.tolist() == [[True, True], [True, False]] and idx[0].tolist() == [1, 3] and idx[1, 0] == 0
    assert xc[..., 0].tolist()[0] == [1.0, 3.0] and xc[1, 0, 0] == 4.0


def test_window_and_inputs_are_checked():
    panel = _panel()
    with pytest.raises(ValueError, match="invalid"):
        BatchedStockEnv(panel, CFG, 50, 50)
    env = BatchedStockEnv(panel, CFG, 0, 50, num_envs=2)
    with pytest.raises(ValueError, match="start rows"):
        env.reset(starts=[0, 50])

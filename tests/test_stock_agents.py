"""Stock policies: permutation equivariance, masked pooling, candidate-only log-probabilities, the three trainers
(tiny configs: run, keep the best validation checkpoint, reproduce bit for bit), serialisation round trips,
evaluation = a hand replay of its weights, the composite ensemble's weights, the (t, w) replay buffer."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml import metrics
from ml.agents.ensemble import composite_score, composite_weights
from ml.agents.stock_offpolicy import StockOffPolicyConfig, StockReplayBuffer, train_stock_sac, train_stock_td3
from ml.agents.stock_policy import (PooledCritic, StockActor, StockEnsemble, StockQ, evaluate_stock_policy,
                                    load_stock_policy, stock_composite_ensemble, stock_policy_bytes)
from ml.agents.stock_ppo import StockPPOConfig, _log_prob, train_stock_ppo
from ml.artifacts import torch_bytes, torch_from_bytes
from ml.envs.stock_env import BatchedStockEnv, StockEnvConfig, action_targets, stock_data_hash
from ml.envs.stock_panel import StockPanel
from ml.strategies.funnel import daily_top_n

PANEL = StockPanel.synthetic(n_dates=200, n_stocks=10, n_features=3, seed=0)
ENV = StockEnvConfig(top_n=4, threshold=0.0)  # no HOLD band: barely trained policies still trade
TRAIN, VAL = (0, 150), (150, 199)
PPO = StockPPOConfig(total_steps=256, num_envs=16, num_steps=8, num_minibatches=2, update_epochs=2, eval_every=1,
                     device="cpu", num_threads=1)
OFF = StockOffPolicyConfig(total_steps=480, num_envs=8, learning_starts=160, batch_size=32, eval_every=160,
                           log_every=160, device="cpu", num_threads=1)
TRAINERS = {"ppo": (train_stock_ppo, PPO), "sac": (train_stock_sac, OFF), "td3": (train_stock_td3, OFF)}


def _env(num_envs: int = 4) -> BatchedStockEnv:
    return BatchedStockEnv(PANEL, ENV, *TRAIN, num_envs=num_envs, seed=0)


def _actor(kind: str = "td3", seed: int = 0, gain: float = 200.0, **meta) -> StockActor:
    """A randomly initialised actor whose outputs spread over [-1, 1] (so it trades), normalisers fitted."""
    torch.manual_seed(seed)
    env = _env()
    actor = StockActor(env.x_dim, env.g_dim, kind, env_config=ENV, feature_names=PANEL.feature_names,
                       market_names=PANEL.market_names, **meta)
    actor.set_stats(env)
    with torch.no_grad():
        actor.net.psi_out[-1].weight.mul_(gain)
    return actor.eval()


def _obs(num_envs: int = 5, seed: int = 0):
    """Observations of random rows with random holdings (some held names outside the top N)."""
    env = _env(num_envs)
    gen = torch.Generator().manual_seed(seed)
    t = torch.randint(0, 150, (num_envs,), generator=gen)
    held = torch.rand(num_envs, PANEL.n_stocks, generator=gen) < 0.3
    w = torch.rand(num_envs, PANEL.n_stocks, generator=gen) * 0.1 * held
    return env, env.observe(t, w)


def _permute(obs, perm):
    return type(obs)(obs.x[:, perm], obs.g, obs.mask[:, perm])


@pytest.mark.parametrize("kind", ["ppo", "sac", "td3"])
def test_actor_is_permutation_equivariant(kind):
    actor = _actor(kind)
    _, obs = _obs()
    perm = torch.randperm(PANEL.n_stocks, generator=torch.Generator().manual_seed(1))
    a = actor.act(obs)
    assert torch.allclose(actor.act(_permute(obs, perm)), a[:, perm], atol=1e-6)
    assert a.abs().max() > 0.5 and a[obs.mask].std() > 0.1  # not a constant output
    assert (a[~obs.mask] == 0).all()
    x, g = actor.x_rms.normalize(obs.x), actor.g_rms.normalize(obs.g)
    out = actor.net(x, g, obs.mask)
    assert torch.allclose(actor.net(x[:, perm], g, obs.mask[:, perm]), out[:, perm], atol=1e-6)


def test_critics_are_permutation_invariant():
    torch.manual_seed(0)
    env, obs = _obs()
    v, q = PooledCritic(env.x_dim, env.g_dim), StockQ(env.x_dim, env.g_dim)
    a = torch.rand(obs.mask.shape) * 2 - 1
    perm = torch.randperm(PANEL.n_stocks, generator=torch.Generator().manual_seed(2))
    p = _permute(obs, perm)
    assert torch.allclose(v(p.x, p.g, p.mask), v(obs.x, obs.g, obs.mask), atol=1e-6)
    assert torch.allclose(q(p.x, p.g, p.mask, a[:, perm]), q(obs.x, obs.g, obs.mask, a), atol=1e-6)
    assert not torch.allclose(q(obs.x, obs.g, obs.mask, a), q(obs.x, obs.g, obs.mask, -a), atol=1e-6)


def test_masked_pooling_ignores_non_candidates():
    actor = _actor("sac")
    torch.manual_seed(1)
    env, obs = _obs()
    v, q = PooledCritic(env.x_dim, env.g_dim), StockQ(env.x_dim, env.g_dim)
    a = torch.rand(obs.mask.shape) * 2 - 1
    row = 0
    out_j = int(torch.nonzero(~obs.mask[row])[0, 0])
    in_j = int(torch.nonzero(obs.mask[row])[0, 0])
    base = (actor.net(obs.x, obs.g, obs.mask), v(obs.x, obs.g, obs.mask), q(obs.x, obs.g, obs.mask, a))
    x = obs.x.clone()
    x[row, out_j] += 5.0
    a2 = a.clone()
    a2[row, out_j] = -a[row, out_j]
    changed = (actor.net(x, obs.g, obs.mask), v(x, obs.g, obs.mask), q(x, obs.g, obs.mask, a2))
    others = torch.arange(PANEL.n_stocks) != out_j
    assert torch.equal(changed[0][row, others], base[0][row, others])  # exactly: masked slots pool as 0
    assert not torch.equal(changed[0][row, out_j], base[0][row, out_j])  # its own output does move
    assert torch.equal(changed[1], base[1]) and torch.equal(changed[2], base[2])
    x = obs.x.clone()
    x[row, in_j] += 5.0  # a candidate's features move everyone's context
    moved = actor.net(x, obs.g, obs.mask)
    assert not torch.allclose(moved[row, others & (torch.arange(PANEL.n_stocks) != in_j)],
                              base[0][row, others & (torch.arange(PANEL.n_stocks) != in_j)])
    assert not torch.equal(v(x, obs.g, obs.mask), base[1])


def test_ppo_log_prob_sums_over_candidates_only():
    actor = _actor("ppo", gain=1.0)
    _, obs = _obs()
    x, g = actor.x_rms.normalize(obs.x), actor.g_rms.normalize(obs.g)
    a = torch.rand(obs.mask.shape) * 2 - 1
    b = torch.where(obs.mask, a, torch.rand(obs.mask.shape) * 5)  # other actions on the non-candidates
    lp_a, ent = _log_prob(actor, x, g, obs.mask, a)
    lp_b, _ = _log_prob(actor, x, g, obs.mask, b)
    assert torch.equal(lp_a, lp_b)
    mean, std = actor.mean(x, g, obs.mask), actor.log_std.exp()
    want = (torch.distributions.Normal(mean, std).log_prob(a) * obs.mask).sum(-1)
    assert torch.allclose(lp_a, want, atol=1e-5)
    assert torch.allclose(ent, obs.mask.sum(-1) * torch.distributions.Normal(0.0, std).entropy(), atol=1e-5)


@pytest.fixture(scope="module")
def trained():
    return {k: fn(PANEL, *TRAIN, ENV, cfg, validation=VAL) for k, (fn, cfg) in TRAINERS.items()}


@pytest.mark.parametrize("kind", ["ppo", "sac", "td3"])
def test_trainer_runs_keeps_the_best_checkpoint_and_is_bitwise_reproducible(trained, kind):
    fn, cfg = TRAINERS[kind]
    res = trained[kind]
    pol = res.policy
    assert pol.kind == kind and not pol.training and next(pol.parameters()).device.type == "cpu"
    assert pol.data_hash == stock_data_hash(PANEL, *TRAIN) == res.data_hash
    assert pol.train_window == (str(PANEL.dates[1]), str(PANEL.dates[150])) and pol.agent_config == cfg
    keys = {"env_steps", "env_steps_per_s", "mean_reward", "mean_turnover", "val_sharpe", "wall_s"}
    assert keys <= set(res.curve[-1])
    vals = [r["val_sharpe"] for r in res.curve if not np.isnan(r["val_sharpe"])]
    sel = res.selection
    assert sel["evaluations"] >= 2 and sel["validation_window"] == [str(PANEL.dates[151]), str(PANEL.dates[199])]
    assert len(vals) == sel["evaluations"] and sel["best_val_sharpe"] == max(vals)  # the kept checkpoint
    again_sharpe = metrics.sharpe(evaluate_stock_policy(pol, PANEL, *VAL).net_returns)
    assert again_sharpe == pytest.approx(max(vals), abs=1e-6)  # float32 nets, another thread count
    again = fn(PANEL, *TRAIN, ENV, cfg, validation=VAL).policy.state_dict()
    first = pol.state_dict()
    assert first.keys() == again.keys() and all(torch.equal(first[k], again[k]) for k in first)
    other = fn(PANEL, *TRAIN, ENV, cfg.model_copy(update={"seed": 1})).policy.state_dict()
    assert not all(torch.equal(first[k], other[k]) for k in first)


def test_serialisation_round_trip_actor_and_ensemble(trained):
    _, obs = _obs()
    for kind, res in trained.items():
        back = load_stock_policy(stock_policy_bytes(res.policy))
        assert type(back) is StockActor and back.kind == kind and not back.training
        assert torch.equal(back.act(obs), res.policy.act(obs))
        assert (back.env_config, back.feature_names, back.market_names, back.data_hash, back.train_window,
                back.seed, back.agent_config) == (res.policy.env_config, res.policy.feature_names,
                                                  res.policy.market_names, res.policy.data_hash,
                                                  res.policy.train_window, res.policy.seed, res.policy.agent_config)
    spread = _actor("td3", seed=3)  # an actor that trades, without agent_config
    ens = StockEnsemble([trained["ppo"].policy, spread], [0.25, 0.75], ["ppo", "rand"])
    back = load_stock_policy(stock_policy_bytes(ens))
    assert isinstance(back, StockEnsemble) and back.member_weights == {"ppo": 0.25, "rand": 0.75}
    assert torch.equal(back.act(obs), ens.act(obs)) and ens.act(obs).abs().max() > 0.1
    assert load_stock_policy(stock_policy_bytes(spread)).agent_config is None


def test_load_rejects_corrupt_and_foreign_blobs():
    blob = stock_policy_bytes(_actor())
    with pytest.raises(ValueError, match="corrupt or unreadable"):
        load_stock_policy(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="not a stock policy"):
        load_stock_policy(torch_bytes({"format": "regimeflow.ppo_policy/1"}))
    with pytest.raises(ValueError, match="not a stock policy"):
        load_stock_policy(torch_bytes([1, 2, 3]))
    payload = torch_from_bytes(blob)
    del payload["state_dict"]["net.psi_stock.weight"]
    with pytest.raises(ValueError, match="does not match"):
        load_stock_policy(torch_bytes(payload))
    payload = torch_from_bytes(blob)
    del payload["feature_names"]
    with pytest.raises(ValueError, match="misses keys"):
        load_stock_policy(torch_bytes(payload))


def test_evaluation_net_returns_equal_a_hand_replay_of_its_weights():
    actor = _actor("td3", seed=5)
    cfg = ENV.model_copy(update={"threshold": 0.15})  # with the HOLD band
    lo, hi = 120, 199
    res = evaluate_stock_policy(actor, PANEL, lo, hi, env_config=cfg)
    n = hi - lo
    assert res.weights.shape == (n, PANEL.n_stocks) and len(res.net_returns) == len(res.turnover) == n
    np.testing.assert_array_equal(res.dates, PANEL.dates[lo + 1 : hi + 1])
    top = daily_top_n(PANEL.buy_prob, PANEL.valid, ENV.top_n)
    w = np.zeros(PANEL.n_stocks)  # held at the close of the decision row
    holds = 0
    for i in range(n):
        t = lo + i
        g, s = PANEL.gap[t + 1], PANEL.session[t + 1]
        eq_on = 1.0 + w @ g
        w_open = w * (1.0 + g) / eq_on
        w_new = res.weights[i]
        assert not (w_new[~(top[t] | (w > 0))] > 0).any()  # only candidates are held
        turnover = np.abs(w_new - w_open).sum()
        holds += int(((w_open > 0) & (w_new == w_open)).sum())
        net = eq_on * (1.0 - cfg.cost_rate * turnover) * (1.0 + w_new @ s) - 1.0
        assert res.turnover[i] == pytest.approx(turnover, abs=1e-13)
        assert res.net_returns[i] == pytest.approx(net, abs=1e-13)
        w = w_new * (1.0 + s) / (1.0 + w_new @ s)
    assert res.turnover.sum() > 0.5 and (res.weights > 0).sum(1).max() >= 2 and holds > 0  # it traded and held
    # the weights follow from the actions: replay the mapping on the first day
    obs = BatchedStockEnv(PANEL, cfg, lo, hi, num_envs=1, fill=actor.fill_values).reset([lo])
    first = action_targets(actor.act(obs).double(), torch.zeros(1, PANEL.n_stocks, dtype=torch.float64),
                           obs.mask, cfg)
    np.testing.assert_allclose(res.weights[0], first[0].numpy(), atol=1e-7)


def test_composite_ensemble_weights():
    window = (150, 199)
    meta = {"data_hash": "h", "train_window": (str(PANEL.dates[1]), str(PANEL.dates[150]))}
    members = {f"m{k}": _actor("td3", seed=10 + k, **meta) for k in range(3)}
    ens, rows = stock_composite_ensemble(members, PANEL, window)
    ref = PANEL.benchmark[151:200]
    scores = {k: composite_score(evaluate_stock_policy(m, PANEL, *window).net_returns, ref) for k, m in members.items()}
    weights, fell_back = composite_weights({k: s.composite for k, s in scores.items()})
    assert [r["member"] for r in rows] == list(members)
    for r in rows:
        s = scores[r["member"]]
        assert r["composite"] == pytest.approx(s.composite) and r["val_return"] == pytest.approx(s.val_return)
        assert r["benchmark_val_return"] == pytest.approx(metrics.total_return(ref))
        assert r["weight"] == pytest.approx(weights[r["member"]]) and r["fallback_equal"] == fell_back
    assert ens.member_weights == pytest.approx(weights)
    assert len({round(s.composite, 12) for s in scores.values()}) == 3  # distinct members
    _, obs = _obs()
    want = sum(weights[k] * m.act(obs).double() for k, m in members.items())
    assert torch.allclose(ens.act(obs), want, atol=1e-12)
    # no window: equal weights, flagged
    eq, rows = stock_composite_ensemble(members, PANEL, None)
    assert eq.member_weights == pytest.approx({k: 1 / 3 for k in members})
    assert all(r["fallback_equal"] and r["composite"] is None for r in rows)
    with pytest.raises(ValueError, match="different data"):
        stock_composite_ensemble({"a": members["m0"], "b": _actor(data_hash="other")}, PANEL, window)
    late = {"a": _actor(data_hash="h", train_window=(str(PANEL.dates[1]), str(PANEL.dates[160])))}
    with pytest.raises(ValueError, match="validation slice"):
        stock_composite_ensemble(late, PANEL, window)


def test_replay_buffer_stores_rows_and_weights_and_rebuilds_observations():
    env = _env(num_envs=3)
    buf = StockReplayBuffer(capacity=7, n_stocks=PANEL.n_stocks, num_envs=3, device=torch.device("cpu"),
                            w_dtype=env.dtype)
    assert buf.w.shape == (7, PANEL.n_stocks)  # (t, w) per transition, not S x Fx observations
    env.reset()
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):  # 12 rows into 7 slots
        t, w = env.t, env.w
        a = torch.rand(3, PANEL.n_stocks, generator=gen) * 2 - 1
        _, r, term, _, info = env.step(a)
        buf.add(t, w, a, r, info["final_t"], info["final_w"], term)
    assert buf.size == 7 and buf.pos == 5
    obs, a, r, nxt, term = buf.sample(16, gen, env.observe)
    gen2 = torch.Generator().manual_seed(0)  # replay the generator: the same draws as sample()
    for _ in range(4):
        torch.rand(3, PANEL.n_stocks, generator=gen2)
    idx = torch.randint(0, 7, (16,), generator=gen2)
    want = env.observe(buf.t[idx], buf.w[idx])
    assert all(torch.equal(x, y) for x, y in zip(obs, want))
    assert all(torch.equal(x, y) for x, y in zip(nxt, env.observe(buf.t_next[idx], buf.w_next[idx])))
    assert torch.equal(a, buf.actions[idx]) and torch.equal(r, buf.rewards[idx])

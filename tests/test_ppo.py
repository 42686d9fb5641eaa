"""PPO: learns a planted fear signal, reproducible bit for bit on CPU, checkpoints round-trip and fail loudly."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch

from ml.agents.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from ml.agents.ppo import PPOConfig, PPOPolicy, evaluate_policy, resolve_device, train_ppo
from ml.costs import rebalance
from ml.envs.market_panel import MarketPanel
from ml.envs.portfolio import EnvConfig

TRAIN, TEST = (0, 2000), (2000, 2999)
DRIFT, CRASH = 0.005, -0.02


def _toy_panel(n: int = 3000, seed: int = 0) -> tuple[MarketPanel, np.ndarray]:
    """One asset + cash. A fear flag is on ~20% of days (in two VIX columns); the asset's next-day
    return is +0.5% when the flag is off and -2% when it is on (+-0.3% noise). Optimal: hold the asset
    when the flag is off, cash when it is on."""
    rng = np.random.default_rng(seed)
    flag = (rng.random(n) < 0.2).astype(float)
    r = np.zeros((n, 1))
    r[1:, 0] = np.where(flag[:-1] > 0, CRASH, DRIFT) + rng.normal(0.0, 0.003, n - 1)
    vixf = np.stack([flag, np.zeros(n), np.zeros(n), flag], axis=1)
    feats = rng.normal(0.0, 0.01, (n, 3))  # uninformative
    names = ("X.ret_5d", "X.ret_21d", "X.rv_21d_ann", "vix_centered", "vix_chg_5d", "vix_rel_21", "vix_high_63")
    return MarketPanel.from_arrays(r, np.hstack([feats, vixf]), feature_names=names, assets=("X",),
                                   vix=20.0 + 10.0 * flag), flag


TOY_ENV = EnvConfig(reward="net", cost_rate=0.0, equity_assets=(), terminate_below=None, episode_length=256,
                    execution="close")  # the toy panel has no opens
TOY_PPO = PPOConfig(
    total_steps=60_000, num_envs=32, num_steps=32, num_minibatches=4, update_epochs=4, gamma=0.9, seed=0, device="cpu"
)


@pytest.fixture(scope="module")
def toy():
    panel, flag = _toy_panel()
    rows: list[dict] = []
    result = train_ppo(panel, *TRAIN, TOY_ENV, TOY_PPO, on_iteration=rows.append)
    return panel, flag, result, rows


def test_ppo_learns_the_planted_fear_signal(toy):
    panel, flag, result, _ = toy
    weights, net, dates = evaluate_policy(result.policy, panel, *TEST)
    lo, hi = TEST
    sig = flag[lo:hi]  # decision rows
    asset_next = panel.returns[lo + 1 : hi + 1, 0]
    oracle = np.where(sig > 0, 0.0, asset_next).mean()  # hold the asset iff the flag is off
    assert oracle > 0.0035
    assert net.mean() >= 0.9 * oracle, (net.mean(), oracle, weights[sig > 0, 0].mean(), weights[sig == 0, 0].mean())
    assert weights[sig > 0, 0].mean() < 0.05 and weights[sig == 0, 0].mean() > 0.9
    # always-long and always-cash are far worse
    assert asset_next.mean() < 0.5 * oracle


def test_training_curve_and_callback(toy):
    _, _, result, rows = toy
    assert rows == result.curve
    assert len(rows) == TOY_PPO.num_iterations
    keys = {"iteration", "env_steps", "env_steps_per_s", "mean_reward", "entropy", "approx_kl", "clip_frac", "value_loss"}
    assert keys <= set(rows[0])
    assert all(np.isfinite([r[k] for k in keys]).all() for r in rows)
    assert rows[-1]["env_steps"] == result.env_steps == TOY_PPO.num_iterations * TOY_PPO.batch_size
    assert rows[-1]["mean_net"] > rows[0]["mean_net"]
    assert result.policy.train_window == (str(result.policy.train_window[0]), str(result.policy.train_window[1]))


def test_evaluate_policy_outputs_and_cost_consistency(toy):
    panel, _, result, _ = toy
    lo, hi = TEST
    weights, net, dates = evaluate_policy(result.policy, panel, lo, hi)
    assert weights.shape == (hi - lo, 2) and net.shape == dates.shape == (hi - lo,)
    np.testing.assert_array_equal(dates, panel.dates[lo + 1 : hi + 1])
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-9)
    assert (weights >= 0).all()
    # the backtester's arithmetic (ml.costs) reproduces the env's net returns from the weights
    w_old = np.array([0.0, 1.0])
    for i in range(len(net)):
        res = rebalance(weights[i], w_old, panel.returns[lo + i + 1], TOY_ENV.cost_rate)
        assert res.net == pytest.approx(net[i], abs=1e-12)
        w_old = res.drifted
    # deterministic
    again = evaluate_policy(result.policy, panel, lo, hi)
    np.testing.assert_array_equal(again.net_returns, net)


def _tiny_run(seed: int) -> PPOPolicy:
    panel, _ = _toy_panel(600, seed=1)
    cfg = PPOConfig(total_steps=2048, num_envs=16, num_steps=32, num_minibatches=2, update_epochs=2, seed=seed, device="cpu")
    return train_ppo(panel, 0, 500, TOY_ENV, cfg).policy


def test_bitwise_reproducible_on_cpu():
    a, b, c = _tiny_run(7), _tiny_run(7), _tiny_run(8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    # global torch settings are restored after training
    assert not torch.are_deterministic_algorithms_enabled()


def test_checkpoint_round_trip(toy, tmp_path):
    panel, _, result, _ = toy
    path = save_checkpoint(tmp_path / "p.pt", result.policy, meta={"fold": "toy"})
    raw = torch.load(path, weights_only=True)  # plain tensors and primitives only
    assert {"state_dict", "env_config", "ppo_config", "data_hash", "versions"} <= set(raw)
    assert {"obs_rms.mean", "obs_rms.var", "obs_rms.count"} <= set(raw["state_dict"])
    assert raw["versions"]["torch"] == torch.__version__
    loaded = load_checkpoint(path, expected_env_config=TOY_ENV, expected_data_hash=panel.data_hash(*TRAIN))
    for k, v in result.policy.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k]), k
    assert loaded.env_config == TOY_ENV and loaded.ppo_config == TOY_PPO
    assert loaded.obs_names == result.policy.obs_names and loaded.meta == {"fold": "toy"}
    a = evaluate_policy(result.policy, panel, *TEST)
    b = evaluate_policy(loaded, panel, *TEST)
    np.testing.assert_array_equal(a.weights, b.weights)
    # the bytes written are checkpoint_bytes(); with their SHA-256 the load is verified
    blob = checkpoint_bytes(result.policy, {"fold": "toy"})
    (tmp_path / "b.pt").write_bytes(blob)
    again = load_checkpoint(tmp_path / "b.pt", sha256=hashlib.sha256(blob).hexdigest())
    for k, v in result.policy.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]), k
    assert again.meta == {"fold": "toy"}
    load_checkpoint(path, sha256=hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")
def test_checkpoint_errors(toy, tmp_path):
    panel, _, result, _ = toy
    good = save_checkpoint(tmp_path / "good.pt", result.policy)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(truncated)
    evil = tmp_path / "evil.pt"  # arbitrary pickled objects are refused by weights_only=True
    with evil.open("wb") as fh:
        pickle.dump({"format": object()}, fh)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(good, sha256=hashlib.sha256(b"something else").hexdigest())
    with pytest.raises(CheckpointError, match="SHA-256"):  # the truncated file no longer has the good hash
        load_checkpoint(truncated, sha256=hashlib.sha256(good.read_bytes()).hexdigest())
    with pytest.raises(CheckpointError, match="cost_rate"):
        load_checkpoint(good, expected_env_config=TOY_ENV.model_copy(update={"cost_rate": 0.001}))
    with pytest.raises(CheckpointError, match="data hash mismatch"):
        load_checkpoint(good, expected_data_hash=panel.data_hash(*TEST))
    payload = torch.load(good, weights_only=True)
    payload["state_dict"]["actor.0.weight"] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="architecture"):
        load_checkpoint(tmp_path / "shape.pt")
    payload = torch.load(good, weights_only=True)
    del payload["data_hash"]
    torch.save(payload, tmp_path / "nokey.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "nokey.pt")


def test_evaluate_rejects_incompatible_panel(toy):
    _, _, result, _ = toy
    other, _ = _toy_panel(300)
    renamed = MarketPanel.from_arrays(other.returns, other.features, feature_names=other.feature_names, assets=("Y",))
    with pytest.raises(ValueError, match="layout"):
        evaluate_policy(result.policy, renamed, 0, 100)
    fewer = MarketPanel.from_arrays(other.returns, other.features[:, 1:], feature_names=other.feature_names[1:],
                                    assets=("X",))
    with pytest.raises(ValueError, match="layout"):
        evaluate_policy(result.policy, fewer, 0, 100)


def test_device_resolution():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("reward", ["vix_shaped", "vol_penalty", "differential_sharpe"])
def test_every_reward_trains_without_nan(reward):
    panel, _ = _toy_panel(600, seed=2)
    env_cfg = EnvConfig(reward=reward, equity_assets=("X",), episode_length=64, execution="close")
    cfg = PPOConfig(total_steps=2048, num_envs=16, num_steps=64, num_minibatches=2, update_epochs=1, device="cpu")
    result = train_ppo(panel, 0, 500, env_cfg, cfg)
    assert all(np.isfinite(r["mean_reward"]) and np.isfinite(r["value_loss"]) for r in result.curve)
    assert all(torch.isfinite(v).all() for v in result.policy.state_dict().values())
    frame = evaluate_policy(result.policy, panel, 500, 599).to_frame(panel.assets)
    assert frame.columns == ["date", "w_X", "w_cash", "net_return"] and frame.height == 99


def test_shared_body_shares_the_body_and_survives_a_checkpoint(toy, tmp_path):
    panel, *_ = toy
    cfg = TOY_PPO.model_copy(update={"shared_body": True, "total_steps": 2048, "update_epochs": 2})
    result = train_ppo(panel, *TRAIN, TOY_ENV, cfg)
    pol = result.policy
    assert pol.critic[0].weight is pol.actor[0].weight and pol.critic[2].weight is pol.actor[2].weight
    assert pol.critic[-1] is not pol.actor[-1] and pol.critic[-1].out_features == 1
    n_shared = sum(p.numel() for p in pol.parameters())
    separate = PPOPolicy(pol.obs_dim, pol.n_actions)
    assert n_shared < sum(p.numel() for p in separate.parameters())  # one body, not two
    path = save_checkpoint(tmp_path / "shared.pt", pol)
    loaded = load_checkpoint(path)
    assert loaded.shared_body and loaded.critic[0].weight is loaded.actor[0].weight
    np.testing.assert_array_equal(evaluate_policy(pol, panel, *TEST).weights, evaluate_policy(loaded, panel, *TEST).weights)

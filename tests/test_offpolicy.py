"""SAC, TD3 and the ensemble: they learn the planted fear signal of the PPO toy, reproduce bit for bit on CPU,
keep the best validation checkpoint, checkpoint with weights_only, and the ensemble arithmetic is exact."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ml import metrics
from ml.agents.checkpoint import CheckpointError, checkpoint_bytes, load_checkpoint, save_checkpoint
from ml.agents.ensemble import EnsemblePolicy, composite_ensemble, composite_score, composite_weights
from ml.agents.offpolicy import ReplayBuffer
from ml.agents.ppo import train_ppo
from ml.agents.rollout import evaluate_policy
from ml.agents.sac import SACConfig, train_sac
from ml.agents.td3 import TD3Config, train_td3
from tests.test_ppo import TEST, TOY_ENV, TOY_PPO, TRAIN, _toy_panel

TOY_SAC = SACConfig(total_steps=16_000, num_envs=16, learning_starts=1_000, log_every=3_000, eval_every=4_000,
                    device="cpu")
TOY_TD3 = TD3Config(total_steps=16_000, num_envs=16, learning_starts=1_000, log_every=3_000, eval_every=4_000,
                    device="cpu")
VALIDATION = (1700, 2000)  # the last 300 rows of the toy's training window


@pytest.fixture(scope="module")
def toy():
    panel, flag = _toy_panel()
    sac = train_sac(panel, TRAIN[0], VALIDATION[0], TOY_ENV, TOY_SAC, validation=VALIDATION)
    td3 = train_td3(panel, TRAIN[0], VALIDATION[0], TOY_ENV, TOY_TD3, validation=VALIDATION)
    return panel, flag, {"sac": sac, "td3": td3}


def _oracle(panel, flag) -> float:
    lo, hi = TEST
    return float(np.where(flag[lo:hi] > 0, 0.0, panel.returns[lo + 1 : hi + 1, 0]).mean())


@pytest.mark.parametrize("kind", ["sac", "td3"])
def test_learns_the_planted_fear_signal(toy, kind):
    panel, flag, results = toy
    weights, net, _ = evaluate_policy(results[kind].policy, panel, *TEST)
    sig = flag[TEST[0] : TEST[1]]
    assert net.mean() >= 0.9 * _oracle(panel, flag), (kind, net.mean() / _oracle(panel, flag))
    assert weights[sig > 0, 0].mean() < 0.1 and weights[sig == 0, 0].mean() > 0.9


@pytest.mark.parametrize("kind", ["sac", "td3"])
def test_keeps_the_best_validation_checkpoint(toy, kind):
    panel, _, results = toy
    res = results[kind]
    sel = res.selection
    scores = [r["val_sharpe"] for r in res.curve if not np.isnan(r["val_sharpe"])]
    assert sel["evaluations"] == len(scores) >= 3 and sel["best_val_sharpe"] == max(scores)  # every one logged
    again = metrics.sharpe(evaluate_policy(res.policy, panel, *VALIDATION).net_returns)
    assert again == pytest.approx(sel["best_val_sharpe"], abs=1e-12)  # the returned policy is the kept one
    assert res.policy.train_window[1] == str(panel.dates[VALIDATION[0]])  # fitted before the slice
    assert {"grad_steps", "grad_steps_per_s", "qf_loss", "q_mean"} <= set(res.curve[-1])


@pytest.mark.parametrize("trainer,config", [(train_sac, SACConfig), (train_td3, TD3Config)])
def test_bitwise_reproducible_on_cpu(trainer, config):
    panel, _ = _toy_panel(600, seed=1)
    cfg = config(total_steps=1_600, num_envs=8, learning_starts=400, batch_size=64, eval_every=800, device="cpu")
    a = trainer(panel, 0, 450, TOY_ENV, cfg, validation=(450, 599)).policy.state_dict()
    b = trainer(panel, 0, 450, TOY_ENV, cfg, validation=(450, 599)).policy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c = trainer(panel, 0, 450, TOY_ENV, cfg.model_copy(update={"seed": 1})).policy.state_dict()
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_replay_buffer_wraps_and_samples_what_was_stored():
    buf = ReplayBuffer(capacity=5, obs_dim=2, n_actions=3, num_envs=2, device=torch.device("cpu"))
    for step in range(4):  # 8 rows into 5 slots: the last 5 survive
        obs = torch.full((2, 2), float(step)) + torch.tensor([[0.0], [0.5]])
        buf.add(obs, torch.zeros(2, 3), obs[:, 0], obs + 1.0, torch.zeros(2))
    assert buf.size == 5 and buf.pos == 3
    assert sorted(buf.rewards.tolist()) == [1.5, 2.0, 2.5, 3.0, 3.5]
    gen = torch.Generator().manual_seed(0)
    obs, _, rew, nxt, _ = buf.sample(64, gen)
    assert torch.equal(obs[:, 0], rew) and torch.equal(nxt, obs + 1.0)


def test_composite_score_and_weights_by_hand():
    r = np.array([0.01, -0.02, 0.03, 0.0])
    spy = np.array([0.0, 0.0, 0.01, 0.0])
    s = composite_score(r, spy)
    val = 1.01 * 0.98 * 1.03 - 1.0
    downside = np.sqrt(0.02**2 / 4)
    sortino = r.mean() / downside * np.sqrt(252)  # 0.0025 / 0.01 * 15.87 = 3.97 -> capped at 3
    assert s.val_return == pytest.approx(val) and s.spy_return == pytest.approx(0.01)
    assert s.sortino == pytest.approx(sortino) and s.composite == pytest.approx((val - 0.01) * 3.0)
    # the reference's example: SAC 1.302 / TD3 1.042 / PPO 0.914 -> 40 / 32 / 28 %
    w, fell_back = composite_weights({"sac": 1.302, "td3": 1.042, "ppo": 0.914})
    assert not fell_back and [round(w[k], 2) for k in ("sac", "td3", "ppo")] == [0.40, 0.32, 0.28]
    w, _ = composite_weights({"sac": 0.6, "td3": -0.2, "ppo": float("nan")})
    assert w == {"sac": 1.0, "td3": 0.0, "ppo": 0.0}
    w, fell_back = composite_weights({"sac": -0.1, "td3": 0.0})
    assert fell_back and w == {"sac": 0.5, "td3": 0.5}
    # a member trailing SPY with a negative Sortino does not score positive (Sortino floored at 0)
    loser = composite_score(np.array([-0.01, 0.002, -0.01]), np.array([0.01, 0.01, 0.01]))
    assert loser.sortino < 0 and loser.composite == 0.0


def test_ensemble_of_identical_members_equals_the_member(toy):
    panel, _, results = toy
    sac = results["sac"].policy
    single = evaluate_policy(sac, panel, *TEST)
    ens = evaluate_policy(EnsemblePolicy([sac, sac, sac], [0.2, 0.5, 0.3], ["a", "b", "c"]), panel, *TEST)
    np.testing.assert_allclose(ens.weights, single.weights, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ens.net_returns, single.net_returns, rtol=0, atol=1e-12)


def test_ensemble_weights_are_the_weighted_average_of_the_members(toy):
    panel, _, results = toy
    sac, td3 = results["sac"].policy, results["td3"].policy
    built = composite_ensemble({"sac": sac, "td3": td3}, panel, VALIDATION, benchmark="X")
    assert sum(built.weights.values()) == pytest.approx(1.0) and set(built.scores) == {"sac", "td3"}
    obs = torch.as_tensor(np.random.default_rng(0).normal(size=(50, sac.obs_dim)))
    expected = sum(built.weights[k] * torch.softmax(m.mean_logits(obs).double(), -1) for k, m in (("sac", sac), ("td3", td3)))
    np.testing.assert_allclose(built.policy.weights(obs).numpy(), expected.detach().numpy(), atol=1e-12)
    with pytest.raises(ValueError, match="trained on days of the validation slice"):  # would be in-sample
        composite_ensemble({"sac": sac, "td3": td3}, panel, (1600, 2000), benchmark="X")
    other = train_td3(panel, 0, 1500, TOY_ENV, TOY_TD3.model_copy(update={"total_steps": 1_600})).policy
    with pytest.raises(ValueError, match="different data"):
        composite_ensemble({"sac": sac, "td3": other}, panel, VALIDATION, benchmark="X")
    with pytest.raises(ValueError, match="share the environment config"):
        EnsemblePolicy([sac, train_ppo(panel, 0, 300, TOY_ENV.model_copy(update={"cost_rate": 0.001}),
                                       TOY_PPO.model_copy(update={"total_steps": 1024})).policy], [1, 1], ["a", "b"])


def test_checkpoints_round_trip_with_weights_only_and_fail_clearly(toy, tmp_path):
    panel, _, results = toy
    sac, td3 = results["sac"].policy, results["td3"].policy
    ens = EnsemblePolicy([sac, td3], [0.7, 0.3], ["sac", "td3"])
    obs = torch.as_tensor(np.random.default_rng(1).normal(size=(20, sac.obs_dim)))
    for name, pol in {"sac": sac, "td3": td3, "ensemble": ens}.items():
        path = save_checkpoint(tmp_path / f"{name}.pt", pol, meta={"fold": "toy"})
        raw = torch.load(path, weights_only=True)  # plain tensors and containers only
        assert raw["format"].startswith("regimeflow.")
        loaded = load_checkpoint(path, expected_env_config=TOY_ENV, expected_data_hash=pol.data_hash)
        assert loaded.kind == name and loaded.meta == {"fold": "toy"}
        torch.testing.assert_close(loaded.weights(obs), pol.weights(obs), rtol=0, atol=0)
        assert checkpoint_bytes(loaded, {"fold": "toy"}) == checkpoint_bytes(pol, {"fold": "toy"})
    assert load_checkpoint(tmp_path / "ensemble.pt").member_weights == pytest.approx({"sac": 0.7, "td3": 0.3})
    blob = (tmp_path / "td3.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt or unreadable"):
        load_checkpoint(tmp_path / "cut.pt")
    with pytest.raises(CheckpointError, match="environment config mismatch"):
        load_checkpoint(tmp_path / "sac.pt", expected_env_config=TOY_ENV.model_copy(update={"cost_rate": 0.01}))
    payload = torch.load(tmp_path / "ensemble.pt", weights_only=True)
    del payload["members"][1]["agent_config"]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_checkpoint(tmp_path / "broken.pt")
    payload["members"][1] = {"format": "something else"}
    torch.save(payload, tmp_path / "alien.pt")
    with pytest.raises(CheckpointError, match="is not one of"):
        load_checkpoint(tmp_path / "alien.pt")

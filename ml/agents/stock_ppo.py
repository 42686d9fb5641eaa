"""PPO for the stock environment - CleanRL-style (``ppo_continuous_action.py``), one readable file.

Algorithm (Schulman et al. 2017, as :mod:`ml.agents.ppo`):

* actor: the permutation-equivariant :class:`~ml.agents.stock_policy.StockActor` (``kind="ppo"``) gives a
  per-stock Gaussian mean; one learned scalar log-std for every stock; the env clamps the sampled action to
  [-1, 1] and maps it to BUY / SELL / HOLD (:func:`~ml.envs.stock_env.action_targets`);
* log-probabilities (and the entropy) are sums over the **candidate** slots only: the env ignores the
  actions of non-candidates, so they must not enter the probability ratio;
* critic: :class:`~ml.agents.stock_policy.PooledCritic` ``V(s) = MLP([pool(phi_v(x)), g])``;
* rollouts of ``num_steps`` x ``num_envs`` from :class:`~ml.envs.stock_env.BatchedStockEnv`; the buffer keeps
  ``(t, w)`` per transition (not the ``S x Fx`` observation) and minibatches rebuild observations with
  :meth:`~ml.envs.stock_env.BatchedStockEnv.observe`;
* GAE(gamma, lambda), truncations bootstrapped with ``gamma * V(final observation)``; clipped surrogate,
  (clipped) value loss, per-minibatch advantage normalisation, global grad-norm clipping, optional linear
  learning-rate annealing, early stop on ``target_kl``; optional reward normalisation by the running std of
  the discounted return (the curve reports raw rewards);
* normalisers fitted once on the training window (:meth:`StockActor.set_stats`) and frozen.

Deterministic action (evaluation, decisions): ``clamp(mean, -1, 1)``. It trades less than the sampled training
policy: a mean inside the HOLD band (+-threshold) never trades, however often its samples did.

Timing: decisions at the close of t on data known then, filled at the open of t+1 (:mod:`ml.envs.stock_env`).
Reproducibility: same seed, data, config and thread count on CPU -> bitwise identical weights (global seed
for the initialisation, dedicated ``torch.Generator`` for env starts / action noise / minibatches,
``torch.use_deterministic_algorithms`` and ``num_threads`` during training, restored afterwards).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from ml.agents.common import Determinism, RunningMeanStd, TrainResult, resolve_device
from ml.agents.ppo import gae, ppo_loss, reward_scale
from ml.agents.stock_policy import PooledCritic, StockActor, StockValidationSelector
from ml.envs.stock_env import BatchedStockEnv, StockEnvConfig, stock_data_hash
from ml.envs.stock_panel import StockPanel

__all__ = ["StockPPOConfig", "train_stock_ppo"]

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class StockPPOConfig(BaseModel):
    """PPO hyper-parameters (CleanRL names). Defaults sized for one fold (~3,000 training rows x 100 stocks x
    ~12 features) in <= ~20 s on 2 CPU cores: 128 envs x 32 steps = 4,096 transitions per iteration, 16
    iterations (65k env steps), 2 epochs x 8 minibatches of 512 (the update dominates; fresh transitions are
    cheaper than extra epochs, as for the allocation PPO), learning rate 1e-3 (3e-4 barely moved the per-stock
    means out of the HOLD band in 256 gradient steps). ``gamma`` 0.8 (a ~5-day horizon, the prescreen's primary
    label): an action acts on the future only through the names it leaves held, and a longer horizon adds the
    noise of later days' returns to every advantage - on a synthetic 3,000 x 100 panel (a 1-day signal) the test
    Sharpe was 4.3 at gamma 0.8 and 5.9 at 0.5 (0.9 with learning rate 3e-4 never left the HOLD band)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total_steps: int = Field(default=65_536, ge=1, description="environment steps (transitions) in total")
    num_envs: int = Field(default=128, ge=1)
    num_steps: int = Field(default=32, ge=1, description="steps per env per rollout")
    num_minibatches: int = Field(default=8, ge=1)
    update_epochs: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=1e-3, gt=0.0)
    anneal_lr: bool = True
    gamma: float = Field(default=0.8, ge=0.0, le=1.0)
    gae_lambda: float = Field(default=0.9, ge=0.0, le=1.0)
    clip_coef: float = Field(default=0.2, gt=0.0)
    clip_vloss: bool = True
    ent_coef: float = Field(default=0.0, ge=0.0)
    vf_coef: float = Field(default=0.5, ge=0.0)
    max_grad_norm: float = Field(default=0.5, gt=0.0)
    target_kl: float | None = None
    norm_adv: bool = True
    normalize_rewards: bool = True
    hidden_sizes: tuple[int, ...] = Field(default=(64, 64), description="per-stock encoder layers")
    head_sizes: tuple[int, ...] = Field(default=(64,), description="per-stock head / critic head layers")
    use_max: bool = Field(default=True, description="pool with masked mean and max (False: mean only)")
    init_log_std: float = -0.5
    obs_clip: float = Field(default=10.0, gt=0.0, description="clip of the standardised observation")
    seed: int = 0
    device: str = Field(default="auto", description='"auto" (CUDA when available, else CPU), "cpu", "cuda"...')
    num_threads: int | None = Field(default=2, ge=1, description="torch CPU threads (None = torch's default)")
    deterministic: bool = True
    eval_every: int = Field(default=4, ge=1, description="iterations between validation evaluations")

    @property
    def batch_size(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        return max(1, self.total_steps // self.batch_size)


def _log_prob(actor: StockActor, x: torch.Tensor, g: torch.Tensor, mask: torch.Tensor,
              actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log pi(a|s) [B], entropy [B])`` summed over the candidate slots (normalised, compacted inputs)."""
    m = mask.to(x.dtype)
    z = (actions - actor.mean(x, g, mask)) * torch.exp(-actor.log_std)
    n = m.sum(-1)
    logp = (-0.5 * z * z * m).sum(-1) - n * (actor.log_std + _LOG_SQRT_2PI)
    return logp, n * (actor.log_std + 0.5 + _LOG_SQRT_2PI)


def train_stock_ppo(
    panel: StockPanel,
    start_idx: int,
    end_idx: int,
    env_config: StockEnvConfig | None = None,
    config: StockPPOConfig | None = None,
    validation: tuple[int, int] | None = None,
    on_iteration: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a PPO stock policy on panel rows ``[start_idx, end_idx]`` (decisions at ``start_idx .. end_idx-1``
    earn rows ``start_idx+1 .. end_idx``; nothing outside is seen).

    ``validation``: rows ``(lo, hi)`` outside the training window (the caller guarantees it): every
    ``eval_every`` iterations and after the last, :func:`~ml.agents.stock_policy.evaluate_stock_policy` there
    and the best checkpoint by validation Sharpe is returned. Curve rows (also passed to ``on_iteration``):
    ``iteration, env_steps, env_steps_per_s, mean_reward, mean_net, mean_turnover, episodes, entropy,
    approx_kl, clip_frac, value_loss, policy_loss, explained_variance, learning_rate, action_std, rollout_s,
    update_s, wall_s`` (+ ``val_sharpe``, NaN between evaluations). The policy comes back on CPU, eval mode."""
    env_cfg = env_config or StockEnvConfig()
    cfg = config or StockPPOConfig()
    device = resolve_device(cfg.device)
    t_start = time.perf_counter()
    with Determinism(cfg, device):
        torch.manual_seed(cfg.seed)
        env = BatchedStockEnv(panel, env_cfg, start_idx, end_idx, num_envs=cfg.num_envs, device=device,
                              seed=cfg.seed + 1)
        dates = panel.dates
        actor = StockActor(
            env.x_dim, env.g_dim, "ppo", cfg.hidden_sizes, cfg.head_sizes, cfg.use_max, cfg.obs_clip,
            cfg.init_log_std, env_config=env_cfg, feature_names=panel.feature_names,
            market_names=panel.market_names, data_hash=stock_data_hash(panel, start_idx, end_idx),
            train_window=(str(dates[start_idx + 1]), str(dates[end_idx])), seed=cfg.seed, agent_config=cfg,
        ).to(device)
        actor.set_stats(env)
        critic = PooledCritic(env.x_dim, env.g_dim, cfg.hidden_sizes, cfg.head_sizes, cfg.use_max).to(device)
        optimizer = torch.optim.Adam([*actor.parameters(), *critic.parameters()], lr=cfg.learning_rate, eps=1e-5)
        gen = torch.Generator(device=device)
        gen.manual_seed(cfg.seed + 2)
        selector = StockValidationSelector(panel, validation, device)
        curve = _train_loop(actor, critic, env, optimizer, gen, cfg, selector, on_iteration, t_start)
        selector.restore(actor)
    actor = actor.cpu().eval()
    return TrainResult(policy=actor, curve=curve, env_steps=cfg.num_iterations * cfg.batch_size,
                       wall_s=time.perf_counter() - t_start, data_hash=actor.data_hash,
                       train_window=(start_idx, end_idx), selection=selector.summary())


def _train_loop(actor: StockActor, critic: PooledCritic, env: BatchedStockEnv, optimizer: torch.optim.Optimizer,
                gen: torch.Generator, cfg: StockPPOConfig, selector: StockValidationSelector,
                on_iteration: Callable[[dict[str, float]], None] | None, t_start: float) -> list[dict[str, float]]:
    N, E, S, dev, f32 = cfg.num_steps, cfg.num_envs, env.n_stocks, env.device, torch.float32
    # rollout storage: (t, w) rebuild the observation; actions are full [E, S] (0 for non-candidates)
    t_buf = torch.zeros(N, E, dtype=torch.long, device=dev)
    w_buf = torch.zeros(N, E, S, dtype=env.dtype, device=dev)
    act_buf = torch.zeros(N, E, S, dtype=f32, device=dev)
    logp_buf, val_buf, rew_buf, net_buf, turn_buf, done_buf, boot_buf = (
        torch.zeros(N, E, dtype=f32, device=dev) for _ in range(7))
    ret_rms = RunningMeanStd(1).to(dev)
    ret_acc = torch.zeros(E, dtype=torch.float64, device=dev)
    params = [*actor.parameters(), *critic.parameters()]
    with torch.inference_mode():
        obs = env.reset()
    curve: list[dict[str, float]] = []
    n_iter, mb_size = cfg.num_iterations, max(1, cfg.batch_size // cfg.num_minibatches)
    for it in range(1, n_iter + 1):
        t_it = time.perf_counter()
        lr = cfg.learning_rate * (1.0 - (it - 1.0) / n_iter) if cfg.anneal_lr else cfg.learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        boot_buf.zero_()
        n_episodes = 0.0
        # ---------------- rollout ----------------
        with torch.inference_mode():
            log_std = actor.log_std.detach()
            std = log_std.exp()
            for s in range(N):
                t_buf[s], w_buf[s] = env.t, env.w
                x_c, g, mask_c, idx, _ = actor.prepare(obs)
                m = mask_c.to(f32)
                mean_c = actor.mean(x_c, g, mask_c)
                val_buf[s] = critic(x_c, g, mask_c)
                noise = torch.randn(mean_c.shape, generator=gen, device=dev, dtype=f32)
                a_c = (mean_c + std * noise) * m
                logp_buf[s] = (-0.5 * noise * noise * m).sum(-1) - m.sum(-1) * (log_std + _LOG_SQRT_2PI)
                action = torch.zeros(E, S, dtype=f32, device=dev).scatter(1, idx, a_c)
                act_buf[s] = action
                obs, reward, term, trunc, info = env.step(action)
                rew_buf[s], net_buf[s], turn_buf[s] = reward, info["net"], info["turnover"]
                done = term | trunc
                done_buf[s] = done
                rows = trunc.nonzero().squeeze(-1)
                if rows.numel():  # bootstrap truncated episodes from V(final observation)
                    fx, fg, fm, _, _ = actor.prepare(info["final_obs"].rows(rows))
                    boot_buf[s].index_put_((rows,), critic(fx, fg, fm))
                n_episodes += float(done.sum())
            x_c, g, mask_c, _, _ = actor.prepare(obs)
            next_value = critic(x_c, g, mask_c)
            scale, ret_acc = reward_scale(rew_buf, done_buf, ret_acc, ret_rms, cfg.gamma, cfg.normalize_rewards)
            rewards = rew_buf * scale + cfg.gamma * boot_buf
            adv = gae(rewards, val_buf, next_value, done_buf, cfg.gamma, cfg.gae_lambda)
            returns = adv + val_buf
        t_roll = time.perf_counter() - t_it
        # ---------------- update ----------------
        b_t, b_w, b_act = t_buf.reshape(-1), w_buf.reshape(-1, S), act_buf.reshape(-1, S)
        b_logp, b_adv, b_ret, b_val = (b.reshape(-1).clone() for b in (logp_buf, adv, returns, val_buf))
        clipfracs: list[torch.Tensor] = []
        for _epoch in range(cfg.update_epochs):
            perm = torch.randperm(cfg.batch_size, generator=gen, device=dev)
            for start in range(0, cfg.batch_size, mb_size):
                mb = perm[start : start + mb_size]
                x_c, g, mask_c, _, (a_c,) = actor.prepare(env.observe(b_t[mb], b_w[mb]), b_act[mb])
                newlogp, entropy = _log_prob(actor, x_c, g, mask_c, a_c)
                newv = critic(x_c, g, mask_c)
                out = ppo_loss(newlogp, entropy, newv, b_logp[mb], b_adv[mb], b_ret[mb], b_val[mb], cfg)
                clipfracs.append(out.clip_frac)
                approx_kl, pg_loss, v_loss, ent, loss = out.approx_kl, out.pg_loss, out.v_loss, out.entropy, out.loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                optimizer.step()
            if cfg.target_kl is not None and float(approx_kl) > cfg.target_kl:
                break
        # ---------------- logging ----------------
        with torch.no_grad():
            var_y = b_ret.var()
            ev = float("nan") if float(var_y) == 0.0 else float(1.0 - (b_ret - b_val).var() / var_y)
            now = time.perf_counter()
            row = {
                "iteration": float(it), "env_steps": float(it * cfg.batch_size),
                "env_steps_per_s": cfg.batch_size / max(now - t_it, 1e-9),
                "mean_reward": float(rew_buf.mean()), "mean_net": float(net_buf.mean()),
                "mean_turnover": float(turn_buf.mean()), "episodes": n_episodes, "entropy": float(ent),
                "approx_kl": float(approx_kl), "clip_frac": float(torch.stack(clipfracs).mean()),
                "value_loss": float(v_loss), "policy_loss": float(pg_loss), "explained_variance": ev,
                "learning_rate": lr, "action_std": float(actor.log_std.exp()), "rollout_s": t_roll,
                "update_s": now - t_it - t_roll, "wall_s": now - t_start,
            }
        if selector.enabled:
            due = it % cfg.eval_every == 0 or it == n_iter
            row["val_sharpe"] = selector(actor, it * cfg.batch_size)["val_sharpe"] if due else float("nan")
        curve.append(row)
        if on_iteration is not None:
            on_iteration(row)
    return curve

"""Profiles are run-config YAML files over the ml defaults; resources hold overrides only."""
import dagster as dg
import pytest

from infra.resources import (
    FeatureStoreResource,
    MarketDataResource,
    MonitoringResource,
    PolicyResource,
    PrescreenResource,
    RegimeResource,
    RiskResource,
    StockBookResource,
)
from ml.agents.ppo import PPOConfig
from ml.agents.stock_offpolicy import StockOffPolicyConfig
from ml.agents.stock_ppo import StockPPOConfig
from ml.data.universe import Universe
from ml.envs.portfolio import EnvConfig
from ml.envs.stock_env import StockEnvConfig
from ml.features import FeatureConfig
from ml.labels import LabelConfig
from ml.monitoring import DriftConfig
from ml.prescreen import PrescreenConfig
from ml.regimes.hmm import HmmConfig
from ml.regimes.vix import VixRegimeConfig
from ml.risk import CircuitBreakerConfig
from ml.stock_book import StockBookSettings
from orchestration.profiles import PROFILE_NAMES, load_profile, merge_run_config


def test_unset_resources_give_exactly_the_ml_defaults():
    assert PolicyResource().ppo_config() == PPOConfig() and PPOConfig().total_steps == 1_000_000
    assert PolicyResource().env_config() == EnvConfig()
    assert RegimeResource().vix_config() == VixRegimeConfig() and RegimeResource().hmm_config() == HmmConfig()
    assert RiskResource().breaker_config() == CircuitBreakerConfig()
    assert PrescreenResource().config() == PrescreenConfig()
    assert FeatureStoreResource().config() == FeatureConfig()
    assert FeatureStoreResource().label_config() == LabelConfig()
    assert MonitoringResource().config() == DriftConfig()
    assert MarketDataResource().universe() == Universe()
    assert StockBookResource().settings() == StockBookSettings() and StockBookResource().members() == ["ppo", "sac", "td3"]
    assert StockBookResource().ppo_config() == StockPPOConfig()
    assert StockBookResource().offpolicy_config() == StockOffPolicyConfig()
    env = StockBookResource().env_config()
    assert env.top_n == StockEnvConfig().top_n and env.cost_rate == pytest.approx(StockEnvConfig().cost_rate)


def test_stock_book_resource_overrides():
    res = StockBookResource(top_n=10, weighting="max_sharpe", min_trade=0.01, ppo_total_steps=7, rl_device="cpu",
                            rl_members="ppo, td3")
    assert res.settings().top_n == 10 and res.env_config().top_n == 10
    assert res.settings().engine.weighting == "max_sharpe" and res.settings().engine.min_trade == 0.01
    assert res.ppo_config().total_steps == 7 and res.ppo_config().device == "cpu"
    assert res.members() == ["ppo", "td3"] and StockBookResource(rl_members="").members() == []
    with pytest.raises(ValueError, match="unknown member"):
        StockBookResource(rl_members="ppo,dqn").members()


def test_resource_fields_are_overrides_of_ml_config_fields():
    """Every config-like resource field is None by default and lands in the ml config it overrides."""
    pairs = [(PolicyResource(total_steps=7, num_envs=3, seed=2, device="cpu"), "ppo_config"),
             (RegimeResource(hmm_restarts=9, hmm_window=15), "hmm_config"),
             (RiskResource(vix_threshold=40.0, max_equity_weight=0.1), "breaker_config"),
             (PrescreenResource(cv_splits=4, generations=2), "config")]
    for resource, build in pairs:
        cfg = getattr(resource, build)()
        overridable = [k for k, f in type(resource).model_fields.items() if f.default is None]
        set_fields = {k: getattr(resource, k) for k in overridable if getattr(resource, k) is not None}
        assert set_fields, resource
        for v in set_fields.values():
            assert v in cfg.model_dump().values()
    assert PolicyResource(cost_bps=10.0).env_config().cost_rate == pytest.approx(0.001)
    assert PolicyResource(observation="term").env_config().observation.market_features[-1] == "vix_term_chg_5d"
    assert RegimeResource(bucket_edges=[10, 20, 25, 35]).vix_config().bucket_edges == (10, 20, 25, 35)
    assert MarketDataResource(history_start="all").universe().history_start is None


def test_profiles_are_run_config_files():
    assert set(PROFILE_NAMES) == {"default", "large", "seed-faithful"}
    assert load_profile("default") == {"resources": {}}
    large = load_profile("large")
    assert large["resources"]["policy"]["config"]["total_steps"] == 4_000_000
    merged = merge_run_config(large, {"resources": {"policy": {"config": {"seed": 3}}}})
    assert merged["resources"]["policy"]["config"] == {"total_steps": 4_000_000, "seed": 3}
    with pytest.raises(ValueError, match="unknown profile 'huge'"):
        load_profile("huge")


def test_a_profile_configures_the_resources_of_a_run():
    """The same YAML the CLI merges into every job's run config drives a run's resources."""
    seen = {}

    @dg.asset
    def probe(policy: PolicyResource) -> None:
        seen["steps"] = policy.ppo_config().total_steps

    resources = {"policy": PolicyResource(), "regimes": RegimeResource(), "prescreen": PrescreenResource()}
    dg.materialize([probe], resources=resources, run_config=load_profile("large"))
    assert seen["steps"] == 4_000_000
    dg.materialize([probe], resources=resources, run_config=load_profile("default"))
    assert seen["steps"] == PPOConfig().total_steps


def test_policy_windows_and_learner_configs():
    from datetime import date

    from ml.agents.sac import SACConfig
    from ml.agents.td3 import TD3Config
    from ml.folds import Fold

    fold = Fold("seed-2008-2019", date(2008, 1, 2), date(2019, 11, 29), 21, date(2020, 1, 2), date(2025, 12, 31),
                validation_start=date(2018, 11, 29))
    assert PolicyResource().windows(fold) == ((date(2008, 1, 2), date(2018, 11, 28)),
                                              (date(2018, 11, 29), date(2019, 11, 29)))
    assert PolicyResource(validation=False).windows(fold) == ((date(2008, 1, 2), date(2019, 11, 29)), None)
    sac = PolicyResource(offpolicy_total_steps=999, offpolicy_num_envs=3, seed=4, device="cpu").agent_config("sac")
    assert isinstance(sac, SACConfig) and (sac.total_steps, sac.num_envs, sac.seed, sac.device) == (999, 3, 4, "cpu")
    assert PolicyResource().agent_config("td3") == TD3Config() and PolicyResource().agent_config("ppo") == PPOConfig()
    with pytest.raises(ValueError, match="unknown learner"):
        PolicyResource().agent_config("dqn")


def test_seed_faithful_profile_is_the_articles_protocol():
    from datetime import date

    from ml.folds import Fold

    cfg = load_profile("seed-faithful")["resources"]["policy"]["config"]
    policy = PolicyResource(**cfg)
    env, ppo = policy.env_config(), policy.ppo_config()
    assert (env.observed_weights, env.episode_starts, env.execution, env.episode_length) == ("target", "sequential",
                                                                                             "close", 1024)
    assert env.observation.asset_features[-1] == "rv_21d_simple" and "vix_pct_chg_5d" in env.observation.market_features
    assert (ppo.num_envs, ppo.num_steps, ppo.total_steps // (ppo.num_envs * ppo.num_steps)) == (1, 1024, 60)
    assert (ppo.update_epochs, ppo.num_minibatches, ppo.ent_coef, ppo.shared_body) == (8, 1, 0.01, True)
    fold = Fold("seed-2008-2019", date(2008, 1, 2), date(2019, 11, 29), 21, date(2020, 1, 2), date(2025, 12, 31))
    assert policy.train_window(fold) == (date(2008, 1, 2), date(2020, 1, 1))  # through 2019-12-31: no embargo
    assert policy.windows(fold) == ((date(2008, 1, 2), date(2020, 1, 1)), None)  # and no validation slice
    assert PolicyResource().train_window(fold) == (date(2008, 1, 2), date(2019, 11, 29))
    with pytest.raises(ValueError, match="label-free"):
        PolicyResource(observation="prescreen", train_through_embargo=True).train_window(fold)
    assert RegimeResource(closed="right").vix_config().closed == "right"


def test_cuda_selects_gpu_sized_learners_unless_set_explicitly(monkeypatch):
    """device=auto on a CUDA machine: PPO 16,384 envs x 64 steps, SAC / TD3 256 envs with 2,048-minibatches and
    8 updates per vector step (same replay ratio and gradient steps as the CPU default); an explicit size and
    device=cpu are kept; without CUDA nothing changes."""
    import torch

    from ml.agents.gpu_profile import gpu_sized
    from ml.agents.sac import SACConfig
    from ml.agents.td3 import TD3Config

    assert PolicyResource().ppo_config() == PPOConfig()  # this machine: no CUDA, CPU defaults
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ppo = PolicyResource().ppo_config()
    assert (ppo.num_envs, ppo.num_steps, ppo.num_minibatches, ppo.batch_size) == (16_384, 64, 8, 1_048_576)
    assert ppo.total_steps == PPOConfig().total_steps and ppo.num_iterations == 1  # the 1 M budget: one rollout
    kept = PolicyResource(num_envs=2_048, torch_threads=1).ppo_config()
    assert (kept.num_envs, kept.num_steps, kept.num_threads) == (2_048, 64, 1)
    assert PolicyResource(device="cpu").ppo_config() == PPOConfig(device="cpu")
    for kind, cls in (("sac", SACConfig), ("td3", TD3Config)):
        cfg, cpu = PolicyResource().agent_config(kind), cls()
        assert (cfg.num_envs, cfg.batch_size, cfg.updates_per_step) == (256, 2_048, 8)
        gradient_steps = cfg.vector_steps * cfg.updates_per_step
        assert gradient_steps == cpu.vector_steps * cpu.updates_per_step == 5_000
    assert PolicyResource(offpolicy_num_envs=64).agent_config("sac").num_envs == 64
    assert gpu_sized(PPOConfig(device="cuda:1")).num_envs == 16_384
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert PolicyResource().agent_config("td3") == TD3Config()


def test_torch_threads_reach_every_learner():
    assert PolicyResource(torch_threads=1).ppo_config().num_threads == 1
    assert {PolicyResource(torch_threads=1).agent_config(k).num_threads for k in ("sac", "td3")} == {1}
    stock = StockBookResource(rl_torch_threads=1)
    assert stock.ppo_config().num_threads == stock.offpolicy_config().num_threads == 1
    assert PolicyResource().ppo_config().num_threads == 2 and StockBookResource().ppo_config().num_threads == 2

"""Tabular Q-learning on clustered market states (the thesis design: asset allocation with RL on SPY).

State: SPY's daily features from the feature store (SMA ratios, the EMA12/EMA26 ratio, RSI, oscillators,
the 1-day log return and its lags 1..4), standardised on the fit window, reduced by iteratively dropping the
most-correlated column, then clustered (K-means or a Gaussian mixture, :mod:`ml.regimes.clustering`,
fitted on the fit window only). A day's state is its cluster id.

Agent: one Q value per (cluster, action), updated with the thesis's rule ``Q <- (1 - alpha) Q + alpha r``
(no bootstrapping: each decision is scored by its own reward), epsilon-greedy over ``epochs`` passes through
the fit days in date order. The backtest takes the greedy action of each cluster; a cluster never visited
in training (or a day whose features are not finite yet) takes ``default_action``.

Rewards of the action ``a`` decided at the close of t (``r_i`` = SPY's daily log return of day t+i):

* ``weighted`` (thesis eq. 4.1): ``a * (0.9 r_1 + 0.7 r_2 + 0.5 r_3 + 0.2 r_4)``;
* ``sharpe`` (eq. 4.3): the annualised Sharpe ratio of ``a * r_1 .. a * r_5``,
  ``sign(a) * mean(r) / std(r, ddof=1) * sqrt(252)`` (0 for ``a = 0`` or a flat week).

Timing: a state dated t uses only features known at the close of t; its exposure trades per the
execution model and earns SPY's return of t+1. A fit row's reward needs the returns of t+1 .. t+5, so only
rows whose horizon ends inside the fit window train the agent (no label crosses into validation or test).

Simulations (the thesis's four experiment families; the mapping of rewards to simulations is this project's
reading, the thesis tables give the action sets, cluster counts and epochs): Sim 1 long-only actions
{0, 0.25, .., 1}, k in {2, 5, 10, 20}, 2,000 epochs, eq. 4.1; Sim 2 short / levered actions
{-0.5, -0.25, .., 1.5}, k in {3, 5, 7, 9}, 1,000 epochs, eq. 4.1; Sim 3 as Sim 2 with eq. 4.3; Sim 4 actions
{0, 0.5, 1, 1.5}, k in {3, 5, 7, 9}, 1,000 epochs, eq. 4.3. Each with K-means and with a GMM.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numba
import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ml.regimes.clustering import ClusterModel, assign, fit_clusters

__all__ = [
    "BOOK_STRATEGIES",
    "book_exposures",
    "LAGS",
    "SIMULATIONS",
    "STATE_COLUMNS",
    "QLearningBook",
    "QLearningConfig",
    "QMember",
    "Simulation",
    "eliminate_correlated",
    "fit_book",
    "choose",
    "fit_member",
    "forward_returns",
    "greedy_policy",
    "member_table",
    "rows_at",
    "sharpe_rewards",
    "state_frame",
    "train_q",
    "weighted_rewards",
]

LAGS = 4
#: Feature-store columns of the state (SPY rows), then the lagged daily log returns built by :func:`state_frame`.
STORE_COLUMNS: tuple[str, ...] = ("close_to_sma_20", "close_to_sma_50", "close_to_sma_200", "macd_line",
                                  "macd_hist", "rsi_14", "roc_10", "bb_pctb_20", "ret_1d")
STATE_COLUMNS: tuple[str, ...] = (*STORE_COLUMNS, *(f"ret_1d_lag{i}" for i in range(1, LAGS + 1)))
REWARD_WEIGHTS: tuple[float, ...] = (0.9, 0.7, 0.5, 0.2)
SHARPE_DAYS = 5
HORIZON = max(len(REWARD_WEIGHTS), SHARPE_DAYS)  # rows of future returns a fit row needs

LONG_ONLY = (0.0, 0.25, 0.5, 0.75, 1.0)
SHORT_LEVERED = tuple(np.round(np.arange(-0.5, 1.5001, 0.25), 2).tolist())
LEVERED = (0.0, 0.5, 1.0, 1.5)


class Simulation(BaseModel):
    """One thesis experiment family: its actions (exposure to SPY, 1 = fully invested), cluster counts,
    reward and epochs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    actions: tuple[float, ...]
    ks: tuple[int, ...]
    reward: str = Field(pattern="^(weighted|sharpe)$")
    epochs: int = Field(ge=1)


SIMULATIONS: tuple[Simulation, ...] = (
    Simulation(name="sim1", actions=LONG_ONLY, ks=(2, 5, 10, 20), reward="weighted", epochs=2000),
    Simulation(name="sim2", actions=SHORT_LEVERED, ks=(3, 5, 7, 9), reward="weighted", epochs=1000),
    Simulation(name="sim3", actions=SHORT_LEVERED, ks=(3, 5, 7, 9), reward="sharpe", epochs=1000),
    Simulation(name="sim4", actions=LEVERED, ks=(3, 5, 7, 9), reward="sharpe", epochs=1000),
)


class QLearningConfig(BaseModel):
    """Knobs of the cluster-state Q-learning (defaults: the thesis's alpha, epsilon and simulations)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    simulations: tuple[Simulation, ...] = SIMULATIONS
    methods: tuple[str, ...] = ("kmeans", "gmm")
    alpha: float = Field(default=0.1, gt=0.0, le=1.0)
    epsilon: float = Field(default=0.3, ge=0.0, le=1.0)
    max_corr: float = Field(default=0.9, gt=0.0, le=1.0,
                            description="drop the most-correlated state column while any |corr| exceeds this")
    default_action: float = Field(default=0.5, description="exposure of unvisited clusters / non-finite states")
    epochs_scale: float = Field(default=1.0, gt=0.0, le=1.0, description="multiplies every simulation's "
                                "epochs (fast test profiles; 1.0 = the thesis)")
    seed: int = 0


def state_frame(features: pl.DataFrame, ticker: str = "SPY", extra: Sequence[str] = ()) -> pl.DataFrame:
    """``date, *STATE_COLUMNS, *extra`` for ``ticker``'s feature-store rows in date order. The lags shift the
    ticker's own ``ret_1d`` by 1..``LAGS`` rows (its previous sessions): every column of row t is known at
    the close of t."""
    rows = features.filter(pl.col("ticker") == ticker).sort("date")
    if rows.is_empty():
        raise ValueError(f"no feature rows for {ticker!r}: the Q-learning state needs them")
    lags = [pl.col("ret_1d").shift(i).alias(f"ret_1d_lag{i}") for i in range(1, LAGS + 1)]
    return rows.select("date", *STORE_COLUMNS, *extra).with_columns(lags).select("date", *STATE_COLUMNS, *extra)


def eliminate_correlated(x: np.ndarray, names: Sequence[str], max_corr: float = 0.9) -> tuple[str, ...]:
    """The thesis's iterative elimination: while some pair of columns has ``|corr| > max_corr``, drop the
    column with the largest ``|corr|`` to any other (ties: the larger mean ``|corr|``, then the later column).
    ``x``: ``[N, F]`` rows of the fit window (rows with a non-finite value are ignored)."""
    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x).all(axis=1)]
    keep = list(range(x.shape[1]))
    while len(keep) > 1:
        c = np.abs(np.corrcoef(x[:, keep], rowvar=False))
        np.fill_diagonal(c, 0.0)
        c = np.nan_to_num(c)  # a constant column correlates with nothing
        worst = c.max(axis=1)
        if worst.max() <= max_corr:
            break
        cand = np.flatnonzero(worst == worst.max())
        drop = cand[np.lexsort((cand, c[cand].mean(axis=1)))[-1]]
        keep.pop(int(drop))
    return tuple(names[i] for i in keep)


def forward_returns(log_returns: np.ndarray, horizon: int = HORIZON) -> np.ndarray:
    """``[T, horizon]``: row t holds ``log_returns[t+1 .. t+horizon]`` (NaN past the end)."""
    r = np.asarray(log_returns, dtype=float)
    out = np.full((r.size, horizon), np.nan)
    for i in range(1, horizon + 1):
        out[: r.size - i, i - 1] = r[i:]
    return out


def weighted_rewards(fwd: np.ndarray, actions: Sequence[float], weights: Sequence[float] = REWARD_WEIGHTS) -> np.ndarray:
    """Eq. 4.1, ``[T, A]``: ``a * sum_i w_i r_{t+i}`` (``fwd`` from :func:`forward_returns`)."""
    w = np.asarray(weights, dtype=float)
    return (fwd[:, : w.size] @ w)[:, None] * np.asarray(actions, dtype=float)[None, :]


def sharpe_rewards(fwd: np.ndarray, actions: Sequence[float], days: int = SHARPE_DAYS) -> np.ndarray:
    """Eq. 4.3, ``[T, A]``: annualised Sharpe of ``a * r_{t+1..t+days}`` = ``sign(a) * mean / std * sqrt(252)``
    (std with ddof=1; 0 when the week is flat)."""
    r = fwd[:, :days]
    sd = r.std(axis=1, ddof=1)
    sr = np.divide(r.mean(axis=1), sd, out=np.zeros_like(sd), where=sd > 0) * np.sqrt(252.0)
    return sr[:, None] * np.sign(np.asarray(actions, dtype=float))[None, :]


@numba.njit(cache=True)
def _train_q(states, rewards, n_states, epochs, alpha, epsilon, seed):  # pragma: no cover - compiled
    np.random.seed(seed)
    n, a = rewards.shape
    q = np.zeros((n_states, a))
    for _ in range(epochs):
        for t in range(n):
            s = states[t]
            if np.random.random() < epsilon:
                act = np.random.randint(a)
            else:
                act = 0
                for j in range(1, a):
                    if q[s, j] > q[s, act]:
                        act = j
            q[s, act] = (1.0 - alpha) * q[s, act] + alpha * rewards[t, act]
    return q


def train_q(states: np.ndarray, rewards: np.ndarray, n_states: int, epochs: int, alpha: float = 0.1,
            epsilon: float = 0.3, seed: int = 0) -> np.ndarray:
    """The Q table ``[n_states, A]`` after ``epochs`` epsilon-greedy passes over the rows in order.

    Row t: state ``states[t]`` (0 .. n_states-1), rewards ``rewards[t, a]`` of every action (only the chosen
    one is used). Explore (uniform action) with probability ``epsilon``, else greedy (first maximal Q);
    update ``Q[s, a] <- (1 - alpha) Q[s, a] + alpha * r``. Compiled (numba): the loop is sequential by
    nature, 9.6 M updates take ~0.1 s. Same inputs and seed -> same table."""
    s = np.ascontiguousarray(states, dtype=np.int64)
    r = np.ascontiguousarray(rewards, dtype=np.float64)
    if s.ndim != 1 or r.ndim != 2 or r.shape[0] != s.size:
        raise ValueError(f"states [N] and rewards [N, A] expected, got {s.shape} and {r.shape}")
    if s.size and (s.min() < 0 or s.max() >= n_states):
        raise ValueError(f"states must lie in [0, {n_states})")
    if not np.isfinite(r).all():
        raise ValueError("rewards must be finite (drop rows whose horizon is incomplete)")
    return _train_q(s, r, int(n_states), int(epochs), float(alpha), float(epsilon), int(seed))


def greedy_policy(q: np.ndarray, visited: np.ndarray, actions: Sequence[float], default: float) -> np.ndarray:
    """``[S]`` exposure per state: the action with the largest Q (first on ties); ``default`` for states
    never visited in training."""
    acts = np.asarray(actions, dtype=float)[np.argmax(q, axis=1)]
    return np.where(np.asarray(visited, dtype=bool), acts, default)


@dataclass(frozen=True)
class QMember:
    """One fitted model: clustering of the ``columns`` state, Q table and greedy exposure per cluster."""

    name: str
    simulation: str
    method: str
    k: int
    reward: str
    actions: tuple[float, ...]
    columns: tuple[str, ...]
    clusters: ClusterModel
    q: np.ndarray
    policy: np.ndarray  # [k] exposure per cluster
    default_action: float
    visits: np.ndarray  # [k] fit rows per cluster

    def states(self, state: pl.DataFrame) -> np.ndarray:
        """Cluster id per row of a :func:`state_frame` (-1 where a column is not finite)."""
        return assign(self.clusters, state.select(self.columns).to_numpy().astype(float))

    def exposure(self, state: pl.DataFrame) -> np.ndarray:
        """Greedy exposure to the asset per row (``default_action`` for -1 states)."""
        s = self.states(state)
        return np.where(s >= 0, self.policy[np.maximum(s, 0)], self.default_action)


def fit_member(state_fit: pl.DataFrame, fwd_fit: np.ndarray, columns: Sequence[str], sim: Simulation,
               method: str, k: int, config: QLearningConfig, clusters: ClusterModel | None = None) -> QMember:
    """Cluster the fit rows and train the Q table of one (simulation, method, k). ``fwd_fit``: future log
    returns of each fit row (:func:`forward_returns`), finite for every row that trains. ``clusters``: a
    clustering already fitted on the same rows (simulations sharing (method, k) share it)."""
    x = state_fit.select(list(columns)).to_numpy().astype(float)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(fwd_fit).all(axis=1)
    clusters = clusters or fit_clusters(x[ok], k, method, seed=config.seed)
    s = assign(clusters, x[ok])
    r = (weighted_rewards if sim.reward == "weighted" else sharpe_rewards)(fwd_fit[ok], sim.actions)
    epochs = max(1, int(round(sim.epochs * config.epochs_scale)))
    q = train_q(s, r, k, epochs, config.alpha, config.epsilon, seed=config.seed + k)
    visits = np.bincount(s, minlength=k)
    return QMember(
        name=f"{sim.name}_{method}_k{k}", simulation=sim.name, method=method, k=k, reward=sim.reward,
        actions=tuple(sim.actions), columns=tuple(columns), clusters=clusters, q=q,
        policy=greedy_policy(q, visits > 0, sim.actions, config.default_action),
        default_action=config.default_action, visits=visits,
    )


@dataclass(frozen=True)
class QLearningBook:
    """Every member fitted on one window, the columns kept by the elimination, and what was chosen on the
    validation data (``best``: the best single member; ``stack``: the members averaged by the model of
    models - the best of each simulation; ``switch``: the VIX switcher's window and threshold)."""

    columns: tuple[str, ...]
    members: dict[str, QMember]
    fit_window: tuple[str, str]
    best: str = ""
    stack: tuple[str, ...] = ()
    switch: dict = field(default_factory=dict)

    def exposures(self, state: pl.DataFrame, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """``{member: [N] exposure}`` for the rows of a :func:`state_frame`."""
        return {n: self.members[n].exposure(state) for n in (names or self.members)}


def fit_book(state: pl.DataFrame, fit_end: int, config: QLearningConfig | None = None,
             log=None) -> QLearningBook:
    """Fit every (simulation, method, k) member on rows ``[0, fit_end)`` of ``state`` (a :func:`state_frame`
    sliced to the fit window; its ``ret_1d`` gives the rewards). Rows whose reward horizon passes
    ``fit_end`` do not train. ``log``: optional progress callback (one line per simulation)."""
    cfg = config or QLearningConfig()
    fit = state.slice(0, fit_end)
    lr = fit["ret_1d"].to_numpy().astype(float)
    fwd = forward_returns(lr)
    columns = eliminate_correlated(fit.select(STATE_COLUMNS).to_numpy().astype(float), STATE_COLUMNS, cfg.max_corr)
    members: dict[str, QMember] = {}
    fitted: dict[tuple[str, int], ClusterModel] = {}
    for sim in cfg.simulations:
        for method in cfg.methods:
            for k in sim.ks:
                m = fit_member(fit, fwd, columns, sim, method, k, cfg, fitted.get((method, k)))
                fitted[(method, k)] = m.clusters
                members[m.name] = m
        if log is not None:
            log(f"Q-learning {sim.name}: {len(sim.ks) * len(cfg.methods)} models "
                f"(k {list(sim.ks)}, {sim.reward} reward, {sim.epochs} epochs)")
    window = (str(fit["date"][0]), str(fit["date"][-1]))
    return QLearningBook(columns=columns, members=members, fit_window=window)


def member_table(book: QLearningBook, scores: Mapping[str, float] | None = None) -> pl.DataFrame:
    """One row per member: simulation, method, k, reward, the columns, visits and greedy exposure per cluster
    (JSON lists), its validation score and whether it is the best single model / a stack member."""
    rows = []
    for name, m in book.members.items():
        rows.append({
            "member": name, "simulation": m.simulation, "method": m.method, "k": m.k, "reward": m.reward,
            "actions": ",".join(f"{a:g}" for a in m.actions), "columns": ",".join(m.columns),
            "cluster_exposure": ",".join(f"{a:g}" for a in m.policy),
            "cluster_visits": ",".join(str(int(v)) for v in m.visits),
            "validation_score": float((scores or {}).get(name, np.nan)),
            "is_best": name == book.best, "in_stack": name in book.stack,
        })
    return pl.DataFrame(rows)


def choose(book: QLearningBook, scores: Mapping[str, float], switch: Mapping | None = None) -> QLearningBook:
    """Record what validation ``scores`` (e.g. the validation Sharpe of each member's book) choose: the best
    single member and, for the model of models, the best member of each simulation. NaN scores lose."""
    def key(n: str) -> float:
        v = scores.get(n, np.nan)
        return -np.inf if not np.isfinite(v) else float(v)

    names = list(book.members)
    best = max(names, key=key)
    stack = tuple(max((n for n in names if book.members[n].simulation == s), key=key)
                  for s in dict.fromkeys(book.members[n].simulation for n in names))
    return replace(book, best=best, stack=stack, switch=dict(switch or {}))


def rows_at(state: pl.DataFrame, dates: np.ndarray) -> pl.DataFrame:
    """The :func:`state_frame` rows at ``dates`` (``datetime64[D]``, e.g. a panel's decision rows), in that
    order; a date without a row gets nulls (its exposure is then ``default_action``)."""
    want = pl.DataFrame({"date": pl.Series(np.asarray(dates, dtype="datetime64[D]")).cast(pl.Date)})
    return want.join(state.with_columns(pl.col("date").cast(pl.Date)), on="date", how="left", maintain_order="left")


#: The book's strategies in the evaluation (SPY exposures; E.L. = 2× the model of models).
BOOK_STRATEGIES: tuple[str, ...] = ("q_best", "q_stack", "q_stack_switch", "q_el", "q_el_switch")


def book_exposures(book: QLearningBook, rows: pl.DataFrame, switched: np.ndarray) -> dict[str, np.ndarray]:
    """``{strategy: [n]}`` exposures of :data:`BOOK_STRATEGIES` for the :func:`rows_at` rows of a window;
    ``switched`` (``[n]`` bool): the days the VIX switcher is on (the default exposure replaces the proposal)."""
    from ml.strategies.stacking import extra_leverage, model_of_models
    from ml.strategies.vix_switcher import apply_switch

    if not book.best or not book.stack:
        raise ValueError("the Q-learning book has no chosen members (ml.agents.qlearning.choose was not applied)")
    expo = book.exposures(rows, list(dict.fromkeys([book.best, *book.stack])))
    stack = model_of_models({n: expo[n] for n in book.stack})
    default = float(book.switch.get("default", book.members[book.best].default_action))
    el = extra_leverage(stack)
    return {"q_best": expo[book.best], "q_stack": stack, "q_stack_switch": apply_switch(stack, switched, default),
            "q_el": el, "q_el_switch": apply_switch(el, switched, default)}

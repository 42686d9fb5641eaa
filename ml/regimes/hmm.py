"""Sector hidden-Markov regimes: Bull / Sideways / Bear per GICS sector, fitted per fold.

Pipeline: :func:`sector_groups` -> :func:`hmm_observations` (per sector × date) ->
:func:`fit_sector_hmm` on the fold's train rows -> :func:`forward_filter` (causal probabilities)
-> :func:`hmm_report`. :func:`fit_sector_hmms` / :func:`sector_filtered_probabilities` /
:func:`hmm_report_frames` do the same for every sector at once (frames with a ``sector`` column).

Timing convention. An observation dated t uses closes up to and including the close of t (trailing
``window``-day windows, warm-up rows null). Filtered probabilities dated t are
P(state_t | obs_1..t): known at the close of t. hmmlearn's ``predict``/``predict_proba`` are
*smoothed* (they use obs after t) and must never feed a model; they are used only in tests.
The scaler and the HMM are fitted on the fold's train window only and saved in :class:`FittedHMM`.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import polars as pl
from hmmlearn.hmm import GaussianHMM  # loaded before threadpool_limits so the cap applies
from pydantic import BaseModel, ConfigDict, Field
from threadpoolctl import threadpool_limits

from ml.data.universe import SECTOR_ETFS

log = logging.getLogger(__name__)

#: Observation columns (units: daily simple-return fraction, correlation -1..1, daily return std).
OBS_COLUMNS: tuple[str, str, str] = ("ret_mean", "corr_mean", "vol")
HMM_OBS_SCHEMA: dict[str, pl.DataType] = {
    "sector": pl.Utf8,
    "date": pl.Date,
    "ret_mean": pl.Float64,
    "corr_mean": pl.Float64,
    "vol": pl.Float64,
}
GroupMode = Literal["etf", "basket"]


class HmmConfig(BaseModel):
    """Sector-HMM settings. ``window``: trailing trading days of every observation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: GroupMode = "etf"
    window: int = Field(default=20, ge=2, le=252)
    market_ticker: str = "SPY"
    n_states: int = Field(default=3, ge=2, le=8)
    restarts: int = Field(default=5, ge=1, le=50)
    seed: int = 0
    n_iter: int = Field(default=100, ge=1)
    tol: float = Field(default=1e-2, gt=0)
    min_train_obs: int = Field(default=250, ge=10)
    n_jobs: int = Field(default=1, ge=1)  # worker processes across sectors (fits are single-threaded)


# ----------------------------------------------------------------------------- groups
def sector_groups(bars: pl.DataFrame, sectors: pl.DataFrame, mode: GroupMode = "etf") -> pl.DataFrame:
    """Group membership ``(sector, ticker)``: one group per GICS sector present in ``bars``.

    ``etf`` (default): the sector's SPDR ETF (``SECTOR_ETFS``). ``basket``: the stocks of
    ``sectors`` with that ``gics_sector`` (sector ETFs excluded), equal-weighted.
    """
    present = set(bars.get_column("ticker").unique().to_list())
    if mode == "etf":
        rows = [(sec, t) for t, sec in SECTOR_ETFS.items() if t in present]
    elif mode == "basket":
        rows = [
            (sec, t)
            for t, sec in sectors.select("ticker", "gics_sector").iter_rows()
            if t in present and t not in SECTOR_ETFS and sec is not None
        ]
    else:
        raise ValueError(f"mode must be 'etf' or 'basket', got {mode!r}")
    return pl.DataFrame(rows, schema={"sector": pl.Utf8, "ticker": pl.Utf8}, orient="row").sort("sector", "ticker")


# ----------------------------------------------------------------------------- observations
def _rolling_sum(x: np.ndarray, w: int) -> np.ndarray:
    """Trailing w-row sums along axis 0 (rows < w-1 are NaN). ``x`` must be finite."""
    c = np.cumsum(x, axis=0, dtype=float)
    out = np.full(x.shape, np.nan)
    if x.shape[0] >= w:
        out[w - 1] = c[w - 1]
        out[w:] = c[w:] - c[:-w]
    return out


def _rolling_mean_std(g: np.ndarray, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Trailing mean and sample std (ddof=1) of a 1-D series; NaN unless all w values are finite."""
    ok = np.isfinite(g)
    g0 = np.where(ok, g, 0.0)
    n = _rolling_sum(ok.astype(float), w)
    s = _rolling_sum(g0, w)
    mean = s / w
    # sum((x - mean)^2) = sum(x^2) - w * mean^2 (daily returns ~1e-2: no harmful cancellation)
    ss = _rolling_sum(g0 * g0, w)
    var = np.maximum(ss - w * mean * mean, 0.0) / (w - 1)
    bad = ~(n == w)
    mean[bad] = np.nan
    var[bad] = np.nan
    return mean, np.sqrt(var)


def _mean_pairwise_corr(r: np.ndarray, w: int) -> np.ndarray:
    """Mean trailing-w correlation over column pairs that have all w returns (T×n -> T)."""
    t, n = r.shape
    m = np.isfinite(r).astype(float)
    x = np.where(m > 0, r, 0.0)
    mm = m[:, :, None] * m[:, None, :]
    cnt = _rolling_sum(mm, w)
    sx = _rolling_sum(x[:, :, None] * m[:, None, :], w)  # sum x_i over days where both present
    sxx = _rolling_sum((x * x)[:, :, None] * m[:, None, :], w)
    sxy = _rolling_sum(x[:, :, None] * x[:, None, :], w)
    sy = np.swapaxes(sx, 1, 2)
    syy = np.swapaxes(sxx, 1, 2)
    cov = w * sxy - sx * sy
    den = np.sqrt(np.maximum(w * sxx - sx * sx, 0.0) * np.maximum(w * syy - sy * sy, 0.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.clip(cov / den, -1.0, 1.0)
    valid = (cnt == w) & (den > 0) & ~np.eye(n, dtype=bool)[None]
    c = np.where(valid, c, 0.0)
    k = valid.sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        out = c.sum(axis=(1, 2)) / k
    out[k == 0] = np.nan
    return out


def hmm_observations(
    bars: pl.DataFrame,
    groups: pl.DataFrame,
    *,
    window: int = 20,
    market_ticker: str = "SPY",
) -> pl.DataFrame:
    """HMM observations per (sector, date) on the trading calendar of ``bars`` (all its dates).

    * ``ret_mean``: trailing ``window``-day mean of the group's equal-weighted daily simple
      return (fraction per day; the group return of day t averages members with a close on t-1 and t).
    * ``corr_mean``: mean pairwise correlation of the members' daily returns over the window
      (pairs with all ``window`` returns); a one-member group uses its correlation to ``market_ticker``.
    * ``vol``: trailing ``window``-day sample std of the group's daily return (fraction per day).

    Causal: the row dated t uses closes <= t only. Warm-up / missing rows are null.
    Output schema :data:`HMM_OBS_SCHEMA`, sorted by sector then date.
    """
    members = groups.group_by("sector", maintain_order=True).agg(pl.col("ticker"))
    needed = set(groups.get_column("ticker").to_list()) | {market_ticker}
    sub = bars.filter(pl.col("ticker").is_in(list(needed))).select("ticker", "date", "close")
    calendar = bars.get_column("date").unique().sort()
    wide = (
        pl.DataFrame({"date": calendar})
        .join(sub.pivot(on="ticker", index="date", values="close"), on="date", how="left")
        .sort("date")
    )
    close = {c: wide.get_column(c).to_numpy().astype(float) for c in wide.columns if c != "date"}

    def _ret(t: str) -> np.ndarray:
        c = close.get(t)
        if c is None:
            return np.full(wide.height, np.nan)
        r = np.full(c.shape, np.nan)
        with np.errstate(invalid="ignore", divide="ignore"):
            r[1:] = c[1:] / c[:-1] - 1.0
        r[~np.isfinite(r)] = np.nan
        return r

    frames = []
    for sector, tickers in members.iter_rows():
        r = np.column_stack([_ret(t) for t in tickers])
        ok = np.isfinite(r)
        with np.errstate(invalid="ignore"):
            g = np.where(ok.any(axis=1), np.nansum(r, axis=1) / np.maximum(ok.sum(axis=1), 1), np.nan)
        mean, vol = _rolling_mean_std(g, window)
        pair = r if r.shape[1] >= 2 else np.column_stack([r[:, 0], _ret(market_ticker)])
        corr = _mean_pairwise_corr(pair, window)
        frames.append(
            pl.DataFrame(
                {"sector": sector, "date": wide.get_column("date"), "ret_mean": mean, "corr_mean": corr, "vol": vol},
                nan_to_null=True,
            )
        )
    if not frames:
        return pl.DataFrame(schema=HMM_OBS_SCHEMA)
    out = pl.concat(frames).select([pl.col(c).cast(t) for c, t in HMM_OBS_SCHEMA.items()])
    return out.sort("sector", "date")


# ----------------------------------------------------------------------------- fitting
def state_names(n_states: int) -> tuple[str, ...]:
    """Bull (highest mean return) … Bear (lowest): 2 -> Bull/Bear, 3 -> Bull/Sideways/Bear."""
    if n_states == 2:
        return ("Bull", "Bear")
    if n_states == 3:
        return ("Bull", "Sideways", "Bear")
    return ("Bull", *[f"Sideways{i}" for i in range(1, n_states - 1)], "Bear")


@dataclass(frozen=True)
class FittedHMM:
    """A Gaussian HMM (diagonal covariances) fitted on standardised observations.

    States are ordered Bull … Bear (descending mean of the first observation column, the mean
    return). ``means``/``covars`` (variances) are in standardised units; ``scaler_mean`` /
    ``scaler_scale`` map original -> standardised: z = (x - mean) / scale (fitted on train rows).
    ``converged``: EM convergence of the kept (best log-likelihood) restart, strict: the last EM
    step improved the log-likelihood by less than ``tol`` (hmmlearn's ``monitor_.converged`` is
    also True when EM merely hit ``n_iter``; that flag is kept in ``restart_monitor_converged``).
    ``restart_converged`` / ``restart_log_likelihoods`` / ``restart_iterations``: every restart.
    """

    state_names: tuple[str, ...]
    startprob: np.ndarray
    transmat: np.ndarray
    means: np.ndarray
    covars: np.ndarray
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    feature_names: tuple[str, ...]
    log_likelihood: float
    converged: bool
    restart_converged: tuple[bool, ...]
    restart_monitor_converged: tuple[bool, ...]
    restart_log_likelihoods: tuple[float, ...]
    restart_iterations: tuple[int, ...]
    best_restart: int
    n_obs: int
    seed: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_states(self) -> int:
        return len(self.state_names)

    def standardize(self, obs: np.ndarray) -> np.ndarray:
        return (np.asarray(obs, dtype=float) - self.scaler_mean) / self.scaler_scale

    def means_original(self) -> np.ndarray:
        """State means in original observation units (K × F)."""
        return self.means * self.scaler_scale + self.scaler_mean

    def stds_original(self) -> np.ndarray:
        """State standard deviations in original observation units (K × F)."""
        return np.sqrt(self.covars) * self.scaler_scale

    def to_hmmlearn(self):
        """An equivalent ``hmmlearn.hmm.GaussianHMM`` (standardised units; tests / diagnostics only)."""
        m = GaussianHMM(n_components=self.n_states, covariance_type="diag", init_params="", params="")
        m.n_features = self.means.shape[1]
        m.startprob_ = self.startprob.copy()
        m.transmat_ = self.transmat.copy()
        m.means_ = self.means.copy()
        m.covars_ = self.covars.copy()
        return m

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FittedHMM:
        """Inverse of :meth:`to_dict` (extra keys go to ``meta``)."""
        arrays = ("startprob", "transmat", "means", "covars", "scaler_mean", "scaler_scale")
        tuples = ("restart_converged", "restart_monitor_converged", "restart_log_likelihoods", "restart_iterations")
        known = {"state_names", "feature_names", "log_likelihood", "converged", "best_restart", "n_obs", "seed"}
        return cls(
            state_names=tuple(d["state_names"]),
            feature_names=tuple(d["feature_names"]),
            log_likelihood=float(d["log_likelihood"]),
            converged=bool(d["converged"]),
            best_restart=int(d["best_restart"]),
            n_obs=int(d["n_obs"]),
            seed=int(d["seed"]),
            **{k: np.asarray(d[k], dtype=float) for k in arrays},
            **{k: tuple(d[k]) for k in tuples},
            meta={k: v for k, v in d.items() if k not in known | set(arrays) | set(tuples)},
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly parameters and diagnostics (lists instead of arrays)."""
        return {
            "state_names": list(self.state_names),
            "startprob": self.startprob.tolist(),
            "transmat": self.transmat.tolist(),
            "means": self.means.tolist(),
            "covars": self.covars.tolist(),
            "scaler_mean": self.scaler_mean.tolist(),
            "scaler_scale": self.scaler_scale.tolist(),
            "feature_names": list(self.feature_names),
            "log_likelihood": self.log_likelihood,
            "converged": self.converged,
            "restart_converged": list(self.restart_converged),
            "restart_monitor_converged": list(self.restart_monitor_converged),
            "restart_log_likelihoods": list(self.restart_log_likelihoods),
            "restart_iterations": list(self.restart_iterations),
            "best_restart": self.best_restart,
            "n_obs": self.n_obs,
            "seed": self.seed,
            **self.meta,
        }


def fit_sector_hmm(
    obs_train: np.ndarray,
    n_states: int = 3,
    restarts: int = 5,
    seed: int = 0,
    *,
    n_iter: int = 100,
    tol: float = 1e-2,
    feature_names: Sequence[str] = OBS_COLUMNS,
) -> FittedHMM:
    """Fit a diagonal Gaussian HMM on one sector's train-window observations (T × F, original units).

    Rows with a non-finite value are dropped (the rest is treated as one sequence). The
    standardiser is fitted on these rows. ``restarts`` EM runs with random states ``seed + r``;
    the run with the highest log-likelihood is kept; non-converged runs are logged and reported.
    States are relabelled Bull … Bear by descending mean of column 0 (mean return).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    x = np.asarray(obs_train, dtype=float)
    if x.ndim != 2:
        raise ValueError("obs_train must be a 2-D array (T × F)")
    x = x[np.isfinite(x).all(axis=1)]
    if x.shape[0] < max(10, 3 * n_states):
        raise ValueError(f"too few finite observations to fit an HMM: {x.shape[0]}")
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu) / sd

    best = None
    lls, convs, mconvs, iters = [], [], [], []
    for r in range(restarts):
        # "scaling" forward-backward is ~3x faster than "log" for EM; the filter below is log-space.
        m = GaussianHMM(
            n_components=n_states,
            covariance_type="diag",
            n_iter=n_iter,
            tol=tol,
            random_state=seed + r,
            implementation="scaling",
        )
        try:
            # one thread: tiny arrays, and OpenMP spinning (k-means init) is very slow on a busy machine
            with threadpool_limits(limits=1):
                m.fit(z)
                ll = float(m.score(z))
            if not np.isfinite(ll):
                raise ValueError(f"non-finite log-likelihood {ll}")
        except (ValueError, np.linalg.LinAlgError) as exc:  # degenerate restart
            log.warning("HMM restart %d failed: %s", r, exc)
            lls.append(float("-inf"))
            convs.append(False)
            mconvs.append(False)
            iters.append(0)
            continue
        hist = list(m.monitor_.history)
        conv = len(hist) >= 2 and hist[-1] - hist[-2] < tol
        if not conv:
            log.warning("HMM restart %d did not converge in %d iterations (ll=%.2f)", r, n_iter, ll)
        lls.append(ll)
        convs.append(bool(conv))
        mconvs.append(bool(m.monitor_.converged))
        iters.append(int(m.monitor_.iter))
        if best is None or ll > lls[best[0]]:
            best = (r, m)
    if best is None:
        raise RuntimeError("every HMM restart failed")
    r_best, m = best
    means = np.asarray(m.means_, dtype=float)
    covars = np.diagonal(np.asarray(m.covars_, dtype=float), axis1=1, axis2=2).copy()
    order = np.argsort(-means[:, 0], kind="stable")
    return FittedHMM(
        state_names=state_names(n_states),
        startprob=np.asarray(m.startprob_, dtype=float)[order],
        transmat=np.asarray(m.transmat_, dtype=float)[np.ix_(order, order)],
        means=means[order],
        covars=covars[order],
        scaler_mean=mu,
        scaler_scale=sd,
        feature_names=tuple(feature_names),
        log_likelihood=lls[r_best],
        converged=convs[r_best],
        restart_converged=tuple(convs),
        restart_monitor_converged=tuple(mconvs),
        restart_log_likelihoods=tuple(lls),
        restart_iterations=tuple(iters),
        best_restart=r_best,
        n_obs=int(x.shape[0]),
        seed=seed,
        meta={"fit_seconds": time.perf_counter() - t0, "fit_cpu_seconds": time.process_time() - c0},
    )


# ----------------------------------------------------------------------------- filtering
def _param(p: FittedHMM | Mapping[str, Any], name: str) -> np.ndarray:
    v = getattr(p, name) if isinstance(p, FittedHMM) else p[name]
    return np.asarray(v, dtype=float)


def forward_filter(
    model_params: FittedHMM | Mapping[str, Any], obs: np.ndarray, *, standardized: bool = False
) -> np.ndarray:
    """Causal filtered state probabilities P(state_t | obs_1..t), T × K (states in model order).

    ``model_params``: a :class:`FittedHMM` or a mapping with ``startprob``, ``transmat``,
    ``means``, ``covars`` (diagonal variances) and, unless ``standardized``, ``scaler_mean`` /
    ``scaler_scale``. ``obs``: T × F in original units. Log-space forward recursion:
    log α_t(j) = log b_t(j) + logsumexp_i(log α_{t-1}(i) + log A_ij), normalised every step
    (so α_t is the filtered distribution). Rows before the first finite observation are NaN; a
    later non-finite row carries no evidence (the one-step prediction from t-1 is propagated).
    """
    log_pi, log_a, log_b, ok = _log_terms(model_params, obs, standardized)
    return _filter_batch(log_pi[None], log_a[None], log_b[None], ok[None])[0]


def _log_terms(
    p: FittedHMM | Mapping[str, Any], obs: np.ndarray, standardized: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """log startprob (K), log transmat (K×K), log emission densities (T×K), finite-row mask (T)."""
    x = np.asarray(obs, dtype=float)
    if not standardized:
        x = (x - _param(p, "scaler_mean")) / _param(p, "scaler_scale")
    means = _param(p, "means")
    var = _param(p, "covars")
    if var.ndim == 3:  # full matrices of a diagonal model
        var = np.diagonal(var, axis1=1, axis2=2)
    with np.errstate(divide="ignore"):
        log_a = np.log(_param(p, "transmat"))
        log_pi = np.log(_param(p, "startprob"))
    ok = np.isfinite(x).all(axis=1)
    # log N(x_t | mu_k, diag var_k)
    diff = x[:, None, :] - means[None, :, :]
    log_b = -0.5 * (np.sum(np.log(2.0 * np.pi * var), axis=1)[None, :] + np.sum(diff * diff / var[None], axis=2))
    log_b[~ok] = 0.0
    return log_pi, log_a, log_b, ok


def _lse(a: np.ndarray) -> np.ndarray:
    """logsumexp over the last axis (keepdims)."""
    m = a.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    return m + np.log(np.exp(a - m).sum(axis=-1, keepdims=True))


def _filter_batch(log_pi: np.ndarray, log_a: np.ndarray, log_b: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Forward filter for S independent models at once (one Python loop over time).

    Shapes: log_pi S×K, log_a S×K×K, log_b S×T×K, ok S×T. Returns S×T×K probabilities.
    """
    s_len, t_len, k = log_b.shape
    if t_len == 0:  # no observation yet (e.g. history truncated before a sector's first bar)
        return np.zeros((s_len, 0, k))
    start = np.where(ok.any(axis=1), ok.argmax(axis=1), t_len)
    out = np.full((s_len, t_len, k), np.nan)
    prev = np.full((s_len, k), -np.inf)
    trans = np.exp(log_a)
    with np.errstate(divide="ignore", invalid="ignore"):  # -inf rows of models not started yet
        for t in range(int(start.min()) if s_len else t_len, t_len):
            # logsumexp_i(prev_i + log A_ij), written as m + log(sum_i exp(prev_i - m) A_ij)
            m = prev.max(axis=1, keepdims=True)
            m = np.where(np.isfinite(m), m, 0.0)
            pred = m + np.log(np.matmul(np.exp(prev - m)[:, None, :], trans)[:, 0, :])
            pred = np.where((t == start)[:, None], log_pi, pred)
            a = pred + log_b[:, t]
            a = a - _lse(a)
            started = (t >= start)[:, None]
            prev = np.where(started, a, -np.inf)
            out[:, t] = np.where(started, a, np.nan)
    return np.exp(out)


# ----------------------------------------------------------------------------- reporting
def hmm_report(fitted: FittedHMM, filtered: np.ndarray, dates: Sequence[Any] | pl.Series) -> dict[str, Any]:
    """Metadata of one fitted HMM and its filtered path over ``dates`` (aligned with ``filtered``).

    Returns ``{"summary": dict, "transitions": frame(from_state, to_state, probability),
    "states": frame(state, state_index, start_probability, expected_duration_days,
    share_of_days, mean_probability, mean_<obs>, std_<obs> …)}``. Durations are
    1 / (1 - p_ii) trading days; state means/stds are in original observation units; the share
    of days counts rows (with finite probabilities) whose most likely filtered state is the state.
    """
    p = np.asarray(filtered, dtype=float)
    d = pl.Series("date", dates).cast(pl.Date) if not isinstance(dates, pl.Series) else dates.cast(pl.Date)
    if len(d) != p.shape[0]:
        raise ValueError("dates and filtered probabilities must have the same length")
    ok = np.isfinite(p).all(axis=1)
    k = fitted.n_states
    names = list(fitted.state_names)
    argmax = p[ok].argmax(axis=1) if ok.any() else np.array([], dtype=int)
    share = np.bincount(argmax, minlength=k) / max(int(ok.sum()), 1)
    diag = np.diag(fitted.transmat)
    with np.errstate(divide="ignore"):
        duration = np.where(diag < 1.0, 1.0 / (1.0 - diag), np.inf)
    mo, so = fitted.means_original(), fitted.stds_original()
    states = {
        "state": names,
        "state_index": list(range(k)),
        "start_probability": fitted.startprob.tolist(),
        "expected_duration_days": duration.tolist(),
        "share_of_days": share.tolist(),
        "mean_probability": (p[ok].mean(axis=0) if ok.any() else np.full(k, np.nan)).tolist(),
    }
    for j, f in enumerate(fitted.feature_names):
        states[f"mean_{f}"] = mo[:, j].tolist()
        states[f"std_{f}"] = so[:, j].tolist()
    transitions = pl.DataFrame(
        {
            "from_state": [a for a in names for _ in names],
            "to_state": names * k,
            "probability": fitted.transmat.reshape(-1).tolist(),
        }
    )
    dv = d.filter(pl.Series(ok)) if ok.any() else d.head(0)
    summary = {
        "n_states": k,
        "log_likelihood": fitted.log_likelihood,
        "converged": fitted.converged,
        "restarts": len(fitted.restart_converged),
        "restarts_converged": int(sum(fitted.restart_converged)),
        "best_restart": fitted.best_restart,
        "n_train_obs": fitted.n_obs,
        "n_filtered_days": int(ok.sum()),
        "first_date": dv.min() if len(dv) else None,
        "last_date": dv.max() if len(dv) else None,
    }
    return {"summary": summary, "transitions": transitions, "states": pl.DataFrame(states)}


# ----------------------------------------------------------------------------- all sectors
def prob_columns(names: Sequence[str]) -> list[str]:
    """Probability column names, e.g. ``p_bull``, ``p_sideways``, ``p_bear``."""
    return [f"p_{n.lower()}" for n in names]


def fit_sector_hmms(
    obs: pl.DataFrame,
    train_start: Any,
    train_end: Any,
    config: HmmConfig | None = None,
) -> dict[str, FittedHMM]:
    """Fit one HMM per sector on its observation rows with train_start <= date <= train_end.

    ``obs``: :func:`hmm_observations` output. Sectors with fewer than ``config.min_train_obs``
    complete rows in the window (e.g. XLC before 2019) are skipped with a log message.
    """
    cfg = config or HmmConfig()
    train = obs.filter(pl.col("date").is_between(train_start, train_end)).drop_nulls(list(OBS_COLUMNS))
    data = {}
    for sector in sorted(obs.get_column("sector").unique().to_list()):
        x = train.filter(pl.col("sector") == sector).sort("date").select(OBS_COLUMNS).to_numpy()
        if x.shape[0] < cfg.min_train_obs:
            log.info("sector %s: %d train observations < %d, no HMM", sector, x.shape[0], cfg.min_train_obs)
            continue
        data[sector] = x
    kw = dict(n_states=cfg.n_states, restarts=cfg.restarts, seed=cfg.seed, n_iter=cfg.n_iter, tol=cfg.tol)
    if cfg.n_jobs > 1 and len(data) > 1:
        from joblib import Parallel, delayed

        fits = Parallel(n_jobs=cfg.n_jobs, backend="loky")(delayed(fit_sector_hmm)(x, **kw) for x in data.values())
    else:
        fits = [fit_sector_hmm(x, **kw) for x in data.values()]
    return dict(zip(data, fits))


def _obs_matrix(frame: pl.DataFrame, fitted: FittedHMM) -> np.ndarray:
    return frame.select(fitted.feature_names).to_numpy().astype(float)


def sector_filtered_probabilities(fitted: Mapping[str, FittedHMM], obs: pl.DataFrame) -> pl.DataFrame:
    """Filtered probabilities for every fitted sector over all its observation dates.

    Columns: ``sector``, ``date``, ``p_<state>`` (one per state, Bull first), ``state`` (most
    likely filtered state name; null during warm-up). Known at the close of ``date``.
    """
    frames = []
    sectors = list(fitted)
    parts = {sec: obs.filter(pl.col("sector") == sec).sort("date") for sec in sectors}
    same_shape = len({(parts[sec].height, fitted[sec].n_states) for sec in sectors}) == 1
    if sectors and same_shape:  # one batched loop over time for every sector
        terms = [_log_terms(fitted[sec], _obs_matrix(parts[sec], fitted[sec]), False) for sec in sectors]
        batch = _filter_batch(*(np.stack(z) for z in zip(*terms)))
        probs = dict(zip(sectors, batch))
    else:
        probs = {sec: forward_filter(fitted[sec], _obs_matrix(parts[sec], fitted[sec])) for sec in sectors}
    for sector, f in fitted.items():
        s = parts[sector]
        p = probs[sector]
        ok = np.isfinite(p).all(axis=1)
        names = np.array(f.state_names, dtype=object)
        state = np.where(ok, names[np.nan_to_num(p, nan=0.0).argmax(axis=1)], None)
        cols = {c: p[:, j] for j, c in enumerate(prob_columns(f.state_names))}
        frames.append(
            pl.DataFrame(
                {
                    "sector": sector,
                    "date": s.get_column("date"),
                    **cols,
                    "state": pl.Series(state.tolist(), dtype=pl.Utf8),
                },
                nan_to_null=True,
            )
        )
    if not frames:
        return pl.DataFrame(schema={"sector": pl.Utf8, "date": pl.Date, "state": pl.Utf8})
    return pl.concat(frames, how="diagonal_relaxed").sort("sector", "date")


def hmm_report_frames(
    fitted: Mapping[str, FittedHMM], probs: pl.DataFrame, dates: Any | None = None
) -> dict[str, pl.DataFrame]:
    """:func:`hmm_report` for every sector, stacked with a ``sector`` column.

    ``probs``: :func:`sector_filtered_probabilities` output; ``dates`` (optional, a (start, end)
    pair) restricts the share-of-days statistics, e.g. to the test window.
    Returns ``{"summary", "transitions", "states"}`` frames.
    """
    summaries, trans, states = [], [], []
    for sector, f in fitted.items():
        s = probs.filter(pl.col("sector") == sector)
        if dates is not None:
            s = s.filter(pl.col("date").is_between(dates[0], dates[1]))
        p = s.select(prob_columns(f.state_names)).to_numpy().astype(float)
        rep = hmm_report(f, p, s.get_column("date"))
        summaries.append({"sector": sector, **rep["summary"]})
        trans.append(rep["transitions"].with_columns(pl.lit(sector).alias("sector")))
        states.append(rep["states"].with_columns(pl.lit(sector).alias("sector")))
    if not summaries:
        return {"summary": pl.DataFrame(), "transitions": pl.DataFrame(), "states": pl.DataFrame()}
    return {
        "summary": pl.DataFrame(summaries),
        "transitions": pl.concat(trans).select("sector", pl.exclude("sector")),
        "states": pl.concat(states).select("sector", pl.exclude("sector")),
    }


def sector_observations(bars: pl.DataFrame, sectors: pl.DataFrame, config: HmmConfig) -> pl.DataFrame:
    """:func:`hmm_observations` of every sector group of ``config.mode`` (per sector x date, causal)."""
    groups = sector_groups(bars, sectors, config.mode)
    return hmm_observations(bars, groups, window=config.window, market_ticker=config.market_ticker)


# ----------------------------------------------------------------------------- a fold's set
HMM_FILE_FORMAT = "regimeflow.sector_hmms/1"


@dataclass(frozen=True)
class SectorHmms:
    """One fold's fitted sector HMMs and the config that built their observations: everything needed to
    forward-filter any day exactly as the fold did (the fold asset, the live states, the look-ahead check)."""

    fitted: dict[str, FittedHMM]
    config: HmmConfig

    def probabilities(self, bars: pl.DataFrame, sectors: pl.DataFrame) -> pl.DataFrame:
        """Forward-filtered probabilities (``sector, date, p_*, state``) of every fitted sector over all
        dates of ``bars``: observations -> filter with the frozen parameters. Known at the close of each date."""
        return sector_filtered_probabilities(self.fitted, sector_observations(bars, sectors, self.config))

    def live_probabilities(self, bars: pl.DataFrame, sectors: pl.DataFrame) -> pl.DataFrame:
        """:meth:`probabilities` cut at each sector's last observed session (its newest non-null observation)
        with that date as ``as_of``: a sector whose inputs stopped updating gets no state on later days (the
        filter would only carry its prior forward)."""
        obs = sector_observations(bars, sectors, self.config)
        probs = sector_filtered_probabilities(self.fitted, obs)
        as_of = obs.filter(pl.col("ret_mean").is_not_null()).group_by("sector").agg(pl.col("date").max().alias("as_of"))
        return probs.join(as_of, on="sector", how="inner").filter(pl.col("date") <= pl.col("as_of"))

    def to_json(self) -> str:
        import json

        return json.dumps({"format": HMM_FILE_FORMAT, "config": self.config.model_dump(),
                           "sectors": {s: f.to_dict() for s, f in self.fitted.items()}})

    @classmethod
    def from_json(cls, text: str) -> SectorHmms:
        """Inverse of :meth:`to_json`; ``ValueError`` for another format."""
        import json

        doc = json.loads(text)
        if doc.get("format") != HMM_FILE_FORMAT:
            raise ValueError(f"not a sector-HMM file of format {HMM_FILE_FORMAT!r} (got {doc.get('format')!r})")
        return cls({s: FittedHMM.from_dict(d) for s, d in doc["sectors"].items()}, HmmConfig(**doc["config"]))

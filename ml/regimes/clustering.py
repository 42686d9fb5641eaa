"""Thesis-style market-state clustering: K-means or a Gaussian mixture on standardised features.

Timing: fit on the fold's train rows only (the standardiser too); :func:`assign` labels any later
row (e.g. test days) with the fitted model, so a cluster dated t uses only that row's features
(known at the close of t) and parameters learnt before the test window.

Cluster ids are canonical: 0 … k-1 ordered by the ascending standardised mean of the first
feature column, so ids do not depend on the random initialisation. Rows with a non-finite
feature get cluster -1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from sklearn.cluster import KMeans  # loaded before threadpool_limits so the cap applies
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

ClusterMethod = Literal["kmeans", "gmm"]
DEFAULT_KS: tuple[int, ...] = (3, 5, 7, 9)


@dataclass(frozen=True)
class ClusterModel:
    """A fitted clustering: standardiser (z = (x - mean) / scale), estimator and id permutation."""

    method: str
    k: int
    estimator: Any
    scaler_mean: np.ndarray
    scaler_scale: np.ndarray
    order: np.ndarray  # raw estimator label -> canonical cluster id
    n_train: int
    seed: int

    def centers_original(self) -> np.ndarray:
        """Cluster centres (k × F, canonical order) in original feature units."""
        raw = self.estimator.cluster_centers_ if self.method == "kmeans" else self.estimator.means_
        centers = np.empty_like(raw)
        centers[self.order] = raw
        return centers * self.scaler_scale + self.scaler_mean


def fit_clusters(train_X: np.ndarray, k: int, method: ClusterMethod = "kmeans", seed: int = 0) -> ClusterModel:
    """Fit ``method`` with ``k`` clusters on the finite rows of ``train_X`` (N × F, original units)."""
    x = np.asarray(train_X, dtype=float)
    x = x[np.isfinite(x).all(axis=1)]
    if x.shape[0] < k:
        raise ValueError(f"need at least k={k} finite rows, got {x.shape[0]}")
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    z = (x - mu) / sd
    with threadpool_limits(limits=1):  # small problems: threads only add overhead / contention
        if method == "kmeans":
            est = KMeans(n_clusters=k, n_init=5, random_state=seed).fit(z)
            centers = est.cluster_centers_
        elif method == "gmm":
            est = GaussianMixture(n_components=k, covariance_type="full", n_init=2, random_state=seed, reg_covar=1e-4)
            est.fit(z)
            centers = est.means_
        else:
            raise ValueError(f"method must be 'kmeans' or 'gmm', got {method!r}")
    rank = np.argsort(np.argsort(centers[:, 0], kind="stable"), kind="stable")
    return ClusterModel(method, k, est, mu, sd, rank.astype(np.int64), int(x.shape[0]), seed)


def assign(model: ClusterModel, X: np.ndarray) -> np.ndarray:
    """Canonical cluster id per row of ``X`` (N × F, original units); -1 where a feature is not finite."""
    x = np.asarray(X, dtype=float)
    ok = np.isfinite(x).all(axis=1)
    out = np.full(x.shape[0], -1, dtype=np.int64)
    if ok.any():
        z = (x[ok] - model.scaler_mean) / model.scaler_scale
        with threadpool_limits(limits=1):
            raw = model.estimator.predict(z)
        out[ok] = model.order[raw]
    return out

"""Thompson-sampling bandit over stock groups: which groups the sector book trades each day.

Each group keeps a Beta(alpha, beta) posterior on "a closed trade of this group makes money" (prior
Beta(1, 1)). At the close of day t the book draws one sample per eligible group and trades the ``k``
groups with the largest draws; when a trade closes (its P&L known at the close of its exit day) its group
is updated: ``alpha += 1`` for P&L > 0, else ``beta += 1``. Draws come from one seeded generator, so a run
is reproducible given the seed and the order of calls.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

POSTERIOR_SCHEMA = {"group": pl.Utf8, "alpha": pl.Float64, "beta": pl.Float64, "mean": pl.Float64,
                    "sd": pl.Float64, "trades": pl.Int64, "wins": pl.Int64, "selected_days": pl.Int64}


class ThompsonBandit:
    """Beta-Bernoulli Thompson sampling over named arms (stock groups)."""

    def __init__(self, groups: Sequence[str], seed: int = 0, prior: tuple[float, float] = (1.0, 1.0)):
        self.groups = list(groups)
        self._index = {g: i for i, g in enumerate(self.groups)}
        self.alpha = np.full(len(self.groups), float(prior[0]))
        self.beta = np.full(len(self.groups), float(prior[1]))
        self.selected_days = np.zeros(len(self.groups), dtype=np.int64)
        self.trades = np.zeros(len(self.groups), dtype=np.int64)
        self.wins = np.zeros(len(self.groups), dtype=np.int64)
        self._rng = np.random.default_rng(seed)

    def select(self, k: int, eligible: Sequence[str] | None = None) -> list[str]:
        """Draw theta_g ~ Beta(alpha_g, beta_g) for every group (one draw each, so the random stream does not
        depend on eligibility) and return the ``k`` eligible groups with the largest draws, best first."""
        theta = self._rng.beta(self.alpha, self.beta)
        allowed = set(self.groups if eligible is None else eligible)
        order = [self.groups[i] for i in np.argsort(-theta, kind="stable") if self.groups[i] in allowed][:k]
        for g in order:
            self.selected_days[self._index[g]] += 1
        return order

    def update(self, group: str, pnl: float) -> None:
        """One closed trade of ``group``: a success when its P&L is > 0."""
        i = self._index[group]
        self.trades[i] += 1
        self.wins[i] += int(pnl > 0)
        if pnl > 0:
            self.alpha[i] += 1.0
        else:
            self.beta[i] += 1.0

    def posterior(self) -> pl.DataFrame:
        """One row per group: alpha, beta, posterior mean and sd, closed trades counted, wins, days selected."""
        a, b = self.alpha, self.beta
        n = a + b
        return pl.DataFrame({
            "group": self.groups, "alpha": a, "beta": b, "mean": a / n,
            "sd": np.sqrt(a * b / (n * n * (n + 1.0))),
            "trades": self.trades.copy(), "wins": self.wins.copy(),
            "selected_days": self.selected_days.copy(),
        }, schema=POSTERIOR_SCHEMA)

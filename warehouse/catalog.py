"""Where each asset's data lives in the warehouse, and the one transactional writer / reader behind the
Dagster IO managers (``infra.io_managers``).

An asset's value is one frame (its ``main`` table) or a mapping ``{part: frame}`` over the parts its
:class:`AssetStorage` declares (e.g. the prescreen fold model writes ``scores``, ``summary``, ``metrics``
and ``calibration``). :func:`write_asset` writes every part of one materialization in ONE write session
and ONE transaction - a failure anywhere leaves every table as it was - and recreates the asset's
analyst views afterwards. Fold-partitioned assets replace their fold's rows (a ``fold`` column is added).

Write modes: ``replace`` (the fold's rows, or the whole table), ``upsert`` (by the natural key; rows that
did not change are not rewritten; ``stamp`` sets a UTC timestamp on written rows), ``append`` (new keys
only, strictly after every stored key: the decision log).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Literal

import polars as pl

from warehouse.db import Warehouse, query_pl, quote_ident, scalar, table_exists, transaction
from warehouse.tables import ensure_table, insert_rows, replace_rows
from warehouse.upsert import upsert

WriteMode = Literal["replace", "upsert", "append"]
MAIN = "main"


class AppendOnlyViolation(ValueError):
    """An append to an append-only table with a key on or before the newest stored one."""


@dataclass(frozen=True)
class TableSpec:
    """One warehouse table: name (``schema.table``), natural key (without ``fold``), comment, write mode."""

    table: str
    keys: tuple[str, ...]
    comment: str
    mode: WriteMode = "replace"
    stamp: str | None = None


@dataclass(frozen=True)
class AssetStorage:
    """The tables of one asset (``main`` first), whether it is fold-partitioned, and the SQL file of the
    analyst views recreated after each write."""

    parts: Mapping[str, TableSpec]
    per_fold: bool = False
    views: str | None = None

    @property
    def main(self) -> TableSpec:
        return self.parts[MAIN]


def _t(table: str, keys: Sequence[str], comment: str, mode: WriteMode = "replace", stamp: str | None = None) -> TableSpec:
    return TableSpec(table, tuple(keys), comment, mode, stamp)


ARTIFACTS = _t("models.artifacts", ("fold", "kind"),
               "Model artifacts per fold and kind: path relative to the artifact root, SHA-256, metadata (JSON).",
               mode="upsert")

#: Asset key path -> storage. Keys are ``AssetKey.path`` tuples (see ``assets.keys``).
CATALOG: dict[tuple[str, ...], AssetStorage] = {
    ("raw", "bars"): AssetStorage({MAIN: _t("raw.bars", ("ticker", "date"), "Daily adjusted OHLCV.")}),
    ("raw", "index_bars"): AssetStorage({MAIN: _t("raw.index_bars", ("symbol", "date"), "VIX, VIX3M levels.")}),
    ("ref", "sectors"): AssetStorage({MAIN: _t("ref.sectors", ("ticker",), "GICS sector per ticker.")}),
    ("ref", "trading_calendar"): AssetStorage({MAIN: _t(
        "ref.trading_calendar", ("date",), "Trading days observed for the reference ETF; session = 0-based index.")}),
    ("ops", "input_freshness"): AssetStorage({MAIN: _t(
        "ops.input_freshness", ("input",),
        "Per ticker / index series: newest row, reference sessions behind, stale, whether it blocks the decision.")}),
    ("features", "registry"): AssetStorage({MAIN: _t(
        "features.registry", ("name",),
        "One row per column of features.daily: family, window, unit, description, warm-up rows.")}),
    ("features", "daily"): AssetStorage({MAIN: _t(
        "features.daily", ("ticker", "date"),
        "Daily features per (ticker, date); see features.registry. Dated t = known at close t.",
        mode="upsert", stamp="computed_at")}),
    ("labels", "forward"): AssetStorage({MAIN: _t(
        "labels.forward", ("ticker", "date"),
        "Forward labels dated t describe t+1..t+h (h in the column name); never inputs at t.",
        mode="upsert", stamp="computed_at")}),
    ("ref", "folds"): AssetStorage({MAIN: _t(
        "ref.folds", ("key",),
        "Walk-forward folds: train [train_start, train_end], embargo sessions, test [test_start, test_end]; "
        "partial: the test year has begun, not ended (test_end = newest session so far).",
        mode="upsert", stamp="updated_at")}),
    ("regimes", "vix"): AssetStorage({MAIN: _t(
        "regimes.vix", ("date",), "VIX regimes per date: close (index points), 4-band regime, 5-bucket label.")}),
    ("regimes", "sector_hmm"): AssetStorage({
        MAIN: _t("regimes.sector_hmm", ("sector", "date"),
                 "Forward-filtered P(state_t | obs_1..t) per fold, sector, date (causal; known at close t)."),
        "summary": _t("regimes.sector_hmm_summary", ("sector",),
                      "Per fold and sector: fit diagnostics; share of days over the test window."),
        "states": _t("regimes.sector_hmm_states", ("sector", "state"),
                     "Per fold, sector, state: duration 1/(1-p_ii) days, share of test days, state means/vols."),
        "transitions": _t("regimes.sector_hmm_transitions", ("sector", "from_state", "to_state"),
                          "Per fold and sector: HMM transition matrix."),
    }, per_fold=True),
    ("models", "prescreen"): AssetStorage({
        MAIN: _t("models.prescreen_scores", ("ticker", "date"),
                 "Test-window P(buy) / P(sell) per fold, ticker, date from the model of the day's VIX regime."),
        "summary": _t("models.prescreen_summary", ("generation", "side", "regime"),
                      "Per fold, generation and model slot: training size, base rate, hyper-parameters, CV AUC."),
        "metrics": _t("eval.prescreen_metrics", ("side", "regime"),
                      "Test-window ROC AUC, precision at top-k, Brier score per fold and model slot."),
        "calibration": _t("eval.prescreen_calibration", ("side", "regime", "bin"),
                          "Test-window calibration table (10 bins) per fold and model slot."),
    }, per_fold=True),
    ("models", "policy_ppo"): AssetStorage({
        MAIN: _t("models.ppo_training", ("seed", "iteration"),
                 "PPO training curve per fold, seed and iteration: env steps/s, reward, entropy, approx KL, losses, "
                 "validation Sharpe (the kept checkpoint is the best one)."),
    }, per_fold=True),
    ("models", "policy_sac"): AssetStorage({
        MAIN: _t("models.sac_training", ("seed", "iteration"),
                 "SAC training curve per fold, seed and logging step: env/gradient steps per s, reward, Q loss, "
                 "temperature, entropy, validation Sharpe."),
    }, per_fold=True),
    ("models", "policy_td3"): AssetStorage({
        MAIN: _t("models.td3_training", ("seed", "iteration"),
                 "TD3 training curve per fold, seed and logging step: env/gradient steps per s, reward, Q and actor "
                 "losses, validation Sharpe."),
    }, per_fold=True),
    ("models", "policy_ensemble"): AssetStorage({
        MAIN: _t("models.ensemble_weights", ("member",),
                 "Per fold and ensemble member: validation-slice return, SPY's, Sortino, composite score "
                 "(excess x min(Sortino, 3)), ensemble weight, and whether the weights fell back to equal."),
    }, per_fold=True),
    ("models", "qlearning"): AssetStorage({
        MAIN: _t("models.qlearning_members", ("member",),
                 "Per fold and Q-learning member (simulation x clustering x k): state columns, greedy exposure and "
                 "training visits per cluster, validation score (net Sharpe), best single / model-of-models flags."),
        "switch_grid": _t("models.qlearning_switch_grid", ("window", "threshold"),
                          "Per fold: the VIX switcher grid on the train window (share of days switched, Sharpe of "
                          "the switched asset); the chosen row is in models.qlearning_members' fold metadata."),
    }, per_fold=True),
    ("research", "thesis_market"): AssetStorage({
        MAIN: _t("research.thesis_bars", ("ticker", "date"), "SPY bars over the whole source history (from 1993) "
                 "for the thesis reproduction."),
        "index": _t("research.thesis_index_bars", ("symbol", "date"), "VIX levels over the whole source history."),
    }),
    ("research", "thesis_reproduction"): AssetStorage({
        MAIN: _t("research.thesis_reproduction", ("strategy",),
                 "Q-learning thesis reproduction (test 2015-2023, no costs): thesis metrics per strategy / member "
                 "next to the thesis's published values (thesis_* columns, null where not published)."),
        "daily": _t("research.thesis_daily", ("strategy", "date"),
                    "Reproduction test window per strategy and day: exposure, log return, cumulative log return."),
        "switch_grid": _t("research.thesis_switch_grid", ("window", "threshold"),
                          "VIX switcher sensitivity: train Sharpe (the choice) and test SR of the switched stack."),
        "monte_carlo": _t("research.thesis_monte_carlo", ("strategy", "day"),
                          "KDE Monte Carlo (10,000 paths x 252 days): 5/50/95 % bands of the cumulative log return."),
        "members": _t("research.thesis_members", ("member",), "Reproduction members: clusters, exposures, "
                      "validation Sharpe, chosen flags."),
    }),
    ("eval", "fold"): AssetStorage({
        MAIN: _t("eval.daily_returns", ("strategy", "date"),
                 "Test-window daily returns per fold and strategy (earned close t-1 -> close t, net of costs)."),
        "allocations": _t("eval.allocations", ("strategy", "date"),
                          "Weights held on each earned day (decided at the previous close) and the VIX at that close."),
        "metrics": _t("eval.fold_metrics", ("strategy", "cost_multiplier"),
                      "Test-window metrics per fold, strategy and cost multiplier (risk_free states the rate; "
                      "partial: the fold's test year was not complete, end_date = last earned day)."),
    }, per_fold=True),
    ("eval", "walk_forward"): AssetStorage({
        MAIN: _t("eval.walk_forward_daily", ("strategy", "date"),
                 "Stitched out-of-sample track of the default yearly folds, per strategy and day (partial: "
                 "the day is in the current year's partial fold)."),
        "metrics": _t("eval.walk_forward_metrics", ("strategy", "cost_multiplier"),
                      "Walk-forward track metrics per strategy and cost multiplier."),
    }, views="views.sql"),
    ("models", "sector_pairs"): AssetStorage({MAIN: _t(
        "models.sector_pairs", ("pair",),
        "Per fold: the cointegrated pairs of each stock group (Engle-Granger on log closes over the train window's "
        "trailing lookback): hedge ratio, intercept, p-value, half-life (sessions), rank in the group.")},
        per_fold=True),
    ("models", "pairs_qrdqn"): AssetStorage({MAIN: _t(
        "models.pairs_qrdqn_training", ("iteration",),
        "QR-DQN pair-policy training curve per fold: transitions, episode return, loss, epsilon, steps/s.")},
        per_fold=True),
    ("eval", "sector_book"): AssetStorage({
        MAIN: _t("eval.sector_book_daily", ("strategy", "date"),
                 "Sector book per fold, variant (and SPY / equal-weight stock comparisons) and earned day: net and "
                 "gross return, turnover, cost, borrow, equity, long / short exposure, names held, groups traded."),
        "trades": _t("eval.sector_book_trades", ("strategy", "ticker", "entry_date"),
                     "Sector-book trades per fold and variant: ticker, group, sleeve (bull / bear / pairs), side, "
                     "entry and exit decision dates, P&L (fraction of equity, costs and borrow included), sessions "
                     "held, closed."),
        "posterior": _t("eval.sector_book_posterior", ("strategy", "group"),
                        "Thompson bandit posterior per fold and variant at the end of the test window: Beta alpha, "
                        "beta, mean, sd, closed trades, wins, days selected."),
        "regimes": _t("eval.sector_book_regimes", ("date", "group"),
                      "Per fold, decision day and stock group: the group's regime (Bull / Sideways / Bear) and "
                      "whether the bandit selected it (variant sector_book)."),
        "metrics": _t("eval.sector_book_metrics", ("strategy", "cost_multiplier"),
                      "Sector-book test-window metrics per fold, strategy and cost multiplier, with trade "
                      "statistics and the pair policy used (qrdqn | zscore (fallback))."),
    }, per_fold=True, views="sector_book_views.sql"),
    ("eval", "sector_book_walk_forward"): AssetStorage({
        MAIN: _t("eval.sector_book_walk_forward_daily", ("strategy", "date"),
                 "Stitched sector-book track of the yearly folds, per strategy and day."),
        "metrics": _t("eval.sector_book_walk_forward_metrics", ("strategy", "cost_multiplier"),
                      "Sector-book walk-forward metrics per strategy and cost multiplier, with trade statistics."),
        "reference": _t("eval.sector_book_reference_window", ("strategy", "cost_multiplier"),
                        "The sector book over the design's published window 2025-03-15 .. 2025-12-15."),
    }, views="sector_book_wf_views.sql"),
    ("models", "stock_funnel"): AssetStorage({MAIN: _t(
        "models.stock_funnel", ("ticker", "date"),
        "The stock book's funnel per fold, stock and date (from the first causally scored date to the test end): "
        "P(buy) / P(sell) of the day's VIX-regime prescreen model and its generation, the technical composite "
        "in [-1, 1], the rank by P(buy) (1 = highest, 0 = unscored) and whether it is in the day's top N.")},
        per_fold=True),
    ("models", "stock_rl"): AssetStorage({
        MAIN: _t("models.stock_rl_ensemble", ("member",),
                 "Per fold: the stock RL ensemble's members (ppo, sac, td3) with their validation return, SPY's, "
                 "Sortino, composite score and mixing weight (equal when no composite is above 0)."),
        "curves": _t("models.stock_rl_training", ("member", "row"),
                     "Per fold and member: the training curve (env steps, steps/s, mean reward, losses, validation "
                     "Sharpe)."),
    }, per_fold=True),
    ("eval", "stock_book"): AssetStorage({
        MAIN: _t("eval.stock_book_daily", ("strategy", "date"),
                 "Stock book per fold, variant (and SPY / equal-weight stocks / prescreen-only comparisons) and earned "
                 "day: net and gross return, turnover, cost, equity, exposure, names held, candidates, VIX band."),
        "trades": _t("eval.stock_book_trades", ("strategy", "ticker", "entry_date"),
                     "Stock-book trades per fold and variant: entry / exit decision dates, P&L (fraction of equity, "
                     "costs included), sessions held, exit reason (sell / stop / regime / end), entry signals."),
        "attribution": _t("eval.stock_book_attribution", ("strategy", "source"),
                          "Stock-book P&L per fold, variant and signal source (prescreen, rl, technical, "
                          "fundamental, unattributed), fractions of equity."),
        "metrics": _t("eval.stock_book_metrics", ("strategy", "cost_multiplier"),
                      "Stock-book test-window metrics per fold, strategy and cost multiplier, with trade statistics."),
        "cap_search": _t("eval.stock_book_cap_search", ("position_cap",),
                         "Per fold: the validation-slice Sharpe of each calm-market position cap searched and the "
                         "one chosen."),
        "decisions": _t("decisions.stock_daily", ("date", "ticker"),
                        "The stock book's decision log per fold, decision day and candidate: rank, probabilities, "
                        "the three signals, their regime weights, score, agreement, conviction, action, held and "
                        "target weights, VIX and band (replayable with ml.stock_book.replay_decisions)."),
    }, per_fold=True, views="stock_book_views.sql"),
    ("eval", "stock_book_walk_forward"): AssetStorage({
        MAIN: _t("eval.stock_book_walk_forward_daily", ("strategy", "date"),
                 "Stitched stock-book track of the yearly folds, per strategy and day."),
        "metrics": _t("eval.stock_book_walk_forward_metrics", ("strategy", "cost_multiplier"),
                      "Stock-book walk-forward metrics per strategy and cost multiplier, with trade statistics."),
        "attribution": _t("eval.stock_book_walk_forward_attribution", ("strategy", "source"),
                          "Stock-book P&L per signal source summed over the walk-forward folds."),
    }),
    ("regimes", "sector_hmm_live"): AssetStorage({MAIN: _t(
        "regimes.sector_hmm_live", ("sector", "date"),
        "Sector HMM probabilities from the deployed fold's HMMs, each sector up to its last observed session "
        "(as_of; causal).")}),
    ("decisions", "daily"): AssetStorage({MAIN: _t(
        "decisions.daily", ("decision_date",), "Append-only audit log of the daily decisions.", mode="append")},
        views="decision_views.sql"),
    ("monitoring", "drift"): AssetStorage({MAIN: _t(
        "ops.drift_checks", ("evaluated_at",),
        "One row per drift / decay evaluation of the deployed fold: statistics, thresholds, what fired.",
        mode="append")}),
}


def storage(asset_path: Sequence[str]) -> AssetStorage:
    try:
        return CATALOG[tuple(asset_path)]
    except KeyError:
        raise KeyError(f"asset {'/'.join(asset_path)} has no warehouse storage in warehouse.catalog.CATALOG") from None


def as_parts(value: pl.DataFrame | Mapping[str, pl.DataFrame]) -> dict[str, pl.DataFrame]:
    """An asset value as ``{part: frame}`` (a single frame is the ``main`` part)."""
    return {MAIN: value} if isinstance(value, pl.DataFrame) else dict(value)


def _with_fold(frame: pl.DataFrame, fold: str | None) -> pl.DataFrame:
    return frame if fold is None else frame.select(pl.lit(fold).alias("fold"), pl.exclude("fold"))


def _append(con, spec: TableSpec, frame: pl.DataFrame) -> int:
    keys = list(spec.keys)
    newest = scalar(con, f"SELECT max({quote_ident(keys[0])}) FROM {spec.table}")
    first = frame.get_column(keys[0]).min()
    if newest is not None and first <= newest:
        raise AppendOnlyViolation(f"{spec.table} is append-only: the batch starts {first}, the table ends {newest}")
    return insert_rows(con, spec.table, frame)


@dataclass(frozen=True)
class WriteCounts:
    """Per part: rows in the batch, inserted, updated (upsert; replace/append count every row as inserted)."""

    counts: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    def metadata(self) -> dict[str, int]:
        out = {}
        for part, (rows, ins, upd) in self.counts.items():
            pre = "" if part == MAIN else f"{part}_"
            out |= {f"{pre}rows_written": rows, f"{pre}rows_inserted": ins, f"{pre}rows_updated": upd}
        return out


def write_asset(wh: Warehouse, store: AssetStorage, parts: Mapping[str, pl.DataFrame], fold: str | None = None,
                extra: Sequence[tuple[TableSpec, pl.DataFrame]] = ()) -> WriteCounts:
    """Write one materialization: every part (and ``extra`` tables, e.g. the artifact record) in one
    transaction, then the asset's views. ``fold``: the partition of a per-fold asset (its rows are replaced)."""
    unknown = set(parts) - set(store.parts)
    if unknown:
        raise KeyError(f"parts {sorted(unknown)} are not declared for this asset (have {sorted(store.parts)})")
    if store.per_fold and fold is None:
        raise ValueError("a per-fold asset needs its fold partition key")
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    per_fold = store.per_fold
    # an empty upsert / append is a no-op (an empty replace clears: it is written)
    parts = {p: f for p, f in parts.items() if f.height or store.parts[p].mode == "replace"}
    if not parts and not extra:
        return WriteCounts({})
    # (part name, spec, frame, key columns); parts of a per-fold asset are keyed by fold first
    writes = [(p, store.parts[p], _with_fold(f, fold if per_fold else None),
               (["fold"] if per_fold else []) + list(store.parts[p].keys)) for p, f in parts.items()]
    writes += [(spec.table, spec, frame, list(spec.keys)) for spec, frame in extra]
    counts: dict[str, tuple[int, int, int]] = {}

    def write_all(con) -> None:
        counts.clear()  # a retried transaction counts afresh
        with transaction(con):
            for name, spec, frame, keys in writes:
                if spec.mode != "upsert" and frame.select(keys).is_duplicated().any():
                    dup = frame.filter(frame.select(keys).is_duplicated()).select(keys).row(0)
                    error = AppendOnlyViolation if spec.mode == "append" else ValueError
                    raise error(f"duplicate key {dict(zip(keys, dup))} in the batch for {spec.table}")
                if spec.mode == "upsert":
                    c = upsert(con, spec.table, frame, keys, stamp_column=spec.stamp)
                    counts[name] = (c.rows_in, c.inserted, c.updated)
                elif spec.mode == "append":
                    counts[name] = (_append(con, spec, frame), frame.height, 0)
                else:
                    where, params = ("fold = ?", [fold]) if per_fold and "fold" in keys else ("", None)
                    stamped = frame.with_columns(pl.lit(now).alias(spec.stamp)) if spec.stamp else frame
                    counts[name] = (replace_rows(con, spec.table, stamped, where, params), frame.height, 0)

    with wh.write() as con:
        for _, spec, frame, keys in writes:  # DDL outside the transaction
            schema = dict(frame.schema) | ({spec.stamp: pl.Datetime("us")} if spec.stamp else {})
            # only upserts need DuckDB's key index; replace / append check their keys here (an index is
            # rewritten whole at every checkpoint: per-fold tables would rewrite it at every fold write)
            wh.retry_conflicts(lambda: ensure_table(con, spec.table, schema, keys, spec.comment,
                                                    primary_key=spec.mode == "upsert"), f"create {spec.table}")
        wh.retry_conflicts(lambda: write_all(con), f"write {', '.join(t for t, *_ in writes)}")
        if store.views:
            sql = resources.files("warehouse").joinpath(store.views).read_text()
            wh.retry_conflicts(lambda: con.execute(sql), f"views {store.views}")
    return WriteCounts(counts)


def read_asset(wh: Warehouse, store: AssetStorage, part: str = MAIN, *, folds: Sequence[str] | None = None,
               tickers: Sequence[str] | None = None, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """Rows of one part: only ``folds`` (per-fold assets), only ``tickers`` (tables with a ``ticker`` column),
    only ``columns`` (the keys are always kept). An empty frame when the table does not exist yet."""
    spec = store.parts[part]
    with wh.read() as con:
        if not table_exists(con, spec.table):
            return pl.DataFrame()
        where, params = [], []
        if folds is not None and store.per_fold:
            where.append("fold IN (SELECT unnest(?))")
            params.append(list(folds))
        if tickers is not None:
            where.append("ticker IN (SELECT unnest(?))")
            params.append(list(tickers))
        cols = "*"
        if columns is not None:
            keep = list(dict.fromkeys([*(["fold"] if store.per_fold else []), *spec.keys, *columns]))
            cols = ", ".join(quote_ident(c) for c in keep)
        order = ", ".join(quote_ident(k) for k in (["fold"] if store.per_fold else []) + list(spec.keys))
        sql = f"SELECT {cols} FROM {spec.table} {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY {order}"
        return query_pl(con, sql, params or None)


_ARTIFACT_STORE = AssetStorage({MAIN: ARTIFACTS})


def artifact_records(wh: Warehouse, kind: str, folds: Sequence[str] | None = None) -> pl.DataFrame:
    """``models.artifacts`` rows of ``kind`` (``fold, kind, path, sha256, meta, created_at``), only ``folds``
    when given; ``path`` is relative to the artifact root."""
    rows = read_asset(wh, _ARTIFACT_STORE)
    if rows.is_empty():
        return pl.DataFrame(schema={"fold": pl.Utf8, "kind": pl.Utf8, "path": pl.Utf8, "sha256": pl.Utf8,
                                    "meta": pl.Utf8, "created_at": pl.Datetime("us")})
    rows = rows.filter(pl.col("kind") == kind)
    return rows if folds is None else rows.filter(pl.col("fold").is_in(list(folds)))

"""Group ``policies``: the cluster-state Q-learning book of each fold (the thesis design, ``ml.agents.qlearning``).

Per fold: every (simulation, clustering, k) member is fitted on the fold's train window before its validation
slice (the same split as the deep learners); each member's validation score is the net Sharpe of its book
over the validation slice (costs, financing and fills as the evaluation's); the best single member and the
best member of each simulation (the model of models) are chosen there, and the VIX switcher's window and
threshold on the train window. The test window is never touched. ``eval/fold`` backtests them."""
import dagster as dg
import numpy as np
import polars as pl

from assets._metadata import fold_lookahead_result, md_table
from assets.keys import FEATURES_DAILY, MODELS_QLEARNING, RAW_BARS, RAW_INDEX_BARS, REF_FOLDS
from infra.io_managers import FoldModel, LoadedModel
from infra.partitions import folds_partitions
from infra.resources import FeatureStoreResource, PolicyResource
from ml import metrics
from ml.agents.qlearning import QLearningBook, choose, fit_book, member_table, rows_at, state_frame
from ml.backtest.exposure import backtest_exposure
from ml.dataset import ObservationSpec, allocation_panel
from ml.features import compute_features
from ml.folds import fold_from_frame
from ml.lookahead import check_lookahead
from ml.strategies.vix_switcher import choose_switch

ASSET = "SPY"  # the thesis's single risky asset; the rest of the book is cash
STATE_EXTRA = ("vix_level",)


def spy_panel(features: pl.DataFrame, end=None):
    """SPY's returns, overnight gaps and VIX as a one-asset panel (its only observation column: ret_1d)."""
    return allocation_panel(features, ObservationSpec(asset_features=("ret_1d",), market_features=()), assets=(ASSET,),
                            end=end)


def _validation_scores(book: QLearningBook, state: pl.DataFrame, features: pl.DataFrame, window, policy) -> dict:
    panel = spy_panel(features, end=window[1])
    lo, hi = panel.index_range(*window)
    rows = rows_at(state, panel.dates[lo:hi])
    execution = policy.env_config().execution
    return {n: metrics.sharpe(backtest_exposure(m.exposure(rows), panel, lo, hi, policy.cost_rate, asset=ASSET,
                                                financing=policy.financing(), execution=execution).net_returns)
            for n, m in book.members.items()}


@dg.asset(key=MODELS_QLEARNING, partitions_def=folds_partitions, group_name="policies", kinds={"scikitlearn", "duckdb"},
          io_manager_key="model_io_manager",
          ins={"features": dg.AssetIn(FEATURES_DAILY, metadata={"tickers": [ASSET]}), "folds": dg.AssetIn(REF_FOLDS)})
def qlearning_book(context: dg.AssetExecutionContext, policy: PolicyResource, features: pl.DataFrame,
                   folds: pl.DataFrame) -> FoldModel:
    """The fold's Q-learning book: 32 members (4 simulations × K-means / GMM × 4 cluster counts), the best
    single member and the model of models chosen on the validation slice, the VIX switcher chosen on the
    train window. Tables ``models.qlearning_members`` and ``models.qlearning_switch_grid``."""
    fold = fold_from_frame(folds, context.partition_key)
    cfg = policy.qlearning_config()
    (fit_lo, fit_hi), val = policy.windows(fold)
    state = state_frame(features, ASSET, extra=STATE_EXTRA)
    fit = state.filter(pl.col("date").is_between(fit_lo, fit_hi))
    context.log.info(f"fold {fold.key}: fitting the Q-learning book on {fit_lo} .. {fit_hi} ({fit.height} sessions)")
    book = fit_book(fit, fit.height, cfg, log=context.log.info)
    window = val or (fit_lo, fit_hi)  # without a validation slice: in-sample scores (stated in the metadata)
    scores = _validation_scores(book, state, features, window, policy)
    train = state.filter(pl.col("date").is_between(fold.train_start, fold.train_end))
    nxt = np.append(train["ret_1d"].to_numpy()[1:], np.nan)
    switch, grid = choose_switch(train["vix_level"].to_numpy(), nxt, default=cfg.default_action)
    book = choose(book, scores, switch.model_dump())
    members = member_table(book, scores)
    context.log.info(f"fold {fold.key}: best single member {book.best} (validation Sharpe {scores[book.best]:.2f}); "
                     f"model of models {', '.join(book.stack)}; VIX switcher window {switch.window}, threshold "
                     f"{switch.threshold:g}; state columns {', '.join(book.columns)}")
    context.add_output_metadata({
        "fold": fold.key,
        "fit_window": f"{fit_lo} .. {fit_hi}",
        "selection_window": f"{window[0]} .. {window[1]}" + ("" if val else " (in-sample: no validation slice)"),
        "best": book.best,
        "stack": list(book.stack),
        "switch": dg.MetadataValue.json(book.switch),
        "state_columns": list(book.columns),
        "members": dg.MetadataValue.md(md_table(members.select("member", "validation_score", "cluster_exposure",
                                                               "is_best", "in_stack"))),
    })
    return FoldModel(book, {"main": members, "switch_grid": grid},
                     {"best": book.best, "stack": list(book.stack), "switch": book.switch,
                      "fit": [str(fit_lo), str(fit_hi)]})


@dg.asset_check(asset=MODELS_QLEARNING, blocking=True, name="qlearning_states_no_lookahead",
                additional_ins={"bars": dg.AssetIn(RAW_BARS, metadata={"tickers": [ASSET]}),
                                "index_bars": dg.AssetIn(RAW_INDEX_BARS), "folds": dg.AssetIn(REF_FOLDS)})
def qlearning_states_no_lookahead(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource,
                                  bars: pl.DataFrame, index_bars: pl.DataFrame, folds: pl.DataFrame,
                                  book: LoadedModel):
    """The Q-learning state columns (incl. the lagged returns built outside the feature store), the chosen
    members' cluster ids and exposures, recomputed from raw bars truncated / garbled after K cutoffs with the
    frozen clusterings, must equal the full-history values up to each cutoff."""
    fold = fold_from_frame(folds, book.fold)
    model: QLearningBook = book.model
    chosen = list(dict.fromkeys([model.best, *model.stack]))
    cfg = features.config()

    def states(b: pl.DataFrame, ib: pl.DataFrame) -> pl.DataFrame:
        st = state_frame(compute_features(b, ib, config=cfg), ASSET).filter(pl.col("date") >= fold.train_start)
        cols = {f"{n}.cluster": model.members[n].states(st).astype(float) for n in chosen}
        cols |= {f"{n}.exposure": model.members[n].exposure(st) for n in chosen}
        return st.with_columns([pl.Series(k, v) for k, v in cols.items()])

    window = bars.filter(pl.col("date") <= fold.test_end)
    report = check_lookahead(states, window, index_bars.filter(pl.col("date") <= fold.test_end),
                             **features.fold_lookahead_kwargs())
    return fold_lookahead_result(context, report, fold.key)

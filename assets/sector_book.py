"""Group ``sector_book``: the sector-regime book per fold - cointegrated pairs, the QR-DQN pair policy and the
book's evaluation - and its walk-forward track.

Lineage: the book's regimes are the fold's sector HMMs (``regimes/sector_hmm``, forward-filtered, causal)
or, with ``sector_book.regime_source=weekly_refit``, HMMs refit weekly on the trailing 252 sessions; the pairs
and the QR-DQN policy are fitted on the fold's train window only; the test window is only evaluated."""
import dagster as dg
import polars as pl

from assets._metadata import fold_lookahead_result, md_table
from assets.keys import (
    EVAL_SECTOR_BOOK,
    EVAL_SECTOR_BOOK_WALK_FORWARD,
    FEATURES_DAILY,
    MODELS_PAIRS_QRDQN,
    MODELS_SECTOR_PAIRS,
    RAW_BARS,
    RAW_INDEX_BARS,
    REF_FOLDS,
    REF_SECTORS,
    REF_TRADING_CALENDAR,
    REGIMES_SECTOR_HMM,
)
from infra.automation import eager_when_checks_pass
from infra.io_managers import FoldModel, LoadedModel
from infra.partitions import folds_partitions
from infra.queues import rl_step_tags
from infra.resources import FeatureStoreResource, SectorBookResource, WarehouseResource
from infra.version import code_version
from ml.evaluation import stitch_walk_forward
from ml.folds import fold_from_frame, yearly_keys
from ml.lookahead import check_lookahead
from ml.sector_book import (
    BOOK_VARIANTS,
    PUBLISHED,
    SURVIVORSHIP_NOTE,
    book_metrics,
    run_fold_book,
    universe_groups,
    window_metrics,
)
from ml.strategies.pairs import LEG_FEATURES, pair_states, select_pairs, state_arrays

GROUP = "sector_book"
PAIR_FEATURES = ["ret_21d", *LEG_FEATURES, "vix_level", "vix_term"]
BOOK_INPUTS = {
    "bars": dg.AssetIn(RAW_BARS, metadata={"columns": ["open", "close"]}),
    "sectors": dg.AssetIn(REF_SECTORS),
    "folds": dg.AssetIn(REF_FOLDS),
}
SHOWN = ["strategy", "total_return", "cagr", "ann_vol", "sharpe", "sharpe_ci_low", "sharpe_ci_high", "max_drawdown",
         "avg_turnover", "cost_drag", "trades", "win_rate", "profit_factor", "avg_hold_days"]


@dg.asset(key=MODELS_SECTOR_PAIRS, partitions_def=folds_partitions, group_name=GROUP, kinds={"duckdb", "statsmodels"},
          ins=BOOK_INPUTS)
def sector_pairs(context: dg.AssetExecutionContext, sector_book: SectorBookResource, bars: pl.DataFrame,
                 sectors: pl.DataFrame, folds: pl.DataFrame) -> pl.DataFrame:
    """Per stock group, the top cointegrated pairs (Engle-Granger on log closes) over the fold's train window
    (its trailing ``pairs.lookback`` sessions): hedge ratio, p-value, half-life. Fixed for the fold."""
    fold = fold_from_frame(folds, context.partition_key)
    cfg = sector_book.settings()
    train = bars.filter(pl.col("date") <= fold.train_end)
    groups = universe_groups(train, sectors, cfg)  # membership as known at the train end
    pairs = select_pairs(train, groups, fold.train_start, fold.train_end, cfg.pairs)
    per_group = pairs.group_by("group").len().sort("group")
    context.log.info(f"fold {fold.key}: {pairs.height} cointegrated pairs (p <= {cfg.pairs.pvalue_max}) in "
                     f"{per_group.height} of {groups['group'].n_unique()} groups: "
                     + ", ".join(f"{g} {n}" for g, n in per_group.iter_rows()))
    context.add_output_metadata({"fold": fold.key, "dagster/row_count": pairs.height,
                                 "groups": groups["group"].unique().sort().to_list(),
                                 "pairs": dg.MetadataValue.md(md_table(pairs.select(
                                     "group", "pair", "hedge_ratio", "pvalue", "half_life")))})
    return pairs


CHECK_SESSIONS = 600  # sessions of history before the fold's train end that the look-ahead check recomputes


@dg.asset_check(asset=MODELS_SECTOR_PAIRS, blocking=True, name="pair_states_no_lookahead",
                additional_ins={"bars": dg.AssetIn(RAW_BARS), "index_bars": dg.AssetIn(RAW_INDEX_BARS),
                                "sectors": dg.AssetIn(REF_SECTORS), "folds": dg.AssetIn(REF_FOLDS)})
def pair_states_no_lookahead(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource,
                             sector_book: SectorBookResource, bars: pl.DataFrame, index_bars: pl.DataFrame,
                             sectors: pl.DataFrame, folds: pl.DataFrame, pairs: pl.DataFrame):
    """Every input the QR-DQN policy and the book read from a pair - the 26 state columns and the spread
    return - recomputed from raw bars truncated / garbled after K cutoffs (features recomputed too) must
    equal the values computed on full history up to each cutoff. Over the fold's last 600 train sessions and
    its test window (the windows of the states are shorter than the features' warm-up)."""
    from ml.features.pipeline import compute_features

    if pairs.is_empty():
        return dg.AssetCheckResult(passed=True, description="no pairs: nothing to check")
    fold = fold_from_frame(folds, pairs["fold"][0])  # the run's fold partition (the IO manager loads only it)
    pairs = pairs.drop("fold")
    cfg = sector_book.settings()
    groups = universe_groups(bars.filter(pl.col("date") <= fold.train_end), sectors, cfg)
    used = set(pairs["ticker_a"]) | set(pairs["ticker_b"]) | {cfg.pairs.market_ticker}
    used |= set(groups.filter(pl.col("group").is_in(pairs["group"].unique().to_list()))["ticker"])
    days = bars.filter(pl.col("ticker") == cfg.pairs.market_ticker)["date"].unique().sort()
    start = days.filter(days <= fold.train_end).tail(CHECK_SESSIONS)[0]
    window = bars.filter(pl.col("ticker").is_in(sorted(used)) & pl.col("date").is_between(start, fold.test_end))
    fcfg = features.config()

    def states(b: pl.DataFrame, ix: pl.DataFrame) -> pl.DataFrame:
        return pair_states(b, compute_features(b, ix, fcfg), pairs, groups, cfg.pairs).rename({"pair": "ticker"})

    report = check_lookahead(states, window, index_bars.filter(pl.col("date") <= fold.test_end),
                             **features.fold_lookahead_kwargs())
    return fold_lookahead_result(context, report, fold.key)


def _pair_states(bars, features, pairs, sectors, cfg):
    return pair_states(bars, features, pairs, universe_groups(bars, sectors, cfg), cfg.pairs)


@dg.asset(key=MODELS_PAIRS_QRDQN, partitions_def=folds_partitions, group_name=GROUP, kinds={"pytorch"},
          io_manager_key="model_io_manager", op_tags=rl_step_tags(),
          ins={**BOOK_INPUTS, "pairs": dg.AssetIn(MODELS_SECTOR_PAIRS),
               "features": dg.AssetIn(FEATURES_DAILY, metadata={"columns": PAIR_FEATURES})})
def pairs_qrdqn(context: dg.AssetExecutionContext, sector_book: SectorBookResource, bars: pl.DataFrame,
                sectors: pl.DataFrame, folds: pl.DataFrame, pairs: pl.DataFrame, features: pl.DataFrame) -> FoldModel:
    """QR-DQN pair policy (hold / long spread / short spread) trained on the fold's pairs over the train window
    (batched pair environments; states known at the close of t, the position earns t+1)."""
    from ml.agents.common import resolve_device
    from ml.agents.qrdqn import train_qrdqn
    from ml.envs.pair_trading import BatchedPairEnv

    fold = fold_from_frame(folds, context.partition_key)
    cfg = sector_book.settings()
    qcfg = sector_book.qrdqn_config()
    if pairs.is_empty():  # an empty artifact: the book's QR-DQN variants fall back to the z-score rule (no pairs)
        context.log.warning(f"fold {fold.key}: no cointegrated pair (models/sector_pairs is empty): no QR-DQN policy")
        return FoldModel(None, {}, {"pairs": [], "train": [fold.train_start, fold.train_end]})
    window = bars.filter(pl.col("date") <= fold.train_end)
    states = _pair_states(window, features.filter(pl.col("date") <= fold.train_end), pairs, sectors, cfg)
    states = states.filter(pl.col("date") >= fold.train_start)
    _, x, r, _ = state_arrays(states, pairs)
    env = BatchedPairEnv(x, r, sector_book.env_config(), num_envs=qcfg.num_envs, device=resolve_device(qcfg.device),
                         seed=qcfg.seed, hedge_ratios=pairs["hedge_ratio"].to_numpy())
    context.log.info(f"fold {fold.key}: QR-DQN on {pairs.height} pairs x {x.shape[0]} sessions, "
                     f"{qcfg.total_steps:,} transitions ({qcfg.num_envs} envs, device {qcfg.device})")
    result = train_qrdqn(env, qcfg, log=context.log.info)
    curve = pl.DataFrame(result.curve).with_row_index("iteration").with_columns(pl.col("iteration").cast(pl.Int64))
    context.add_output_metadata({"fold": fold.key, "pairs": pairs.height, "transitions": result.env_steps,
                                 "gradient_steps": result.grad_steps, "train_seconds": round(result.wall_s, 1),
                                 "curve": dg.MetadataValue.md(md_table(curve.tail(5)))})
    return FoldModel(result.policy, {"main": curve},
                     {"pairs": pairs["pair"].to_list(), "train": [fold.train_start, fold.train_end]})


@dg.asset(key=EVAL_SECTOR_BOOK, partitions_def=folds_partitions, group_name=GROUP, kinds={"duckdb"},
          ins={**BOOK_INPUTS, "pairs": dg.AssetIn(MODELS_SECTOR_PAIRS),
               "features": dg.AssetIn(FEATURES_DAILY, metadata={"columns": PAIR_FEATURES}),
               "qrdqn": dg.AssetIn(MODELS_PAIRS_QRDQN),
               "sector_probabilities": dg.AssetIn(REGIMES_SECTOR_HMM, metadata={"part": "main"})})
def sector_book_fold(context: dg.AssetExecutionContext, sector_book: SectorBookResource, bars: pl.DataFrame,
                     sectors: pl.DataFrame, folds: pl.DataFrame, pairs: pl.DataFrame, features: pl.DataFrame,
                     qrdqn: LoadedModel, sector_probabilities: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The sector book's variants (QR-DQN pairs, z-score pairs, no bandit, long-only) and the comparisons (SPY,
    equal-weight stocks monthly) over the fold's test window: daily returns, trades, the bandit's posterior,
    the groups' daily regimes and selection, metrics at 1x/2x/3x costs. """
    fold = fold_from_frame(folds, context.partition_key)
    cfg = sector_book.settings()
    window = bars.filter(pl.col("date") <= fold.test_end)
    groups = universe_groups(window, sectors, cfg)
    if groups.is_empty():
        context.log.warning(f"no GICS group has {cfg.min_group_size}+ stocks in this universe (undersized groups: "
                            f"{cfg.undersized}): the sector book holds cash; set sector_book.undersized=merge or "
                            "sector_book.min_group_size to trade small universes")
    policy = qrdqn.model.load(context.log.warning)  # None (logged) when the file is unreadable
    if policy is None:
        context.log.warning(f"fold {fold.key}: QR-DQN pair policy unavailable: the QR-DQN variants use the z-score "
                            "rule (pair_policy = 'zscore (fallback)')")
    states = _pair_states(window, features.filter(pl.col("date") <= fold.test_end), pairs, sectors, cfg)
    probs = sector_probabilities
    if sector_book.regime_source == "weekly_refit":
        probs = _weekly_probs(window, sectors, fold)
        context.log.info(f"fold {fold.key}: weekly-refit regimes for {probs['sector'].n_unique()} sectors")
    book = run_fold_book(window, groups, probs, pairs, states, policy, fold.test_start, fold.test_end, cfg)
    base = book.metrics.filter(pl.col("cost_multiplier") == 1.0)
    for row in base.iter_rows(named=True):
        context.log.info(f"fold {fold.key} {row['strategy']}: Sharpe {row['sharpe']:.2f} "
                         f"[{row['sharpe_ci_low']:.2f}, {row['sharpe_ci_high']:.2f}], return {row['total_return']:.1%}, "
                         f"MDD {row['max_drawdown']:.1%}" + (f", {row['trades']} trades" if row['trades'] else ""))
    context.add_output_metadata({
        "fold": fold.key, "partial": fold.partial, "pair_policy": book.pair_policy,
        "regime_source": sector_book.regime_source, "survivorship_bias": SURVIVORSHIP_NOTE,
        "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
        "bandit_posterior": dg.MetadataValue.md(md_table(book.posterior.filter(
            pl.col("strategy") == "sector_book").drop("strategy"))),
        "dagster/row_count": book.daily.height,
    })
    return {"main": book.daily, "trades": book.trades, "posterior": book.posterior, "regimes": book.selections,
            "metrics": book.metrics.with_columns(pl.lit(fold.partial).alias("partial"),
                                                 pl.lit(sector_book.regime_source).alias("regime_source"))}


def _weekly_probs(bars: pl.DataFrame, sectors: pl.DataFrame, fold) -> pl.DataFrame:
    from ml.regimes.hmm import HmmConfig, sector_observations
    from ml.strategies.sector_regime import weekly_refit_probabilities

    obs = sector_observations(bars, sectors, HmmConfig(mode="basket"))
    days = (bars.filter((pl.col("ticker") == "SPY") & (pl.col("date") <= fold.test_end))["date"].unique().sort())
    before = days.filter(days < fold.test_start)
    start = before[-1] if before.len() else fold.test_start
    return weekly_refit_probabilities(obs, days.filter(days >= start).to_list())


@dg.asset(key=EVAL_SECTOR_BOOK_WALK_FORWARD, group_name=GROUP, kinds={"duckdb", "html"},
          ins={"books": dg.AssetIn(EVAL_SECTOR_BOOK), "folds": dg.AssetIn(REF_FOLDS),
               "calendar": dg.AssetIn(REF_TRADING_CALENDAR, metadata={"columns": ["source"]})},
          automation_condition=eager_when_checks_pass())
def sector_book_walk_forward(context: dg.AssetExecutionContext, sector_book: SectorBookResource,
                             warehouse: WarehouseResource, books: dict[str, pl.DataFrame],
                             folds: pl.DataFrame, calendar: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The sector book's yearly test windows stitched into one track (metrics with Sharpe CIs at 1x/2x/3x costs,
    trade statistics), the design's reference window 2025-03-15 .. 2025-12-15 next to its published numbers,
    the bandit's posterior per fold, the HTML report ``sector_book.html``."""
    from ml.reports.sector_book import render_sector_book_report

    daily = books["main"]
    yearly = yearly_keys(folds)
    keys = [k for k in yearly if daily.height and k in set(daily["fold"])]
    if not keys:
        raise dg.Failure("no evaluated sector-book fold yet: materialize eval/sector_book for the fold partitions")
    missing = sorted(set(yearly) - set(keys))
    if missing:
        context.log.warning(f"sector-book track without folds {missing} (not evaluated yet)")
    track = stitch_walk_forward(daily, keys)
    trades = books["trades"].filter(pl.col("fold").is_in(keys))
    metrics = book_metrics(track, trades)
    lo, hi = PUBLISHED["window"]
    reference = window_metrics(track, trades, lo, hi) if track["date"].max() >= lo else pl.DataFrame()
    base = metrics.filter(pl.col("cost_multiplier") == 1.0)
    path = render_sector_book_report(
        warehouse.report_dir() / "sector_book.html", track=track, metrics=metrics, reference=reference,
        trades=trades, posterior=books["posterior"].filter(pl.col("fold").is_in(keys)),
        regimes=books["regimes"].filter(pl.col("fold").is_in(keys)),
        per_fold=books["metrics"].filter(pl.col("fold").is_in(keys) & (pl.col("cost_multiplier") == 1.0)),
        source=calendar["source"][0], code_version=code_version())
    for row in base.filter(pl.col("strategy").is_in(BOOK_VARIANTS)).iter_rows(named=True):
        context.log.info(f"sector book {row['strategy']}: Sharpe {row['sharpe']:.2f} [{row['sharpe_ci_low']:.2f}, "
                         f"{row['sharpe_ci_high']:.2f}], CAGR {row['cagr']:.1%}, MDD {row['max_drawdown']:.1%}, "
                         f"{row['trades']} trades, win rate {row['win_rate'] or 0:.1%}")
    context.log.info(SURVIVORSHIP_NOTE)
    context.add_output_metadata({"report": dg.MetadataValue.path(str(path)), "folds": keys, "missing_folds": missing,
                                 "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
                                 "survivorship_bias": SURVIVORSHIP_NOTE, "dagster/row_count": track.height})
    out = {"main": track, "metrics": metrics}
    if reference.height:
        out["reference"] = reference
    return out

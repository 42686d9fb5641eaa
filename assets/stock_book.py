"""Group ``stock_book``: the prescreen funnel -> stock RL ensemble -> decision engine book per fold, and its
walk-forward track.

Lineage: the funnel scores every stock with the fold's prescreen models (``models/prescreen``, causal
generations on the train window) on the feature store's rows and the VIX band (``regimes/vix``); the RL members
train on the funnel's train rows before the fold's validation slice, the ensemble weights and the position cap
are chosen on the validation slice; the test window is only evaluated."""
import dagster as dg
import polars as pl

from assets._metadata import fold_lookahead_result, md_table
from assets.keys import (
    EVAL_STOCK_BOOK,
    EVAL_STOCK_BOOK_WALK_FORWARD,
    FEATURES_DAILY,
    MODELS_PRESCREEN,
    MODELS_STOCK_FUNNEL,
    MODELS_STOCK_RL,
    RAW_BARS,
    RAW_INDEX_BARS,
    REF_FOLDS,
    REF_SECTORS,
    REF_TRADING_CALENDAR,
    REGIMES_VIX,
)
from infra.automation import eager_when_checks_pass
from infra.io_managers import FoldModel, LoadedModel
from infra.partitions import folds_partitions
from infra.queues import rl_step_tags
from infra.resources import FeatureStoreResource, RegimeResource, StockBookResource, WarehouseResource
from infra.version import code_version
from ml.evaluation import stitch_walk_forward
from ml.folds import fold_from_frame, yearly_keys
from ml.backtest.stock_book import TRADE_SCHEMA
from ml.lookahead import check_lookahead
from ml.stock_book import (
    BOOK_FEATURES,
    MARKET_FEATURES,
    STOCK_VARIANTS,
    SURVIVORSHIP_NOTE,
    build_stock_data,
    funnel_frame,
    rl_action_fn,
    run_fold_stock_book,
    stock_metrics,
    stock_universe,
    train_stock_ensemble,
)

GROUP = "stock_book"
BOOK_COLUMNS = [*BOOK_FEATURES, *MARKET_FEATURES]
SHOWN = ["strategy", "total_return", "cagr", "ann_vol", "sharpe", "sharpe_ci_low", "sharpe_ci_high", "max_drawdown",
         "avg_turnover", "cost_drag", "trades", "win_rate", "profit_factor", "avg_hold_days"]
BOOK_INPUTS = {
    "funnel": dg.AssetIn(MODELS_STOCK_FUNNEL),
    "features": dg.AssetIn(FEATURES_DAILY, metadata={"columns": BOOK_COLUMNS}),
    "bars": dg.AssetIn(RAW_BARS, metadata={"columns": ["open", "close"]}),
    "vix": dg.AssetIn(REGIMES_VIX),
    "sectors": dg.AssetIn(REF_SECTORS),
    "folds": dg.AssetIn(REF_FOLDS),
}


def _scores(models, features: pl.DataFrame, vix: pl.DataFrame, end) -> pl.DataFrame:
    from ml.prescreen import score_prescreen

    first = models.generations[0].valid_from  # the first causally scored date (g1's, or after train_end)
    return score_prescreen(models, features, vix, start=first, end=end)


@dg.asset(key=MODELS_STOCK_FUNNEL, partitions_def=folds_partitions, group_name=GROUP, kinds={"duckdb"},
          ins={"prescreen": dg.AssetIn(MODELS_PRESCREEN), "features": dg.AssetIn(FEATURES_DAILY),
               "vix": dg.AssetIn(REGIMES_VIX), "sectors": dg.AssetIn(REF_SECTORS), "folds": dg.AssetIn(REF_FOLDS)})
def stock_funnel(context: dg.AssetExecutionContext, stock_book: StockBookResource, prescreen: LoadedModel,
                 features: pl.DataFrame, vix: pl.DataFrame, sectors: pl.DataFrame, folds: pl.DataFrame) -> pl.DataFrame:
    """Every stock scored each day by the prescreen model of the day's VIX regime (from the first causal
    generation's start to the test end), the technical composite, the rank by P(buy) and the day's top N."""
    fold = fold_from_frame(folds, context.partition_key)
    cfg = stock_book.settings()
    models = prescreen.model
    stocks = stock_universe(sectors, features)
    if not stocks:
        context.log.warning(f"fold {fold.key}: no stock with a GICS sector (ref/sectors) in the feature store: the "
                            "funnel is empty and the stock book holds cash")
    feats = features.filter(pl.col("date") <= fold.test_end)
    funnel = funnel_frame(_scores(models, feats, vix, fold.test_end), feats, stocks, cfg.top_n)
    train = funnel.filter((pl.col("date") <= fold.train_end) & (pl.col("rank") > 0))
    gens = [g.name for g in models.generations]
    if train.is_empty():
        context.log.warning(f"fold {fold.key}: no stock is scored on the train window (prescreen generations {gens}): "
                            "the stock RL members cannot train; set prescreen.generations >= 2")
    context.log.info(f"fold {fold.key}: funnel over {len(stocks)} stocks, top {cfg.top_n} by P(buy); scored from "
                     f"{funnel.filter(pl.col('rank') > 0)['date'].min()} (generations {gens})")
    context.add_output_metadata({"fold": fold.key, "stocks": len(stocks), "top_n": cfg.top_n, "generations": gens,
                                 "train_scored_rows": train.height, "dagster/row_count": funnel.height})
    return funnel


CHECK_SESSIONS = 400  # sessions before the train end the funnel's look-ahead check recomputes
REGIME_CODES = {"low": 0.0, "moderate": 1.0, "high": 2.0}


@dg.asset_check(asset=MODELS_STOCK_FUNNEL, blocking=True, name="stock_funnel_no_lookahead",
                additional_ins={"bars": dg.AssetIn(RAW_BARS), "index_bars": dg.AssetIn(RAW_INDEX_BARS),
                                "sectors": dg.AssetIn(REF_SECTORS), "folds": dg.AssetIn(REF_FOLDS),
                                "prescreen": dg.AssetIn(MODELS_PRESCREEN)})
def stock_funnel_no_lookahead(context: dg.AssetCheckExecutionContext, features: FeatureStoreResource,
                              regimes: RegimeResource, stock_book: StockBookResource, bars: pl.DataFrame,
                              index_bars: pl.DataFrame, sectors: pl.DataFrame, folds: pl.DataFrame,
                              prescreen: LoadedModel, funnel: pl.DataFrame):
    """Every funnel column the stock book and its RL policies read - P(buy), P(sell), generation, regime, the
    technical composite, the rank and the top-N flag - recomputed from raw bars and VIX truncated / garbled after
    K cutoffs (features, VIX bands and the frozen prescreen models rerun) must equal the full-history values up to
    each cutoff. Over the fold's last 400 train sessions and its test window. (The per-stock observation columns
    are feature-store columns, covered by ``daily_features_no_lookahead``.)"""
    from ml.features import compute_features
    from ml.regimes.vix import vix_regimes

    if funnel.is_empty():
        return dg.AssetCheckResult(passed=True, description="empty funnel: nothing to check")
    fold = fold_from_frame(folds, funnel["fold"][0])  # the run's fold partition
    cfg = stock_book.settings()
    stocks = stock_universe(sectors, bars)
    days = bars.filter(pl.col("ticker") == cfg.calendar_ticker)["date"].unique().sort()
    start = days.filter(days <= fold.train_end).tail(CHECK_SESSIONS)[0]
    window = bars.filter(pl.col("ticker").is_in([*stocks, cfg.calendar_ticker])
                         & pl.col("date").is_between(start, fold.test_end))
    fcfg, vcfg = features.config(), regimes.vix_config()

    def recompute(b: pl.DataFrame, ix: pl.DataFrame) -> pl.DataFrame:
        feats = compute_features(b, ix, fcfg)
        bands = vix_regimes(ix, feats.get_column("date").unique().sort(), vcfg)
        out = funnel_frame(_scores(prescreen.model, feats, bands, fold.test_end), feats, stocks, cfg.top_n)
        return out.with_columns(  # the check compares numbers: categorical columns as codes
            pl.col("top_n").cast(pl.Float64), pl.col("rank").cast(pl.Float64),
            pl.col("regime").replace_strict(REGIME_CODES, default=None, return_dtype=pl.Float64),
            pl.when(pl.col("generation") == "final").then(99.0)
            .otherwise(pl.col("generation").str.slice(1).cast(pl.Float64, strict=False)).alias("generation"))

    report = check_lookahead(recompute, window, index_bars.filter(pl.col("date") <= fold.test_end),
                             **features.fold_lookahead_kwargs())
    return fold_lookahead_result(context, report, fold.key)


@dg.asset(key=MODELS_STOCK_RL, partitions_def=folds_partitions, group_name=GROUP, kinds={"pytorch"},
          io_manager_key="model_io_manager", ins=BOOK_INPUTS, op_tags=rl_step_tags())
def stock_rl(context: dg.AssetExecutionContext, stock_book: StockBookResource, funnel: pl.DataFrame,
             features: pl.DataFrame, bars: pl.DataFrame, vix: pl.DataFrame, sectors: pl.DataFrame,
             folds: pl.DataFrame) -> FoldModel:
    """The stock RL ensemble (PPO / SAC / TD3 over the candidate slots, permutation-equivariant policies) trained
    on the funnel's scored train rows before the validation slice; composite weights on the validation slice."""
    fold = fold_from_frame(folds, context.partition_key)
    members = stock_book.members()
    scored = funnel.filter((pl.col("rank") > 0) & (pl.col("date") <= fold.train_end))
    meta = {"members": members, "train": [fold.train_start, fold.train_end], "validation_start": fold.validation_start}
    if not members or scored.is_empty():
        why = "no RL member configured" if not members else "no causally scored train row in the funnel"
        context.log.warning(f"fold {fold.key}: {why}: the stock book runs without the RL signal")
        return FoldModel(None, {}, meta)
    stocks = stock_universe(sectors, bars)
    data = build_stock_data(bars.filter(pl.col("date") <= fold.train_end), features, funnel, vix, stocks,
                            scored["date"].min(), fold.train_end)
    result = train_stock_ensemble(data.panel, fold.validation_start, members, stock_book.env_config(),
                                  stock_book.ppo_config(), stock_book.offpolicy_config(), log=context.log.info)
    table = pl.DataFrame(result.table)
    context.add_output_metadata({
        "fold": fold.key, "members": members, "train_seconds": {k: round(v, 1) for k, v in result.seconds.items()},
        "ensemble": dg.MetadataValue.md(md_table(table)), "train_days": result.train_days,
        "validation_days": result.validation_days})
    return FoldModel(result.policy, {"main": table, "curves": result.curves}, meta)


@dg.asset(key=EVAL_STOCK_BOOK, partitions_def=folds_partitions, group_name=GROUP, kinds={"duckdb"},
          ins={**BOOK_INPUTS, "stock_rl": dg.AssetIn(MODELS_STOCK_RL)})
def stock_book_fold(context: dg.AssetExecutionContext, stock_book: StockBookResource, funnel: pl.DataFrame,
                    features: pl.DataFrame, bars: pl.DataFrame, vix: pl.DataFrame, sectors: pl.DataFrame,
                    folds: pl.DataFrame, stock_rl: LoadedModel) -> dict[str, pl.DataFrame]:
    """The stock book's variants (regime weights + conviction sizing, max-Sharpe sizing, equal signal weights) and
    the comparisons (SPY, equal-weight stocks monthly, prescreen-only top N) over the fold's test window: daily
    returns, trades, per-signal attribution, metrics at 1x/2x/3x costs, the position-cap search on the
    validation slice, and the decision log (``decisions.stock_daily``)."""
    fold = fold_from_frame(folds, context.partition_key)
    cfg = stock_book.settings()
    policy = stock_rl.model.load(context.log.warning)  # None (logged) when missing / unreadable
    stocks = stock_universe(sectors, bars)
    first = funnel.filter(pl.col("rank") > 0)["date"].min()
    if not stocks or first is None:
        context.log.warning(f"fold {fold.key}: no scored stock in the funnel ({len(stocks)} stocks with a GICS sector): "
                            "the stock book holds cash and only the SPY comparison is evaluated")
        stocks, first = [], fold.validation_start or fold.train_end
    elif first > fold.test_start:
        raise dg.Failure(f"fold {fold.key}: the funnel's first scored day {first} is after the test start "
                         f"{fold.test_start}: re-materialize models/stock_funnel for this fold")
    data = build_stock_data(bars.filter(pl.col("date") <= fold.test_end), features, funnel, vix, stocks,
                            first, fold.test_end)
    panel = data.panel
    if policy is not None:
        data.inputs.rl_action = rl_action_fn(policy, panel, stock_book.env_config())
    test = panel.index_range(fold.test_start, fold.test_end)
    validation = None  # the position-cap search needs scored days on the validation slice
    if fold.validation_start and first < fold.validation_start:
        validation = panel.index_range(fold.validation_start, fold.train_end)
    else:
        context.log.warning(f"fold {fold.key}: no scored validation slice (funnel from {first}): the position cap "
                            f"stays at its default {cfg.engine.max_position_base:.0%}")
    book = run_fold_stock_book(data, test, validation, cfg)
    base = book.metrics.filter(pl.col("cost_multiplier") == 1.0)
    for row in base.iter_rows(named=True):
        context.log.info(f"fold {fold.key} {row['strategy']}: Sharpe {row['sharpe']:.2f} "
                         f"[{row['sharpe_ci_low']:.2f}, {row['sharpe_ci_high']:.2f}], return {row['total_return']:.1%}, "
                         f"MDD {row['max_drawdown']:.1%}" + (f", {row['trades']} trades" if row['trades'] else ""))
    context.add_output_metadata({
        "fold": fold.key, "partial": fold.partial, "rl_policy": "ensemble" if policy is not None else "none",
        "position_cap": book.position_cap, "survivorship_bias": SURVIVORSHIP_NOTE,
        "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
        "attribution": dg.MetadataValue.md(md_table(book.attribution)),
        "dagster/row_count": book.daily.height,
    })
    out = {"main": book.daily, "trades": book.trades, "attribution": book.attribution,
           "metrics": book.metrics.with_columns(pl.lit(fold.partial).alias("partial"),
                                                pl.lit(policy is not None).alias("rl_signal")),
           "decisions": book.decisions}
    if book.cap_search.height:
        out["cap_search"] = book.cap_search
    return out


@dg.asset(key=EVAL_STOCK_BOOK_WALK_FORWARD, group_name=GROUP, kinds={"duckdb", "html"},
          ins={"books": dg.AssetIn(EVAL_STOCK_BOOK), "ensembles": dg.AssetIn(MODELS_STOCK_RL, metadata={"part": "main"}),
               "folds": dg.AssetIn(REF_FOLDS),
               "calendar": dg.AssetIn(REF_TRADING_CALENDAR, metadata={"columns": ["source"]})},
          automation_condition=eager_when_checks_pass())
def stock_book_walk_forward(context: dg.AssetExecutionContext, warehouse: WarehouseResource,
                            books: dict[str, pl.DataFrame], ensembles: pl.DataFrame, folds: pl.DataFrame,
                            calendar: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """The stock book's yearly test windows stitched into one track: metrics with Sharpe CIs at 1x/2x/3x costs,
    trade statistics, P&L per signal source, the equal-regime-weights ablation, the HTML report
    ``stock_book.html``."""
    from ml.reports.stock_book import render_stock_book_report

    daily = books["main"]
    yearly = yearly_keys(folds)
    keys = [k for k in yearly if daily.height and k in set(daily["fold"])]
    if not keys:
        raise dg.Failure("no evaluated stock-book fold yet: materialize eval/stock_book for the fold partitions")
    missing = sorted(set(yearly) - set(keys))
    if missing:
        context.log.warning(f"stock-book track without folds {missing} (not evaluated yet)")
    track = stitch_walk_forward(daily, keys)
    def of_folds(frame: pl.DataFrame | None) -> pl.DataFrame:  # a part no fold wrote loads without columns
        return frame.filter(pl.col("fold").is_in(keys)) if frame is not None and "fold" in frame.columns else pl.DataFrame()

    trades = of_folds(books.get("trades"))
    if trades.is_empty():
        trades = pl.DataFrame(schema={"fold": pl.Utf8, **TRADE_SCHEMA})
    metrics = stock_metrics(track, trades)
    attribution = of_folds(books.get("attribution"))
    attribution = (attribution.group_by("strategy", "source").agg(pl.col("pnl").sum()).sort("strategy", "source")
                   if attribution.height else pl.DataFrame(schema={"strategy": pl.Utf8, "source": pl.Utf8,
                                                                   "pnl": pl.Float64}))
    base = metrics.filter(pl.col("cost_multiplier") == 1.0)
    path = render_stock_book_report(
        warehouse.report_dir() / "stock_book.html", track=track, metrics=metrics, attribution=attribution,
        trades=trades, per_fold=of_folds(books.get("metrics")).filter(pl.col("cost_multiplier") == 1.0)
        if "metrics" in books and "fold" in books["metrics"].columns else pl.DataFrame(),
        cap_search=of_folds(books.get("cap_search")), ensemble=of_folds(ensembles),
        source=calendar["source"][0], code_version=code_version())
    for row in base.filter(pl.col("strategy").is_in(STOCK_VARIANTS)).iter_rows(named=True):
        context.log.info(f"stock book {row['strategy']}: Sharpe {row['sharpe']:.2f} [{row['sharpe_ci_low']:.2f}, "
                         f"{row['sharpe_ci_high']:.2f}], CAGR {row['cagr']:.1%}, MDD {row['max_drawdown']:.1%}, "
                         f"{row['trades']} trades, win rate {row['win_rate'] or 0:.1%}")
    context.log.info(SURVIVORSHIP_NOTE)
    context.add_output_metadata({"report": dg.MetadataValue.path(str(path)), "folds": keys, "missing_folds": missing,
                                 "metrics": dg.MetadataValue.md(md_table(base.select(SHOWN))),
                                 "attribution": dg.MetadataValue.md(md_table(attribution)),
                                 "survivorship_bias": SURVIVORSHIP_NOTE, "dagster/row_count": track.height})
    return {"main": track, "metrics": metrics, "attribution": attribution}

-- Stable analyst views (documented in warehouse/README.md). Recreated after every evaluation run.
CREATE SCHEMA IF NOT EXISTS analytics;

-- Folds evaluated before partial folds existed have no `partial` column yet (they were all complete).
ALTER TABLE eval.fold_metrics ADD COLUMN IF NOT EXISTS partial BOOLEAN;

-- One row per fold and strategy at normal costs: test-window performance with the fold's windows. A partial
-- fold (its test year so far) says partial = true; evaluated_through is the last earned day of its evaluation.
CREATE OR REPLACE VIEW analytics.fold_performance AS
SELECT m.fold, f.train_start, f.train_end, f.test_start, f.test_end, m.strategy,
       m.total_return, m.cagr, m.ann_vol, m.sharpe, m.sharpe_ci_low, m.sharpe_ci_high, m.sortino,
       m.max_drawdown, m.mdd_peak_date, m.mdd_trough_date, m.recovery_days, m.calmar,
       m.avg_turnover, m.hit_rate, m.worst_day, m.var_5, m.cvar_5, m.psr, m.risk_free,
       m.sharpe_diff_spy_buy_hold, m.sharpe_diff_equal_weight,
       coalesce(m.partial, false) OR m.end_date < f.test_end AS partial, m.end_date AS evaluated_through
FROM eval.fold_metrics m JOIN ref.folds f ON f.key = m.fold
WHERE m.cost_multiplier = 1.0;

-- The stitched out-of-sample track of the default yearly folds: one row per strategy and day (partial: the
-- day belongs to a fold whose test year was not complete when it was evaluated).
CREATE OR REPLACE VIEW analytics.walk_forward_daily AS
SELECT strategy, date, fold, net_return, turnover, cost, equity, drawdown, partial
FROM eval.walk_forward_daily;

-- Average weights and day counts per VIX reporting bucket (VIX at the decision close), per fold and strategy.
CREATE OR REPLACE VIEW analytics.allocations_by_regime AS
SELECT fold, strategy, vix_bucket, count(*) AS days,
       avg(w_SPY) AS w_spy, avg(w_QQQ) AS w_qqq, avg(w_TLT) AS w_tlt, avg(w_GLD) AS w_gld,
       avg(w_cash) AS w_cash, avg(w_SPY + w_QQQ) AS equity_exposure, avg(vix) AS avg_vix
FROM eval.allocations
GROUP BY ALL;

-- The most recent weights of every strategy in the newest fold that has an evaluation.
CREATE OR REPLACE VIEW analytics.latest_allocation AS
SELECT a.* FROM eval.allocations a
WHERE a.fold = (SELECT fold FROM eval.allocations a2 JOIN ref.folds f ON f.key = a2.fold
                ORDER BY f.test_end DESC, f.test_start DESC LIMIT 1)
QUALIFY row_number() OVER (PARTITION BY a.strategy ORDER BY a.date DESC) = 1;

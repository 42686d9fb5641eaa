-- Sector-book walk-forward view (documented in warehouse/README.md). Recreated after every
-- eval/sector_book_walk_forward run.
CREATE SCHEMA IF NOT EXISTS analytics;

-- The stitched sector-book track's metrics per strategy at 1x, 2x and 3x costs, with trade statistics.
CREATE OR REPLACE VIEW analytics.sector_book_performance AS
SELECT strategy, cost_multiplier, start_date, end_date, total_return, cagr, ann_vol, sharpe, sharpe_ci_low,
       sharpe_ci_high, max_drawdown, avg_turnover, cost_drag, avg_gross_exposure, trades, win_rate, avg_win,
       avg_loss, profit_factor, avg_hold_days
FROM eval.sector_book_walk_forward_metrics;

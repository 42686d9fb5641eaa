-- Sector-book analyst views (documented in warehouse/README.md). Recreated after every eval/sector_book run.
CREATE SCHEMA IF NOT EXISTS analytics;

-- Every sector-book trade with its fold's test window: one row per fold, variant, ticker and entry. P&L is a
-- fraction of equity (costs and borrow included); holding_days counts earned sessions; closed = false for a
-- trade still open at the end of its fold's test window (marked, not closed).
CREATE OR REPLACE VIEW analytics.sector_book_trades AS
SELECT t.fold, t.strategy, t.ticker, t."group", t.sleeve, t.side, t.entry_date, t.exit_date, t.pnl,
       t.holding_days, t.closed, t.pnl > 0 AS win, f.test_start, f.test_end
FROM eval.sector_book_trades t JOIN ref.folds f ON f.key = t.fold;

-- The Thompson bandit's Beta posterior per fold and group at the end of each fold's test window (variant
-- sector_book: the default book), with the share of test days the group was selected.
CREATE OR REPLACE VIEW analytics.bandit_posterior AS
WITH days AS (SELECT fold, count(DISTINCT date) AS n FROM eval.sector_book_regimes GROUP BY fold)
SELECT p.fold, p."group", p.alpha, p.beta, p.mean, p.sd, p.trades, p.wins, p.selected_days,
       p.selected_days / nullif(d.n, 0) AS selected_share
FROM eval.sector_book_posterior p LEFT JOIN days d ON d.fold = p.fold
WHERE p.strategy = 'sector_book';

-- Stock-book analyst views (documented in warehouse/README.md). Recreated after every eval/stock_book run.
CREATE SCHEMA IF NOT EXISTS analytics;

-- The stock book's decision log (variant stock_book): one row per fold, decision day (close of t) and candidate
-- with its signals, regime weights, agreement, conviction, action and the target weight that trades at the open
-- of t+1 (trade_weight = target - held; everything in a row is known at the close of t).
CREATE OR REPLACE VIEW analytics.stock_decisions AS
SELECT d.fold, d.date, d.ticker, d.rank, d.top_n, d.held, d.buy_probability, d.sell_probability,
       d.signal_prescreen, d.signal_rl, d.signal_technical, d.weight_prescreen, d.weight_rl, d.weight_technical,
       d.score, d.agreement, d.conviction, d.action, d.stop_hit, d.held_weight, d.target_weight,
       d.target_weight - d.held_weight AS trade_weight, d.band, d.vix, d.max_position
FROM decisions.stock_daily d;

-- Every stock-book trade with its fold's test window and whether it won (P&L is a fraction of equity, costs
-- included; holding_days counts earned sessions; closed = false for a trade open at the window's end).
CREATE OR REPLACE VIEW analytics.stock_book_trades AS
SELECT t.fold, t.strategy, t.ticker, t.entry_date, t.exit_date, t.pnl, t.holding_days, t.closed, t.exit_reason,
       t.entry_conviction, t.entry_prescreen, t.entry_rl, t.entry_technical, t.max_weight, t.pnl > 0 AS win,
       f.test_start, f.test_end
FROM eval.stock_book_trades t JOIN ref.folds f ON f.key = t.fold;

-- Per fold and VIX band: the stock book's average invested fraction, names held and candidates per day.
CREATE OR REPLACE VIEW analytics.stock_book_exposure AS
SELECT fold, band, count(*) AS days, avg(long_exposure) AS avg_invested, avg(positions) AS avg_positions,
       avg(candidates) AS avg_candidates, avg(vix) AS avg_vix
FROM eval.stock_book_daily WHERE strategy = 'stock_book' GROUP BY fold, band;

-- Analyst views on the decision log (documented in warehouse/README.md). Recreated after every append.
CREATE SCHEMA IF NOT EXISTS analytics;

-- One row per decision and asset (cash included): held going in, the policy's choice, the decision.
CREATE OR REPLACE VIEW analytics.decision_weights AS
SELECT decision_date, source, fold, breaker_active,
       unnest(assets) AS asset, unnest(held_weights) AS held_weight,
       unnest(policy_weights) AS policy_weight, unnest(target_weights) AS target_weight
FROM decisions.daily;

-- The live (paper) track of the daily decisions with its risk context, one row per decision date.
CREATE OR REPLACE VIEW analytics.paper_track AS
SELECT decision_date, source, fold, paper_return, baseline_return, paper_equity, trailing_drawdown,
       vix, vix_bucket, breaker_active, breaker_reason, turnover, catch_up
FROM decisions.daily;

-- The newest decision: what to hold into the next session.
CREATE OR REPLACE VIEW analytics.latest_decision AS
SELECT decision_date, source, fold, asset, target_weight, policy_weight, breaker_active
FROM analytics.decision_weights
WHERE decision_date = (SELECT max(decision_date) FROM decisions.daily);

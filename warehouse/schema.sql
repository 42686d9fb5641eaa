-- regimeflow warehouse schema (idempotent; applied on every write connection).
-- Natural keys are primary keys: writes are upserts, a re-run never duplicates rows.
CREATE SCHEMA IF NOT EXISTS raw;
CREATE SCHEMA IF NOT EXISTS ref;

-- Daily OHLCV bars, split+dividend adjusted. A bar dated t is known at the close of t (16:00 ET).
CREATE TABLE IF NOT EXISTS raw.bars (
    ticker      VARCHAR   NOT NULL,
    date        DATE      NOT NULL,
    open        DOUBLE    NOT NULL,
    high        DOUBLE    NOT NULL,
    low         DOUBLE    NOT NULL,
    close       DOUBLE    NOT NULL,
    adj_close   DOUBLE    NOT NULL,
    volume      DOUBLE    NOT NULL,
    source      VARCHAR   NOT NULL,   -- 'csv' | 'yahoo' | 'synthetic'
    ingested_at TIMESTAMP NOT NULL,   -- UTC time this row's current values were written
    PRIMARY KEY (ticker, date)
);

-- Index levels (VIX, VIX3M), index points. VIX closes 16:15 ET, after the equity close.
CREATE TABLE IF NOT EXISTS raw.index_bars (
    symbol      VARCHAR   NOT NULL,
    date        DATE      NOT NULL,
    open        DOUBLE    NOT NULL,
    high        DOUBLE    NOT NULL,
    low         DOUBLE    NOT NULL,
    close       DOUBLE    NOT NULL,
    source      VARCHAR   NOT NULL,
    ingested_at TIMESTAMP NOT NULL,
    PRIMARY KEY (symbol, date)
);

CREATE TABLE IF NOT EXISTS ref.sectors (
    ticker      VARCHAR   NOT NULL PRIMARY KEY,
    name        VARCHAR,
    gics_sector VARCHAR   NOT NULL,
    source      VARCHAR   NOT NULL,
    ingested_at TIMESTAMP NOT NULL
);

-- Trading days actually observed for the reference ETF (default SPY); session = 0-based index.
CREATE TABLE IF NOT EXISTS ref.trading_calendar (
    date             DATE    NOT NULL PRIMARY KEY,
    session          INTEGER NOT NULL,
    reference_ticker VARCHAR NOT NULL,
    source           VARCHAR NOT NULL
);

-- One row per table per ingestion attempt, including rejected batches.
CREATE TABLE IF NOT EXISTS raw.ingest_log (
    run_id      VARCHAR   NOT NULL,
    table_name  VARCHAR   NOT NULL,
    source      VARCHAR   NOT NULL,
    description VARCHAR,
    rows_in     BIGINT    NOT NULL,
    inserted    BIGINT    NOT NULL,
    updated     BIGINT    NOT NULL,
    unchanged   BIGINT    NOT NULL,
    rejected    BIGINT    NOT NULL,
    status      VARCHAR   NOT NULL,   -- 'ok' | 'rejected' | 'failed'
    message     VARCHAR,
    started_at  TIMESTAMP NOT NULL,
    finished_at TIMESTAMP NOT NULL
);

-- Daily decisions: an APPEND-ONLY audit log (the pipeline inserts rows for new dates only; it never
-- updates or deletes one). Weights chosen at the close of decision_date, held into the next session.
CREATE SCHEMA IF NOT EXISTS decisions;
CREATE TABLE IF NOT EXISTS decisions.daily (
    decision_date        DATE      NOT NULL PRIMARY KEY,
    decided_at           TIMESTAMP NOT NULL,   -- UTC wall time the row was written
    run_id               VARCHAR   NOT NULL,   -- Dagster run that wrote it
    catch_up             BOOLEAN   NOT NULL,   -- decided after a later session had arrived (missed night)
    source               VARCHAR   NOT NULL,   -- csv | yahoo | synthetic (synthetic = not real prices)
    code_version         VARCHAR   NOT NULL,
    fold                 VARCHAR   NOT NULL,   -- fold whose policy decided
    policy_kind          VARCHAR   NOT NULL,   -- 'ppo'
    checkpoint_path      VARCHAR   NOT NULL,
    checkpoint_sha256    VARCHAR   NOT NULL,
    policy_data_hash     VARCHAR   NOT NULL,   -- sha256 of the policy's training data
    assets               VARCHAR[] NOT NULL,   -- order of every weight array, cash last
    obs_names            VARCHAR[] NOT NULL,
    observation          DOUBLE[]  NOT NULL,   -- exactly what the policy saw (before its own normaliser)
    held_weights         DOUBLE[]  NOT NULL,   -- held going into the close (part of the observation)
    policy_weights       DOUBLE[]  NOT NULL,   -- the policy's choice
    target_weights       DOUBLE[]  NOT NULL,   -- the decision, after the circuit breaker
    turnover             DOUBLE    NOT NULL,   -- sum |target - held|, incl. cash
    vix                  DOUBLE    NOT NULL,   -- VIX close of decision_date (index points)
    vix_band             VARCHAR,
    vix_bucket           VARCHAR,
    hmm_fold             VARCHAR,              -- fold whose sector HMMs gave the states
    sector_states        VARCHAR,              -- JSON {sector: Bull|Sideways|Bear}
    sector_probabilities VARCHAR,              -- JSON {sector: {p_bull, p_sideways, p_bear}}
    prescreen_fold       VARCHAR,
    prescreen_scores     VARCHAR,              -- JSON {ticker: {regime, buy_probability, sell_probability}}
    breaker_enabled      BOOLEAN   NOT NULL,
    breaker_active       BOOLEAN   NOT NULL,
    breaker_reason       VARCHAR,              -- why it tripped and what it moved ('' when not active)
    breaker_config       VARCHAR   NOT NULL,   -- JSON thresholds in force
    trailing_drawdown    DOUBLE    NOT NULL,   -- paper-track drawdown at the close (fraction <= 0)
    paper_return         DOUBLE,               -- earned on decision_date by the previous decision, net of costs
    baseline_return      DOUBLE,               -- equal weight over the risky assets, daily, no costs
    paper_equity         DOUBLE    NOT NULL,   -- paper track, 1.0 at the first decision
    inputs_as_of         VARCHAR,              -- JSON {input: newest row at decision time} (assets, VIX, sector:<name>)
    stale_inputs         VARCHAR[]             -- inputs behind the reference calendar at decision time
);
ALTER TABLE decisions.daily ADD COLUMN IF NOT EXISTS inputs_as_of VARCHAR;
ALTER TABLE decisions.daily ADD COLUMN IF NOT EXISTS stale_inputs VARCHAR[];

-- Failed Dagster runs, recorded by the run-failure sensor.
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.run_failures (
    run_id        VARCHAR   NOT NULL PRIMARY KEY,
    job_name      VARCHAR   NOT NULL,
    partition_key VARCHAR,
    trigger       VARCHAR,                     -- regimeflow/trigger tag: schedule, new_fold, drift, ...
    tags          VARCHAR,                     -- JSON of the run's tags
    failed_at     TIMESTAMP NOT NULL,          -- UTC
    failed_steps  VARCHAR[],
    message       VARCHAR,
    recorded_at   TIMESTAMP NOT NULL
);

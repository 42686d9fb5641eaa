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

"""regimeflow ML core: pure Python / NumPy / Polars / Torch. Never imports dagster or duckdb."""

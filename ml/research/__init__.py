"""Reproductions of the designs behind the project, on their own protocols (pure; no Dagster, no DuckDB)."""

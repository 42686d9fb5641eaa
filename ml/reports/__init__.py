"""Evaluation reports: behaviour analysis (:mod:`ml.reports.analysis`), PNG charts (:mod:`ml.reports.charts`,
matplotlib Agg) and self-contained HTML reports (:mod:`ml.reports.html`). Pure Python: no dagster, no duckdb.

Submodules are imported explicitly (``from ml.reports.analysis import ...``) so that the analysis tables do
not pull in matplotlib.
"""

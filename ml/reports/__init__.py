"""Evaluation reports: behaviour analysis (:mod:`ml.reports.analysis`), PNG charts (:mod:`ml.reports.charts`,
matplotlib Agg), self-contained HTML reports (:mod:`ml.reports.html`, Jinja2 templates in ``templates/``),
markdown tables (:mod:`ml.reports.markdown`) and the value formatting they share
(:mod:`ml.reports.formatting`). Pure Python: no dagster, no duckdb.

Submodules are imported explicitly (``from ml.reports.analysis import ...``) so that the analysis tables do
not pull in matplotlib (nor :mod:`ml.reports.markdown` jinja2).
"""

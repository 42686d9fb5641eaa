"""Thin Dagster asset definitions grouped by stage; they call ``ml`` and ``warehouse``."""

"""Dagster wiring: Definitions, resources, jobs (and later partitions, schedules, sensors)."""

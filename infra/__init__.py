"""Dagster plumbing that assets import: resources (config overrides on top of the ``ml`` defaults), IO
managers (warehouse frames and fold model artifacts), the fold partitions and the automation conditions.

A leaf package: it imports ``ml`` and ``warehouse``, never ``assets`` or ``orchestration``."""

"""Fold partitions: one Dagster partition per walk-forward fold (``2012`` … , ``seed-2008-2019``).

Dynamic, because folds depend on the data: the ``ref/folds`` asset computes the default folds from
the trading calendar, stores them in ``ref.folds`` and registers any new key here; the new-fold
sensor (automation) does the same when a new test year completes.
"""
import dagster as dg

FOLDS = "folds"
folds_partitions = dg.DynamicPartitionsDefinition(name=FOLDS)

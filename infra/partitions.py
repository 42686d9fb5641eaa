"""Fold partitions: one Dagster partition per walk-forward fold (``2012`` … , ``seed-2008-2019``).

Dynamic, because folds depend on the data: the ``ref/folds`` asset computes the default folds from
the trading calendar, stores them in ``ref.folds`` and registers any new key here; the new-fold
sensor (automation) does the same on the first session of a new test year (the fold is partial then: its
test window grows until the year's last weekday).
"""
import dagster as dg

FOLDS = "folds"
folds_partitions = dg.DynamicPartitionsDefinition(name=FOLDS)

"""Declarative automation (``AutomationCondition``) for the cheap derived assets.

``eager_when_checks_pass``: materialize after any dependency was updated (by any run: the ingest job, a
fold run, a manual materialization), never while a dependency or the asset itself is in progress, and only
when every blocking check on the dependencies passed. Blocking checks stop downstream steps *inside* the run
that ran them; this condition also keeps a failed check from leaking into later, separately launched runs.

Used for: the trading calendar, features, labels and VIX regimes (downstream of the blocking data-quality
and look-ahead checks), the live sector-HMM states (after a fold's HMMs are refit) and the walk-forward
report (after any fold's evaluation). Training assets are not automated: retraining is the sensors' job.

Conditions are evaluated by the ``regimeflow_automation`` sensor (see ``orchestration.sensors``).
"""
import dagster as dg


def eager_when_checks_pass() -> dg.AutomationCondition:
    return (
        dg.AutomationCondition.any_deps_updated().since_last_handled()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
        & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("eager, when the dependencies' blocking checks passed")

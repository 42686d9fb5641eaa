"""Rules that combine or overlay other strategies' proposals (pure NumPy): the VIX regime switcher
(:mod:`ml.strategies.vix_switcher`) and the stacked "model of models" (:mod:`ml.strategies.stacking`)."""

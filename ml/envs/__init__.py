"""Reinforcement-learning environments (pure NumPy/Torch): the market panel (``market_panel``) and the
allocation environment in two faces (``portfolio``). Import from the modules."""

"""Market regimes per fold: VIX bands (per date), sector HMMs (per sector × date), state clustering.

Timing convention: a regime dated t uses only data known at the close of day t (VIX: the 16:15 ET
close of t with the default ``vix_lag_days=0``); every fitted model (scaler, HMM, clustering) is
fitted on the fold's training window only.
"""

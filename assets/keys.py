"""Asset keys, named ``[schema, table]`` after the DuckDB table each asset writes."""
import dagster as dg

RAW_BARS = dg.AssetKey(["raw", "bars"])
RAW_INDEX_BARS = dg.AssetKey(["raw", "index_bars"])
REF_SECTORS = dg.AssetKey(["ref", "sectors"])
REF_TRADING_CALENDAR = dg.AssetKey(["ref", "trading_calendar"])
FEATURES_DAILY = dg.AssetKey(["features", "daily"])
FEATURES_REGISTRY = dg.AssetKey(["features", "registry"])
LABELS_FORWARD = dg.AssetKey(["labels", "forward"])
REF_FOLDS = dg.AssetKey(["ref", "folds"])
REGIMES_VIX = dg.AssetKey(["regimes", "vix"])
REGIMES_SECTOR_HMM = dg.AssetKey(["regimes", "sector_hmm"])
MODELS_PRESCREEN = dg.AssetKey(["models", "prescreen"])
MODELS_POLICY_PPO = dg.AssetKey(["models", "policy_ppo"])
EVAL_FOLD = dg.AssetKey(["eval", "fold"])
EVAL_WALK_FORWARD = dg.AssetKey(["eval", "walk_forward"])
REGIMES_SECTOR_HMM_LIVE = dg.AssetKey(["regimes", "sector_hmm_live"])
DECISIONS_DAILY = dg.AssetKey(["decisions", "daily"])

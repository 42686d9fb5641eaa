"""Asset keys. Where each asset is stored (tables, artifacts) is ``warehouse.catalog.CATALOG``."""
import dagster as dg

RAW_BARS = dg.AssetKey(["raw", "bars"])
RAW_INDEX_BARS = dg.AssetKey(["raw", "index_bars"])
REF_SECTORS = dg.AssetKey(["ref", "sectors"])
REF_TRADING_CALENDAR = dg.AssetKey(["ref", "trading_calendar"])
OPS_INPUT_FRESHNESS = dg.AssetKey(["ops", "input_freshness"])
FEATURES_DAILY = dg.AssetKey(["features", "daily"])
FEATURES_REGISTRY = dg.AssetKey(["features", "registry"])
LABELS_FORWARD = dg.AssetKey(["labels", "forward"])
REF_FOLDS = dg.AssetKey(["ref", "folds"])
REGIMES_VIX = dg.AssetKey(["regimes", "vix"])
REGIMES_SECTOR_HMM = dg.AssetKey(["regimes", "sector_hmm"])
MODELS_PRESCREEN = dg.AssetKey(["models", "prescreen"])
MODELS_POLICY_PPO = dg.AssetKey(["models", "policy_ppo"])
MODELS_POLICY_SAC = dg.AssetKey(["models", "policy_sac"])
MODELS_POLICY_TD3 = dg.AssetKey(["models", "policy_td3"])
MODELS_POLICY_ENSEMBLE = dg.AssetKey(["models", "policy_ensemble"])
MODELS_QLEARNING = dg.AssetKey(["models", "qlearning"])
RESEARCH_THESIS_MARKET = dg.AssetKey(["research", "thesis_market"])
RESEARCH_THESIS = dg.AssetKey(["research", "thesis_reproduction"])
#: The per-fold policies, by strategy name (the evaluation's and the decision's names).
POLICY_KEYS = {"ppo": MODELS_POLICY_PPO, "sac": MODELS_POLICY_SAC, "td3": MODELS_POLICY_TD3,
               "ensemble": MODELS_POLICY_ENSEMBLE}
MODELS_SECTOR_PAIRS = dg.AssetKey(["models", "sector_pairs"])
MODELS_PAIRS_QRDQN = dg.AssetKey(["models", "pairs_qrdqn"])
EVAL_SECTOR_BOOK = dg.AssetKey(["eval", "sector_book"])
EVAL_SECTOR_BOOK_WALK_FORWARD = dg.AssetKey(["eval", "sector_book_walk_forward"])
EVAL_FOLD = dg.AssetKey(["eval", "fold"])
EVAL_WALK_FORWARD = dg.AssetKey(["eval", "walk_forward"])
REGIMES_SECTOR_HMM_LIVE = dg.AssetKey(["regimes", "sector_hmm_live"])
DECISIONS_DAILY = dg.AssetKey(["decisions", "daily"])
MONITORING_DRIFT = dg.AssetKey(["monitoring", "drift"])

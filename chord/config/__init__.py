"""Configuration: the typed schema, recipe loading (strict YAML + dotted overrides) and staged recipes.

The face re-exports what the rest of chord and user code import; `chord.config.schema`,
`chord.config.recipe`, `chord.config.stages` and `chord.config.describe` (the keys for --help) hold the code.
"""

from chord.config.describe import describe_all, describe_key
from chord.config.recipe import load_config
from chord.config.schema import (
    EVAL_STATS,
    BenchmarkConfig,
    ChordConfig,
    ConfigError,
    EvalConfig,
    RewardConfig,
    RolloutConfig,
    check_keys,
    evaluates,
    needs_engine,
    pass_ks,
    rows_per_step,
    to_yaml,
    uses_expert,
    uses_rl,
    validate,
)

__all__ = ["EVAL_STATS", "BenchmarkConfig", "ChordConfig", "ConfigError", "EvalConfig", "RewardConfig",
           "RolloutConfig", "check_keys", "describe_all", "describe_key", "evaluates", "load_config", "needs_engine",
           "pass_ks", "rows_per_step", "to_yaml", "uses_expert", "uses_rl", "validate"]

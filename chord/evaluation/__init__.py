"""Evaluation with the rollout engine (`evaluate`), its metrics (`metrics`: pass@k) and the
exploration measures shared with training (`exploration`: distinct-n, all-equal groups, pass@k curves).
"""

from chord.evaluation.evaluate import (
    Benchmark,
    better,
    build_benchmarks,
    evaluate,
    load_benchmark,
    markdown_table,
    new_best,
    sampling_for,
    write_results,
)

__all__ = ["Benchmark", "better", "build_benchmarks", "evaluate", "load_benchmark", "markdown_table", "new_best",
           "sampling_for", "write_results"]

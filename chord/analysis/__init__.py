"""Analysis of finished runs: the run-folder reader, training phases over evaluation curves, seed statistics.

Pure python / numpy (and scipy for seed_stats' t quantiles, imported on first use): nothing here imports vLLM,
DeepSpeed or Triton.
"""

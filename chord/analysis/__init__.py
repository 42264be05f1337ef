"""Analysis of finished runs: training phases over evaluation curves, and seed statistics.

Pure python / numpy: nothing here imports vLLM, DeepSpeed or Triton.
"""

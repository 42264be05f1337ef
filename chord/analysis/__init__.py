"""Analysis of finished runs: the run-folder reader, training phases over evaluation curves, seed statistics.

Pure python / numpy: nothing here imports vLLM, DeepSpeed or Triton.
"""

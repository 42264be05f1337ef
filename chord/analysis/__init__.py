"""Analysis of finished runs and checkpoints: training phases, exploration, weight-spectrum diagnostics.

Pure torch / numpy: nothing here imports vLLM, DeepSpeed or Triton.
"""

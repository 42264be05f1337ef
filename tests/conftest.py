"""Shared test set-up: quiet, offline, small vLLM KV cache; the tiny model built once per session."""

import os

import torch

if not torch.cuda.is_available():  # Triton kernels run under the interpreter on CPU; must precede `import triton`
    os.environ.setdefault("TRITON_INTERPRET", "1")

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if not torch.cuda.is_available():  # on a GPU machine DeepSpeed must find CUDA
    os.environ.setdefault("DS_ACCELERATOR", "cpu")

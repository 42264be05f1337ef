#!/usr/bin/env bash
# GPU smoke test: on a machine with one CUDA GPU, one command checks the GPU path end to end and
# writes benchmarks/results/gpu_smoke_<gpu>_<date>.md (commit it):
#   1. the kernel tests on CUDA (Triton compiled for real, bf16 realistic shapes);
#   2. a repeated fixed batch through the real learner (ZeRO-3, bf16, loss.impl=triton, packed
#      micro-batches, 2+ per step): the expert log-prob must rise every step;
#   3. a few CHORD steps of the tiny model with vLLM + DeepSpeed ZeRO-3 + triton + packing + bf16, and
#      the same in fp32, whose log-prob gap guard (1e-3) proves vLLM gets the new weights every step,
#      and in fp32 with vLLM sleep mode (weights and KV cache released while the learner trains).
# A check whose engine is not installed (no vLLM: 3; no DeepSpeed: 2, 3) is reported "not run", never
# "pass"; exit status 0 all passed, 1 a check failed, 2 none failed but some did not run.
#     bash benchmarks/gpu_smoke.sh            # PYTHON=/path/to/python to use an existing environment
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
  # no CUDA torch here: make the GPU environment (needs a package index)
  [ -x .venv-gpu/bin/python ] || "$PY" -m venv .venv-gpu
  .venv-gpu/bin/pip install -q -e ".[gpu,test]"
  PY=.venv-gpu/bin/python
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset TRITON_INTERPRET DS_ACCELERATOR
work=$(mktemp -d /tmp/chord-gpu-smoke.XXXXXX)
set +e
timeout "${CHORD_KERNEL_TESTS_TIMEOUT:-1800}" "$PY" -m pytest tests/kernels -m kernels -q -p no:cacheprovider ${PYTEST_ARGS:-} > "$work/kernels.log" 2>&1
kernels=$?
set -e
tail -3 "$work/kernels.log"
"$PY" benchmarks/gpu_smoke.py --work "$work" --kernels-log "$work/kernels.log" --kernels-status $kernels

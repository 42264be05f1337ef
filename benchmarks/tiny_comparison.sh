#!/usr/bin/env bash
# CHORD-phi vs GRPO vs SFT vs SFT-then-RL on the built-in tiny task (CPU, ~10 minutes on 2 cores), then
# benchmarks/compare.py: the same evaluation (80 held-out sums, k = 4, every 10 steps) for every method.
#   bash benchmarks/tiny_comparison.sh [OUT_DIR]        (default benchmarks/results/tiny_comparison_<date>)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/tiny_comparison_$(date +%F)}
runs=${RUNS_DIR:-runs/tiny-comparison}
py=${PYTHON:-.venv/bin/python}
ev=(logging.progress_bar=false 'eval.benchmarks=[{name: tiny, source: "builtin:tiny", k: 4}]' eval.every=10 eval.at_start=true)
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
rm -rf "$runs"
"$py" chord/train.py recipes/tiny.yaml run.output_dir="$runs/chord-phi" trainer.steps=60 "${ev[@]}"
"$py" chord/train.py recipes/tiny_grpo.yaml run.output_dir="$runs/grpo" trainer.steps=60 "${ev[@]}"
"$py" chord/train.py recipes/tiny_sft.yaml run.output_dir="$runs/sft" trainer.steps=60 "${ev[@]}"
"$py" chord/train.py recipes/tiny_sft_then_rl.yaml run.output_dir="$runs/sft-then-rl" "${ev[@]}"
"$py" benchmarks/compare.py "$runs/chord-phi=CHORD-phi" "$runs/grpo=GRPO" "$runs/sft=SFT" \
    "$runs/sft-then-rl=SFT-then-RL" --out "$out"
{ echo "# Tiny comparison: provenance"; echo
  echo "- date: $(date -u +%FT%TZ); commit: $(git rev-parse --short HEAD); machine: $(uname -m), $(nproc) cores, CPU only"
  echo "- command: bash benchmarks/tiny_comparison.sh $*"
  echo "- evaluation: 80 held-out sums (builtin:tiny eval split), k = 4, temperature 1.0, every 10 steps"; } > "$out/provenance.md"

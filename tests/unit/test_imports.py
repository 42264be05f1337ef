"""`import chord` and the algorithm code work with vllm, deepspeed, triton, wandb and mlflow not importable."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

CODE = """
import sys
for name in ("vllm", "deepspeed", "triton", "wandb", "mlflow"):
    sys.modules[name] = None  # makes `import name` raise ImportError
import chord, chord.algo.chord_loss, chord.algo.advantage, chord.algo.mu_schedule, chord.config
import chord.batching, chord.rewards, chord.step_metrics, chord.train, chord.trackers, chord_kernels
from chord_kernels import chord_loss, token_logprobs
from chord.config.recipe import load_config
bad = [m for m in ("vllm", "deepspeed", "triton", "wandb", "mlflow") if sys.modules.get(m) is not None]
assert not bad, bad
print("ok")
"""


def test_import_without_heavy_runtimes():
    p = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]

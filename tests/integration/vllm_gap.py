"""Print the worst |learner log-prob - vLLM sampling log-prob| for a saved model folder.

Run as its own process (`python -m tests.integration.vllm_gap FOLDER`) so each vLLM engine in the
test session starts and dies cleanly.
"""

import sys

import torch  # noqa: E402

from chord.config import RolloutConfig  # noqa: E402
from chord.models.load import load_causal_lm, load_tokenizer  # noqa: E402
from chord.rollout.vllm_engine import VLLMEngine  # noqa: E402
from tests.integration.test_engines import _prompts, _worst_gap  # noqa: E402

if __name__ == "__main__":
    path = sys.argv[1]
    tok, model = load_tokenizer(path), load_causal_lm(path, torch.float32).eval()
    engine = VLLMEngine(path, RolloutConfig(max_new_tokens=12), seed=0, dtype="float32", max_model_len=256,
                        multiprocess=False)
    try:
        print(f"worst_gap={_worst_gap(model, engine.generate(_prompts(tok), 2, step=1)):.3e}")
    finally:
        engine.close()

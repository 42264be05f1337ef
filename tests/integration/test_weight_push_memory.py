"""A weight push holds about one bucket of extra host memory, not the model (measured, real DeepSpeed
ZeRO-3 learner on CPU); collecting the whole model first, as pushes used to, needs the model's size."""

import json

import pytest

from tests.integration.conftest import python, run_cli

pytestmark = pytest.mark.integration
MB = 2**20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """~111 MB of fp32 weights; the largest tensor (the 8,000 x 512 embedding, 15.6 MB) exceeds the bucket."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=8000, hidden_size=512, intermediate_size=1024, num_hidden_layers=8,
                      num_attention_heads=8, num_key_value_heads=8, tie_word_embeddings=False)
    path = tmp_path_factory.mktemp("push-model")
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    size = sum(p.numel() * 4 for p in Qwen2ForCausalLM(cfg).parameters())
    (path / "size.json").write_text(json.dumps(size))
    return path


def _peak(model_dir, bucket_mb, mode):
    # a fixed mmap threshold: glibc otherwise raises it as big blocks are freed and keeps later frees in its
    # heap, so RSS would count memory the push already released
    p = run_cli([python(), "-m", "tests.integration.push_memory", str(model_dir), str(bucket_mb), mode],
                env={"MALLOC_MMAP_THRESHOLD_": "65536"})
    assert p.returncode == 0, p.stderr[-3000:]
    peak, sent = map(int, next(x for x in p.stdout.splitlines() if x.startswith("RESULT ")).split()[1:])
    return peak, sent


def test_push_peak_host_memory_is_one_bucket_not_the_model(model_dir):
    size = json.loads((model_dir / "size.json").read_text())
    bucketed, sent = _peak(model_dir, 2, "bucketed")
    whole, sent_whole = _peak(model_dir, 2, "whole")
    assert sent == sent_whole > 0  # every tensor pushed both ways
    largest = 8000 * 512 * 4  # a tensor above the bucket size travels alone: the bound is max(bucket, largest)
    print(f"model {size / MB:.1f} MB, bucketed peak {bucketed / MB:.1f} MB, whole-model peak {whole / MB:.1f} MB")
    assert whole >= 0.8 * size  # the measurement sees a full-model copy when there is one
    assert bucketed <= 2 * max(2 * MB, largest) + 4 * MB  # one bucket in flight (+ its gather buffer), not the model
    assert bucketed < 0.8 * size


def test_buckets_equal_the_full_weights_and_land_in_an_engine(tiny_cache):
    """ZeRO-3 buckets smaller than the largest tensor: every tensor once, bit-equal, loaded by an engine
    (also run on CUDA by benchmarks/gpu_smoke.sh)."""
    from chord.models.tiny import build_tiny_model

    p = run_cli([python(), "tests/integration/bucket_equivalence.py", str(build_tiny_model(tiny_cache))])
    assert p.returncode == 0, p.stderr[-3000:]
    line = next(x for x in p.stdout.splitlines() if x.startswith("RESULT "))
    assert line.startswith("RESULT ok"), line

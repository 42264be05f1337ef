"""ZeRO-3 loads the policy partitioned: chord.build.build_learner, under partitioned_loading, has transformers
create the model inside deepspeed.zero.Init, and the learner then holds exactly the checkpoint's weights, the
same as a learner whose ranks each loaded the whole model first (2 ranks, CPU, real DeepSpeed; memory is
measured by benchmarks/bench_zero3_load.py, not here: these models are too small for it to mean anything)."""

import hashlib
import json
import re

import pytest

from tests.integration.conftest import run_cli, torchrun

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict:
    """Random-init Qwen2 folders: untied, and tied embeddings as in Qwen2.5-0.5B/1.5B (lm_head = embed_tokens)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    out = {}
    for kind in ("untied", "tied"):
        torch.manual_seed(0)
        cfg = Qwen2Config(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=2, head_dim=32, max_position_embeddings=128,
                          tie_word_embeddings=kind == "tied")
        out[kind] = tmp_path_factory.mktemp(f"zero3-load-{kind}")
        Qwen2ForCausalLM(cfg).save_pretrained(out[kind])
    return out


def checkpoint_hashes(model_dir) -> dict[str, str]:
    """{name: sha256 of the tensor's bytes} as stored in the folder's safetensors files."""
    import torch
    from safetensors import safe_open

    out = {}
    for path in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(path), "pt") as f:
            for name in f.keys():  # noqa: SIM118 (safe_open is not a mapping)
                raw = f.get_tensor(name).contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes()
                out[name] = hashlib.sha256(raw).hexdigest()
    return out


def load(model_dir, mode: str, out) -> dict:
    p = run_cli([*torchrun(), "-m", "tests.integration.zero3_load", str(model_dir), str(out), mode], timeout=300)
    if p.returncode:
        # the exception's own lines (rank 0's), not torchrun's ChildFailedError summary
        errors = [x for x in p.stderr.splitlines() if re.match(r"\[rank0\]: [\w.]*(Error|Exception)\b", x)]
        hint = (" (deepspeed.zero.Init saw world size 1: deepspeed.comm was not initialized before the load)"
                if "train_batch_size is not equal" in p.stderr else "")
        pytest.fail(f"{mode} load failed (exit {p.returncode}){hint}: {' | '.join(errors) or p.stderr[-3000:]}")
    return json.loads(out.read_text())


def check(result: dict, mode: str, model_dir) -> str:
    """Both ranks finished and hold the checkpoint's weights; returns the weights' digest."""
    ranks = result["ranks"]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["zero_stage"] == 3 for r in ranks)
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    stored = checkpoint_hashes(model_dir)
    for r in ranks:
        assert r["tensor_sha256"] == stored, mode  # every tensor once, bit-equal (a tied head is one tensor)
        assert len(r["loads"]) == 1
        # partitioned: transformers saw ZeRO-3 and the model came back partitioned; whole: an ordinary load
        assert r["loads"][0]["zero3_enabled"] is r["loads"][0]["partitioned"] is (mode == "partitioned")
        assert r["local_param_numel"] < r["numel"]  # each rank keeps its shard only
    return ranks[0]["weights_sha256"]


def test_partitioned_load_equals_whole_load(models, tmp_path):
    whole = check(load(models["untied"], "whole", tmp_path / "whole.json"), "whole", models["untied"])
    partitioned = load(models["untied"], "partitioned", tmp_path / "partitioned.json")
    assert check(partitioned, "partitioned", models["untied"]) == whole


def test_partitioned_load_keeps_tied_embeddings(models, tmp_path):
    result = load(models["tied"], "partitioned", tmp_path / "tied.json")
    check(result, "partitioned", models["tied"])
    assert "lm_head.weight" not in result["ranks"][0]["tensor_sha256"]  # still one Parameter with embed_tokens

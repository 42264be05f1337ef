"""Weight-spectrum diagnostics and repairs (chord.spectrum.maths / checkpoints / repairs, chord.diagnose):
principal angles against known rotations, drift, the random baseline, the randomized SVD, the UV merge and
layer reset on tiny Qwen2 models, streaming reads, and the CLI end to end."""

import json
import math

import pytest
import torch

from chord.diagnose import main
from chord.spectrum import model_folder as checkpoints
from chord.spectrum import repairs
from chord.spectrum.maths import (
    angle_stats,
    parse_name,
    principal_angles,
    random_baseline,
    randomized_svd,
    singular_value_drift,
    snap_k,
    spectrum,
    top_k,
)
from chord.spectrum.model_folder import InputError, ModelFolder, resolve_model_folder

pytestmark = pytest.mark.unit
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def orthonormal(n: int, k: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.linalg.qr(torch.randn(n, k, generator=g, dtype=dtype)).Q


def test_angles_identical_orthogonal_and_rotation_invariant():
    q = orthonormal(40, 10)
    a, b = q[:, :5], q[:, 5:]
    assert torch.allclose(principal_angles(a, a), torch.zeros(5, dtype=a.dtype), atol=1e-7)
    assert torch.allclose(torch.rad2deg(principal_angles(a, b)), torch.full((5,), 90.0, dtype=a.dtype))
    mix = orthonormal(5, 5, seed=1)  # another basis of the same span: still 0
    assert principal_angles(a, a @ mix).max() < 1e-7


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_rotation_by_known_angles_is_recovered(dtype):
    q = orthonormal(50, 8, dtype=dtype)
    a, c = q[:, :4], q[:, 4:]
    theta = torch.tensor([1e-3, 0.2, 0.7, 1.3], dtype=dtype)  # 1e-3 rad: arccos alone loses it in fp32
    b = a * torch.cos(theta) + c * torch.sin(theta)
    got = principal_angles(a, b @ orthonormal(4, 4, seed=2, dtype=dtype))
    assert torch.allclose(got, theta, rtol=1e-3 if dtype == torch.float32 else 1e-9, atol=1e-6)
    s = angle_stats(got, 50)
    assert s["max"] == pytest.approx(math.degrees(1.3), rel=1e-4)
    assert s["d_norm"] == pytest.approx(float(torch.sin(theta.double()).pow(2).mean().sqrt()), rel=1e-4)


def test_drift_of_a_scaled_matrix():
    w = torch.randn(30, 20, generator=torch.Generator().manual_seed(0))
    d = singular_value_drift(spectrum(w, 2).s, spectrum(1.03 * w, 2).s)
    assert d["drift_mean"] == pytest.approx(0.03, rel=1e-4) and d["drift_max"] == pytest.approx(
        0.03, rel=1e-4
    )
    assert singular_value_drift(spectrum(w, 2).s, spectrum(-w.T, 2).s)["drift_max"] < 1e-5  # sign, transpose


def test_random_baseline_matches_fresh_samples_and_theory():
    n, k = 64, 8
    base = random_baseline(n, k, samples=16)
    fresh = [
        angle_stats(principal_angles(orthonormal(n, k, 100 + 2 * i), orthonormal(n, k, 101 + 2 * i)), n)
        for i in range(16)
    ]
    assert base["mean"] == pytest.approx(sum(f["mean"] for f in fresh) / 16, abs=2.0)
    assert 60 < base["mean"] < 85  # far from 0: random subspaces are nearly orthogonal at k/n = 1/8
    assert base["d_norm"] ** 2 == pytest.approx(1 - k / n, abs=0.02)  # E[d_norm^2] = 1 - k/n exactly
    forced = random_baseline(16, 12, samples=2)  # 2k > n: 8 angles must be 0
    assert forced["forced_zero"] == 8 and forced["median"] < 1e-3


def test_randomized_svd_matches_exact_top_subspaces():
    g = torch.Generator().manual_seed(0)
    basis = orthonormal(300, 200, 1, torch.float32), orthonormal(200, 200, 2, torch.float32).T
    noise = 1e-3 * torch.randn(300, 200, generator=g)
    for decay, niter in ((0.9, 3), (0.97, 8)):  # a slow decay needs more power iterations
        w = basis[0] @ torch.diag(decay ** torch.arange(200.0)) @ basis[1] + noise
        u, s, v = randomized_svd(w, 10, niter=niter)
        ue, se, vhe = torch.linalg.svd(w, full_matrices=False)
        assert torch.allclose(s, se[:10], rtol=1e-5)
        assert principal_angles(u, ue[:, :10]).max() < 3e-3 and principal_angles(v, vhe[:10].T).max() < 3e-3
        sp = spectrum(w, 10, exact_rank=50)  # rank 200 > 50: the checked randomized path
        assert not sp.exact and sp.u.shape == (300, 10) and sp.v.shape == (200, 10) and sp.s.shape == (200,)
        assert principal_angles(sp.u, ue[:, :10]).max() < 3e-3


def test_top_k_and_snap():
    assert [top_k(100, f) for f in (0, 0.001, 0.01, 0.1, 1.0)] == [0, 1, 1, 10, 100]
    s = torch.tensor([10.0, 9.9, 9.8, 5.0, 4.9, 4.8, 4.7, 4.6, 4.5, 4.4, 4.3, 4.2])
    assert snap_k(s, 4) == 3 and snap_k(s, 0) == 0 and snap_k(s, 12) == 12


def test_parse_name_llama_qwen_mllama():
    assert parse_name("model.layers.3.self_attn.k_proj.weight") == (3, "k")
    assert parse_name("model.layers.12.mlp.down_proj.weight") == (12, "down")
    assert parse_name("model.language_model.layers.5.mlp.up_proj.weight") == (5, "up")
    assert parse_name("model.layers.3.self_attn.k_proj.bias") is None
    assert parse_name("model.vision_model.transformer.layers.0.self_attn.q_proj.weight") is None
    assert parse_name("model.embed_tokens.weight") is None
    assert parse_name("model.embed_tokens.weight", embeddings=True) == (None, "embed")
    assert parse_name("lm_head.weight", embeddings=True) == (None, "head")


def test_uv_merge_matrix_bounds():
    g = torch.Generator().manual_seed(0)
    t, d = torch.randn(12, 9, generator=g), torch.randn(12, 9, generator=g)
    assert repairs.uv_merge_matrix(t, d, 0.0)[0] is t
    assert torch.equal(repairs.uv_merge_matrix(t, d, 1.0, mode="vector")[0], d)
    assert torch.equal(repairs.uv_merge_matrix(t, d, 0.4, 0.6)[0], d)
    # the band formula itself (no shortcut): all donor bands = donor, none = target, to fp32 round-off
    st, sd = torch.linalg.svd(t, full_matrices=False), torch.linalg.svd(d, full_matrices=False)
    assert torch.allclose(repairs.merge_bands(tuple(st), tuple(sd), 9, 0, "vector")[0], d, atol=1e-5)
    assert torch.allclose(repairs.merge_bands(tuple(st), tuple(sd), 4, 5, "vector")[0], d, atol=1e-5)
    assert torch.allclose(repairs.merge_bands(tuple(st), tuple(sd), 0, 0, "direction")[0], t, atol=1e-5)
    # direction mode at full rank: donor directions, target singular values
    w, defects = repairs.merge_bands(tuple(st), tuple(sd), 9, 0, "direction")
    assert torch.allclose(torch.linalg.svdvals(w), st.S, atol=1e-5) and defects["u_orth_defect"] < 1e-5
    half, info = repairs.uv_merge_matrix(t, d, 0.3, 0.2)
    assert (info["k_top"], info["k_tail"]) == (3, 2) and info["u_orth_defect"] > 1e-3  # mixed bases
    assert not torch.allclose(half, t) and not torch.allclose(half, d)
    info = repairs.uv_merge_matrix(t, d, 0.5, 0.5, snap=True)[1]
    assert info["k_top"] > 0 and info["k_tail"] > 0 and info["k_top"] + info["k_tail"] <= 9


# ---- tiny models on disk ----


def save_model(path, seed: int, noise: float = 0.0, intermediate: int = 48, shard: str | None = None):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=intermediate,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(noise * torch.randn(p.shape, generator=g))
    model.save_pretrained(str(path), **({"max_shard_size": shard} if shard else {}))
    (path / "tokenizer_config.json").write_text(json.dumps({"marker": seed}))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "a": save_model(root / "a", 0),
        "b": save_model(root / "b", 1, noise=0.01),
        "c": save_model(root / "c", 2, noise=0.05, shard="40KB"),
        "wide": save_model(root / "wide", 0, intermediate=64),
    }


def tensors(path) -> dict[str, torch.Tensor]:
    f = ModelFolder(path)
    return dict(f.iter_tensors(f.names()))


def test_streaming_reads_one_tensor_at_a_time(models, monkeypatch):
    import safetensors.torch

    def forbidden(*a, **k):
        raise AssertionError("whole-file load")

    monkeypatch.setattr(safetensors.torch, "load_file", forbidden)
    monkeypatch.setattr(safetensors.torch, "load", forbidden)
    reads = []
    real = checkpoints.safe_open

    class Counting:
        def __init__(self, *a, **k):
            self.f = real(*a, **k)

        def __enter__(self):
            self.f.__enter__()
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def get_tensor(self, name):
            reads.append(name)
            return self.f.get_tensor(name)

        def __getattr__(self, attr):
            return getattr(self.f, attr)

    monkeypatch.setattr(checkpoints, "safe_open", Counting)
    folder = ModelFolder(models["c"])
    assert len(folder.shards()) > 1  # the sharded layout, through the index json
    stream = folder.iter_tensors(folder.names())
    assert reads == []  # lazy: nothing read before the first next()
    for i in range(3):
        name, t = next(stream)
        assert reads == folder.names()[: i + 1] and t.shape == folder.shape(name)


def test_uv_merge_model_zero_and_full(models, tmp_path, monkeypatch):
    a, b = tensors(models["a"]), tensors(models["c"])
    zero = repairs.uv_merge(models["a"], models["c"], tmp_path / "zero", top_frac=0.0, progress=False)
    assert all(torch.equal(t, a[n]) for n, t in tensors(zero).items()) and tensors(zero).keys() == a.keys()
    full = repairs.uv_merge(models["a"], models["c"], tmp_path / "full", top_frac=1.0, progress=False)
    for n, t in tensors(full).items():
        assert torch.equal(t, b[n] if parse_name(n) else a[n]), n  # biases, norms, embeddings: the target's
    assert json.loads((full / "tokenizer_config.json").read_text()) == {"marker": 0}
    assert json.loads((full / "chord_repair.json").read_text())["repair"] == "uv_merge"
    top = tensors(repairs.uv_merge(models["a"], models["c"], tmp_path / "top", 0.25, progress=False))
    q = "model.layers.1.self_attn.q_proj.weight"
    assert not torch.equal(top[q], a[q]) and not torch.equal(top[q], b[q])
    with pytest.raises(InputError, match="not empty"):
        repairs.uv_merge(models["a"], models["c"], tmp_path / "top", 0.25, progress=False)
    with pytest.raises(InputError, match="shape"):  # refused before anything is written
        repairs.uv_merge(models["a"], models["wide"], tmp_path / "bad", 0.25, progress=False)

    def boom(*a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(repairs, "uv_merge_matrix", boom)  # a failure mid-write leaves no half-written folder
    with pytest.raises(RuntimeError):
        repairs.uv_merge(models["a"], models["c"], tmp_path / "bad", 0.25, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "top", "zero"]


def test_layer_reset_copies_exactly_the_named_layers(models, tmp_path):
    a, c = tensors(models["a"]), tensors(models["c"])
    out = tensors(repairs.layer_reset(models["a"], models["c"], tmp_path / "r", [1], progress=False))
    for n, t in out.items():
        moved = n.startswith("model.layers.1.") and t.dim() == 2
        assert torch.equal(t, c[n] if moved else a[n]), n
    assert sum(n.startswith("model.layers.1.") and t.dim() == 2 for n, t in out.items()) == 7
    emb = tensors(
        repairs.layer_reset(
            models["a"], models["c"], tmp_path / "e", [], include_embeddings=True, progress=False
        )
    )
    assert {n for n in emb if not torch.equal(emb[n], a[n])} == {
        "model.embed_tokens.weight",
        "lm_head.weight",
    }
    assert repairs.parse_layers("0:2", 3) == [0, 1] == repairs.parse_layers("0-1", 3)
    assert repairs.parse_layers("0,2", 3) == [0, 2] and repairs.parse_layers("0:0.34", 3) == [0]
    with pytest.raises(InputError, match="outside"):
        repairs.parse_layers("2:5", 3)


def test_cli_end_to_end(models, tmp_path, capsys):
    out = tmp_path / "diag"
    argv = [
        str(models[x]) for x in "abc"
    ] + f"--out {out} --k-frac 0.25 --baseline-samples 4 --embeddings".split()
    assert main(argv) == 0
    summary = (out / "summary.md").read_text()
    assert "| q |" in summary and "a -> c" in summary and "b -> c" in summary
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert len(rows) == 3 * (3 * 7 + 2)  # (a,b) (b,c) (a,c) x (3 layers x 7 matrices + embed, head)
    assert {r["matrix"] for r in rows if r["layer"] is None} == {"embed", "head"} and "| head |" in summary
    assert (out / "table.csv").read_text().count("\n") == len(rows) + 1
    for i, j in ((0, 1), (1, 2), (0, 2)):
        assert (out / f"heatmap_{i}-{j}.png").read_bytes()[:8] == PNG_MAGIC
    ab = [r for r in rows if r["comparison"] == "a -> b"]
    ac = [r for r in rows if r["comparison"] == "a -> c"]
    mean = lambda rs, key: sum(r[key] for r in rs) / len(rs)  # noqa: E731
    assert mean(ab, "drift_mean") < mean(ac, "drift_mean")  # noise 0.01 vs 0.05
    assert mean(ab, "angle_u_mean") < mean(ac, "angle_u_mean") < mean(ac, "base_u_mean")
    repaired = tmp_path / "rep"
    pair = f"--target {models['a']} --donor {models['c']}".split()
    assert main(["repair", "layer-reset", *pair, "--layers", "0:1", "--out", str(repaired)]) == 0
    assert json.loads((repaired / "chord_repair.json").read_text())["layers"] == [0]
    merge = ["--top-frac", "0.2", "--tail-frac", "0.1", "--mode", "vector"]
    assert main(["repair", "uv-merge", *pair, *merge, "--out", str(tmp_path / "uv")]) == 0


def test_cli_bad_input_is_one_line_exit_2(models, tmp_path, capsys):
    ckpt = tmp_path / "run" / "checkpoints" / "step_4"
    ckpt.mkdir(parents=True)
    (ckpt / "trainer_state.json").write_text("{}")
    cases = [
        ([str(tmp_path / "missing"), str(models["a"])], "no such"),
        ([str(models["a"]), str(models["wide"])], "shape"),
        ([str(ckpt), str(models["a"])], "python -m chord.export"),
        ([str(tmp_path / "run"), str(models["a"])], "python -m chord.export"),
        ([str(models["a"]), str(models["b"]), "--matrices", "q,zz"], "unknown type"),
        (
            (f"repair layer-reset --target {models['a']} --donor {models['wide']} --layers 0 "
             f"--out {tmp_path / 'x'}").split(),
            "shape",
        ),
    ]
    for argv, expected in cases:
        capsys.readouterr()
        assert main(argv + ([] if argv[0] == "repair" else ["--out", str(tmp_path / "o")])) == 2, argv
        err = capsys.readouterr().err.strip()
        assert expected in err and len(err.splitlines()) == 1, err


def test_run_folder_resolves_to_its_final_export(models, tmp_path):
    import shutil

    run = tmp_path / "myrun"
    shutil.copytree(models["a"], run / "final")
    (run / "checkpoints").mkdir()
    assert resolve_model_folder(run) == run / "final"

"""chunked and triton (interpreter on CPU, CUDA when present) against chord.algo.chord_loss on full
float64 logits (the gold), and the autograd token gradients against a hand derivation (oracle.py).

    python -m pytest tests/kernels -m kernels      # ~25 s on 2 CPU cores
"""

import importlib.util
import math
import os
import subprocess
import sys

import pytest
import torch

from chord.algo.chord_loss import chord_loss as objective
from chord_kernels import EXPERT, IGNORED, ROLLOUT, LossSettings, ScoredTokens, chord_loss, token_logprobs
from chord_kernels.chunked import loss_and_token_grads
from tests.kernels.oracle import Scalars, token_terms

pytestmark = pytest.mark.kernels

if importlib.util.find_spec("triton") is not None:  # not imported here: triton_chord sets TRITON_INTERPRET first
    IMPLS = ["chunked", "triton"]
else:  # pragma: no cover
    IMPLS = ["chunked", pytest.param("triton", marks=pytest.mark.skip(reason="triton not installed"))]

CUDA = torch.cuda.is_available()
SHAPES = [(1, 5, 7), (13, 7, 37), (50, 33, 130)]  # N = 1, N and V not multiples of any block, H odd


def logits_reference(x, w, b, temperature, dtype):
    return (x.to(dtype) @ w.to(dtype).t() + b.to(dtype)) / temperature


def make(case: str, n: int, h: int, v: int, seed: int = 0, temperature: float = 1.0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, h, generator=g) * 0.7
    w = torch.randn(v, h, generator=g) * 0.7
    b = torch.randn(v, generator=g) * 0.1
    y = torch.randint(0, v, (n,), generator=g)
    lp = torch.log_softmax(logits_reference(x, w, b, temperature, torch.float64),
                           -1).gather(-1, y[:, None])[:, 0].float()
    kind = torch.randint(0, 3, (n,), generator=g)
    adv = torch.randn(n, generator=g)
    old = lp + 0.3 * torch.randn(n, generator=g)  # ratios inside and outside the clip window
    if case == "all_rollout":
        kind[:] = ROLLOUT
    elif case == "all_expert":
        kind[:] = EXPERT
    elif case == "clipped":  # A > 0, r = e^0.5 > 1.2: clipped branch, zero gradient
        kind[:], adv, old = ROLLOUT, adv.abs() + 0.1, lp - 0.5
    elif case == "dual":  # A < 0, r = e^2 > c = 3: dual-clip cap
        kind[:], adv, old = ROLLOUT, -(adv.abs() + 0.1), lp - 2.0
    elif case == "ignored":
        kind[::2] = IGNORED
    ref = lp + 0.2 * torch.randn(n, generator=g)
    return x, w, b, y, kind, old, adv, ref


SETTINGS = ("sft_weight", "eps_low", "eps_high", "dual_clip", "kl_coef", "entropy_coef", "sft_exponents",
            "sft_cutoff_prob", "tis_cap")


def split(kw):
    """kwargs -> (LossSettings, the op's other arguments); `scaled` (a test switch) is neither."""
    return (LossSettings(**{k: kw[k] for k in SETTINGS if k in kw}),
            {k: v for k, v in kw.items() if k not in SETTINGS and k != "scaled"})


def token_scale(kw, n):
    """A per-token aggregation factor (chord.batching.aggregation_scales) when the case sets `scaled`."""
    return 0.5 + torch.rand(n, generator=torch.Generator().manual_seed(11)) if kw.get("scaled") else None


def gold(x, w, b, y, kind, old, adv, ref, kw):
    """The objective itself (chord.algo.chord_loss) on full float64 logits, autograd for every gradient."""
    settings, a = split(kw)
    xs, ws, bs = (t.double().requires_grad_() for t in (x, w, b))
    logprobs = torch.log_softmax(logits_reference(xs, ws, bs, a["temperature"], torch.float64), -1)
    logp = logprobs.gather(-1, y[:, None])[:, 0]
    ent = -(logprobs.exp() * logprobs).sum(-1)
    scale = token_scale(kw, len(y))
    loss, _ = objective(logp, ent, kind, old.double(), adv.double(), mu=a["mu"], settings=settings,
                        n_rollout=a["n_rollout"], n_expert=a["n_expert"], ref_logp=ref.double(),
                        scale=None if scale is None else scale.double())
    loss.backward()
    return loss.detach(), logp.detach(), ent.detach(), xs.grad, ws.grad, bs.grad


def device(impl):
    return "cuda" if impl == "triton" and CUDA else "cpu"  # Triton on CPU = the interpreter


def run(impl, x, w, b, y, kind, old, adv, ref, kw, chunk=16, with_metrics=False):
    dev = device(impl)
    settings, a = split(kw)
    xs, ws, bs = (t.to(dev).clone().requires_grad_() for t in (x, w, b))
    scale = token_scale(kw, len(y))
    tokens = ScoredTokens(*(t.to(dev) for t in (y, kind, old, adv, ref)),
                          scale=None if scale is None else scale.to(dev))
    out = chord_loss(xs, ws, tokens, settings, bias=bs, impl=impl, chunk_size=chunk, **a)
    out.loss.backward()
    got = tuple(t.cpu() for t in (out.loss.detach(), out.logp, out.entropy, xs.grad, ws.grad, bs.grad))
    return (got, {k: v.cpu() for k, v in out.metrics.items()}) if with_metrics else got


def close(actual, expected, rel, what):
    scale = max(expected.abs().max().item(), 1e-3)
    err = (actual.double() - expected.double()).abs().max().item()
    assert err <= rel * scale, f"{what}: max error {err:.3g} > {rel:g} x scale {scale:.3g}"


def kwargs(n, kind, **over):
    kw = dict(mu=0.3, sft_weight="phi", eps_low=0.2, eps_high=0.2, dual_clip=None, kl_coef=0.0, entropy_coef=0.0,
              temperature=1.0, n_rollout=float((kind == ROLLOUT).sum()) + 3, n_expert=float((kind == EXPERT).sum()) + 2)
    kw.update(over)
    return kw


CASES = [
    ("mixed", {}), ("all_rollout", {}), ("all_expert", {"sft_weight": "none"}), ("all_expert", {"sft_weight": "phi"}),
    ("all_expert", {"sft_weight": "is"}), ("clipped", {}), ("dual", {"dual_clip": 3.0}), ("ignored", {}),
    ("mixed", {"kl_coef": 0.1}), ("mixed", {"entropy_coef": 0.05}), ("mixed", {"temperature": 0.7}),
    ("mixed", {"mu": 0.0}), ("mixed", {"mu": 1.0}),
    # the knobs of docs/algorithm.md: per-token aggregation factors, the open SFT weight family, TIS
    ("mixed", {"scaled": True}), ("all_expert", {"sft_weight": "one_minus_p", "sft_cutoff_prob": 0.3}),
    ("all_expert", {"sft_weight": "power", "sft_exponents": (0.5, 2.0)}), ("mixed", {"tis_cap": 1.2}),
]


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("case,over", CASES,
                         ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for c, o in CASES])
def test_fp32_matches_float64_reference(impl, shape, case, over):
    x, w, b, y, kind, old, adv, ref = make(case, *shape, temperature=over.get("temperature", 1.0))
    kw = kwargs(shape[0], kind, **over)
    exp = gold(x, w, b, y, kind, old, adv, ref, kw)
    got = run(impl, x, w, b, y, kind, old, adv, ref, kw)
    for a, e, what in zip(got, exp, ("loss", "logp", "entropy", "dx", "dW", "db")):
        close(a, e, 1e-5, what)


def test_branches_are_exercised():
    """Guard against a test set that silently never clips: the clip/dual cases do zero gradients."""
    x, w, b, y, kind, old, adv, ref = make("clipped", 13, 7, 37)
    got = run("chunked", x, w, b, y, kind, old, adv, ref, kwargs(13, kind))
    assert got[0].item() != 0 and got[3].abs().max().item() == 0.0
    x, w, b, y, kind, old, adv, ref = make("dual", 13, 7, 37)
    assert run("chunked", x, w, b, y, kind, old, adv, ref, kwargs(13, kind, dual_clip=3.0))[3].abs().max() == 0.0
    assert run("chunked", x, w, b, y, kind, old, adv, ref, kwargs(13, kind))[3].abs().max() > 0.0


@pytest.mark.parametrize("impl", IMPLS)
def test_bf16_inputs_within_bars(impl):
    x, w, b, y, kind, old, adv, ref = make("mixed", 50, 33, 130)
    x, w, b = x.bfloat16(), w.bfloat16(), b.bfloat16()
    kw = kwargs(50, kind)
    exp = gold(x.float(), w.float(), b.float(), y, kind, old, adv, ref, kw)  # fp64 gold on the same rounded inputs
    got = run(impl, x, w, b, y, kind, old, adv, ref, kw)
    assert (got[1].double() - exp[1]).abs().max() <= 1e-3
    assert (got[2].double() - exp[2]).abs().max() <= 5e-3
    close(got[0], exp[0], 1e-3, "loss")
    for a, e, what in zip(got[3:], exp[3:], ("dx", "dW", "db")):
        assert a.dtype == torch.bfloat16
        close(a, e, 1e-2, what)  # one bf16 rounding of the result


@pytest.mark.parametrize("impl", IMPLS)
def test_split_with_global_denominators_equals_full_batch(impl):
    x, w, b, y, kind, old, adv, ref = make("mixed", 50, 33, 130, seed=3)
    kw = kwargs(50, kind, entropy_coef=0.02)
    full = run(impl, x, w, b, y, kind, old, adv, ref, kw)
    parts = [run(impl, x[sl], w, b, y[sl], kind[sl], old[sl], adv[sl], ref[sl], kw)
             for sl in (slice(0, 21), slice(21, 50))]
    close(parts[0][0] + parts[1][0], full[0], 1e-5, "loss")
    close(parts[0][4] + parts[1][4], full[4], 1e-5, "dW")
    close(torch.cat([parts[0][3], parts[1][3]]), full[3], 1e-5, "dx")


@pytest.mark.parametrize("impl", ["torch", *IMPLS])
def test_invariants_and_extreme_logits(impl):
    x, w, b, y, kind, old, adv, ref = make("mixed", 13, 7, 37, seed=5)
    for scale in (1.0, 1e4):  # |z| ~ 1e4 in fp32: no NaN, no positive log-probs
        xs = x * scale
        lp, ent = token_logprobs(xs.to(device(impl)), w.to(device(impl)), y.to(device(impl)), b.to(device(impl)),
                                 impl=impl, chunk_size=5)
        assert torch.isfinite(lp).all() and torch.isfinite(ent).all()
        assert (lp <= 0).all() and (ent >= 0).all() and (ent <= math.log(37) + 1e-5).all()
        out = run(impl, xs, w, b, y, kind, old, adv, ref, kwargs(13, kind))
        assert all(torch.isfinite(t).all() for t in out)


@pytest.mark.parametrize("impl", ["torch", *IMPLS])
def test_token_logprobs_matches_reference(impl):
    x, w, b, y, *_ = make("mixed", 50, 33, 130, seed=7, temperature=0.7)
    lp_ref = torch.log_softmax(logits_reference(x, w, b, 0.7, torch.float64), -1)
    dev = device(impl)
    lp, ent = token_logprobs(x.to(dev), w.to(dev), y.to(dev), b.to(dev), temperature=0.7, impl=impl, chunk_size=16)
    assert lp.dtype == ent.dtype == torch.float32 and not lp.requires_grad
    close(lp.cpu(), lp_ref.gather(-1, y[:, None])[:, 0], 1e-5, "logp")
    close(ent.cpu(), -(lp_ref.exp() * lp_ref).sum(-1), 1e-5, "entropy")


@pytest.mark.parametrize("impl", IMPLS)
def test_empty_terms_are_exactly_zero_never_nan(impl):
    """A micro-batch without expert (or rollout, or any) tokens: that term is 0, even with n = 0."""
    x, w, b, y, kind, old, adv, ref = make("all_rollout", 13, 7, 37, seed=11)
    kw = kwargs(13, kind, mu=0.5, n_expert=0.0)
    got = run(impl, x, w, b, y, kind, old, adv, ref, kw)
    exp = gold(x, w, b, y, kind, old, adv, ref, kw)
    for a, e, what in zip(got, exp, ("loss", "logp", "entropy", "dx", "dW", "db")):
        assert torch.isfinite(a).all(), what
        close(a, e, 1e-5, what)
    kind = torch.zeros_like(kind)  # all ignored, both denominators 0
    got = run(impl, x, w, b, y, kind, old, adv, ref, kwargs(13, kind, n_rollout=0.0, n_expert=0.0))
    assert got[0].item() == 0.0 and all(t.abs().max().item() == 0.0 for t in got[3:])


@pytest.mark.parametrize("impl", IMPLS)
def test_chunk_size_does_not_change_the_result(impl):
    x, w, b, y, kind, old, adv, ref = make("mixed", 50, 33, 130, seed=13)
    kw = kwargs(50, kind, entropy_coef=0.01, kl_coef=0.05)
    a, c = (run(impl, x, w, b, y, kind, old, adv, ref, kw, chunk=1),
            run(impl, x, w, b, y, kind, old, adv, ref, kw, chunk=64))
    for u, v, what in zip(a, c, ("loss", "logp", "entropy", "dx", "dW", "db")):
        close(u, v, 1e-5, what)


def test_import_without_triton():
    """`import chord_kernels` and the torch impls work with triton unimportable (docs/architecture.md#heavy-imports)."""
    code = ("import sys; sys.modules['triton'] = None\n"
            "import torch, chord_kernels\n"
            "x = torch.randn(3, 4, requires_grad=True); w = torch.randn(5, 4, requires_grad=True)\n"
            "t = chord_kernels.ScoredTokens(torch.tensor([0, 1, 2]), torch.tensor([1, 2, 0]), "
            "torch.zeros(3), torch.ones(3))\n"
            "o = chord_kernels.chord_loss(x, w, t, chord_kernels.LossSettings(), mu=0.5, n_rollout=1, n_expert=1)\n"
            "o.loss.backward(); assert x.grad is not None and "
            "'triton' not in [m for m in sys.modules if sys.modules[m]]\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert p.returncode == 0, p.stderr[-2000:]


@pytest.mark.skipif(not CUDA, reason="needs CUDA: realistic bf16 shapes through cuBLAS mixed-dtype GEMMs")
@pytest.mark.parametrize("impl", ["chunked", "triton"])
def test_cuda_bf16_realistic_shape(impl):
    """Several chunks, V not a power of two, bias and T != 1: the GPU path end to end vs an fp64 gold."""
    x, w, b, y, kind, old, adv, ref = make("mixed", 1000, 512, 9001, seed=17, temperature=0.9)
    x, w, b = x.bfloat16(), w.bfloat16(), b.bfloat16()
    kw = kwargs(1000, kind, temperature=0.9, entropy_coef=0.01, kl_coef=0.05)
    exp = gold(x.float(), w.float(), b.float(), y, kind, old, adv, ref, kw)
    xs, ws, bs = (t.cuda().requires_grad_() for t in (x, w, b))
    settings, a = split(kw)
    out = chord_loss(xs, ws, ScoredTokens(*(t.cuda() for t in (y, kind, old, adv, ref))), settings, bias=bs,
                     impl=impl, chunk_size=256, **a)
    out.loss.backward()
    assert (out.logp.cpu().double() - exp[1]).abs().max() <= 1e-3
    assert (out.entropy.cpu().double() - exp[2]).abs().max() <= 5e-3
    close(out.loss.detach().cpu(), exp[0], 1e-3, "loss")
    for a, e, what in zip((xs.grad, ws.grad, bs.grad), exp[3:], ("dx", "dW", "db")):
        assert a.dtype == torch.bfloat16
        close(a.cpu(), e, 1e-2, what)


@pytest.mark.parametrize("case,over", CASES,
                         ids=[f"{c}-{'-'.join(f'{k}={v}' for k, v in o.items())}" for c, o in CASES])
def test_autograd_token_gradients_equal_the_hand_derivation(case, over):
    """g = dL/dlogp and h = dL/dH from autograd on chord.algo.chord_loss == the closed forms in oracle.py."""
    x, w, b, y, kind, old, adv, ref = make(case, 50, 33, 130, temperature=over.get("temperature", 1.0))
    kw = kwargs(50, kind, **over)
    settings, a = split(kw)
    g = torch.Generator().manual_seed(1)
    logp = -torch.rand(50, generator=g) * 4  # log-probs of the targets
    ent = torch.rand(50, generator=g) * 3
    scale = token_scale(kw, 50)
    loss, _, gg, hh = loss_and_token_grads(logp, ent, ScoredTokens(y, kind, old, adv, ref, scale), settings, a["mu"],
                                           a["n_rollout"], a["n_expert"])
    s = Scalars(a["mu"], kw["sft_weight"], kw["eps_low"], kw["eps_high"], kw["dual_clip"], kw["kl_coef"],
                kw["entropy_coef"], a["temperature"], a["n_rollout"], a["n_expert"],
                **{k: kw[k] for k in ("sft_exponents", "sft_cutoff_prob", "tis_cap") if k in kw})
    o_loss, o_g, o_h = token_terms(logp, ent, kind, old, adv, ref, s, scale)
    close(loss, o_loss, 1e-6, "loss")
    close(gg, o_g, 1e-6, "g")
    close(hh, o_h, 1e-6, "h")


@pytest.mark.parametrize("impl", IMPLS)
def test_op_metrics_are_the_objectives_metrics(impl):
    """The op returns chord.algo.chord_loss's metrics, merged over chunks: equal to the full-logits path's."""
    x, w, b, y, kind, old, adv, ref = make("mixed", 50, 33, 130, seed=19)
    kw = kwargs(50, kind, kl_coef=0.05, dual_clip=3.0)
    _, ref_m = run("torch", x, w, b, y, kind, old, adv, ref, kw, with_metrics=True)
    _, got_m = run(impl, x, w, b, y, kind, old, adv, ref, kw, chunk=7, with_metrics=True)
    assert got_m.keys() == ref_m.keys() and "sft/weight_mean" in got_m and "kl/ref" in got_m
    for k in ref_m:
        close(got_m[k], ref_m[k], 1e-5, k)

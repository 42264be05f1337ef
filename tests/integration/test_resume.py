"""Exact resume: a run killed at any moment (even mid-save) and resumed equals the uninterrupted run."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from chord.checkpoint.ds_weights import policy_state_dict
from chord.step_metrics import NOT_REPRODUCIBLE
from tests.integration.conftest import ROOT, python, run_cli, torchrun

pytestmark = pytest.mark.integration
STEPS = 4


def _args(cache, out, *extra):
    return [str(ROOT / "recipes/tiny.yaml"), f"trainer.steps={STEPS}", "trainer.save_every=2",
            f"model.cache_dir={cache}", f"run.output_dir={out}", "logging.progress_bar=false",
            "trainer.prompts_per_step=8", "trainer.samples_per_prompt=4", "trainer.expert_per_step=8",
            "trainer.micro_batch_size=24", *extra]


def _metrics(out):
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if not k.startswith(NOT_REPRODUCIBLE)} for r in rows]


def _assert_same_run(a, b):
    ma, mb = _metrics(a), _metrics(b)
    assert [r["step"] for r in mb] == list(range(1, STEPS + 1))
    diff = [(r["step"], k, r[k], q.get(k)) for r, q in zip(ma, mb) for k in r.keys() | q.keys() if r.get(k) != q.get(k)]
    assert not diff, diff[:10]  # every logged number of every step, bit for bit
    wa, wb = load_file(str(a / "final/model.safetensors")), load_file(str(b / "final/model.safetensors"))
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def _launch(ranks, cache, out, env=None, *extra):
    cmd = [python()] if ranks == 1 else torchrun()
    return run_cli([*cmd, "chord/train.py", *_args(cache, out, *extra)], env=env)


# ZeRO-3 with 2+ packed micro-batches per rank (400-token budget; the tiny rows are 20-160 tokens), and a
# vLLM engine in every rank (in-process: a SIGKILL takes it down with the rank; resume re-pushes to each)
Z3_PACKED = ("deepspeed.zero_stage=3", "trainer.max_tokens_per_micro_batch=400", "rollout.placement=per_rank")
LAYOUTS = [(1, ()), (2, ()), (2, Z3_PACKED)]


@pytest.fixture(scope="module", params=LAYOUTS, ids=["1rank", "2ranks", "2ranks-zero3-packed-per_rank"])
def reference(request, tiny_cache, tmp_path_factory):
    ranks, extra = request.param
    out = tmp_path_factory.mktemp(f"ref{ranks}") / "run"
    p = _launch(ranks, tiny_cache, out, None, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    return ranks, extra, out


def _only(reference, ranks, why):
    """The reference run dir if it has `ranks` ranks (ZeRO-0, padded); skip the others (CI time)."""
    if reference[:2] != (ranks, ()):
        pytest.skip(why)
    return reference[2]


def test_kill_during_checkpoint_save_then_resume(reference, tiny_cache, tmp_path):
    ranks, extra, ref = reference
    if (ranks, extra) == (2, ()):
        pytest.skip("2 ranks: the ZeRO-3 packed layout covers it (CI time); "
                    "the ZeRO-0 reference serves the world-size test")
    out = tmp_path / "run"
    p = _launch(ranks, tiny_cache, out, {"CHORD_TEST_CRASH_IN_SAVE": "4"}, *extra)  # SIGKILL between files
    assert p.returncode != 0 and (out / "checkpoints/.tmp-step_4").is_dir()
    assert (out / "checkpoints/latest").read_text() == "step_2"
    if extra:  # the run really had several micro-batches per rank
        assert all(r["batch/micro_batches"] >= 2 for r in _metrics(out))
    p = _launch(ranks, tiny_cache, out, None, *extra)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "ignoring half-written checkpoint" in p.stderr and "resumed from" in p.stderr
    _assert_same_run(ref, out)


def test_sigkill_mid_run_then_resume(reference, tiny_cache, tmp_path):
    ranks, ref = 1, _only(reference, 1, "the 2-rank cases are covered by the mid-save kill")
    out = tmp_path / "run"
    p = _launch(ranks, tiny_cache, out, {"CHORD_TEST_KILL_AT_STEP": "3"})
    assert p.returncode != 0 and (out / "checkpoints/latest").read_text() == "step_2"
    assert len(_metrics(out)) == 2
    p = _launch(ranks, tiny_cache, out)
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_same_run(ref, out)


def test_kill_right_after_a_save_loses_no_metrics_row(reference, tiny_cache, tmp_path):
    """SIGKILL after checkpoint step_2 is complete: the resume starts at step 3, so row 2 must already exist."""
    ranks, ref = 1, _only(reference, 1, "the row order does not depend on the rank count")
    out = tmp_path / "run"
    p = _launch(ranks, tiny_cache, out, {"CHORD_TEST_KILL_AFTER_SAVE": "2"})
    assert p.returncode != 0 and (out / "checkpoints/latest").read_text() == "step_2"
    assert [r["step"] for r in _metrics(out)] == [1, 2]
    p = _launch(ranks, tiny_cache, out)
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_same_run(ref, out)  # steps 1..4, each exactly once


def test_restart_before_the_first_checkpoint_starts_fresh_logs(reference, tiny_cache, tmp_path):
    ranks, ref = 1, _only(reference, 1, "the logger runs on rank 0 only")
    out = tmp_path / "run"
    p = _launch(ranks, tiny_cache, out, {"CHORD_TEST_KILL_AT_STEP": "2"})
    assert p.returncode != 0 and not (out / "checkpoints").exists()
    assert [r["step"] for r in _metrics(out)] == [1]
    p = _launch(ranks, tiny_cache, out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "starting at step 0; the earlier metrics.jsonl" in p.stderr
    _assert_same_run(ref, out)  # not 1, 1, 2, 3, 4
    kept = list(out.glob("metrics.jsonl.prev-*"))
    assert len(kept) == 1 and [json.loads(x)["step"] for x in kept[0].read_text().splitlines()] == [1]


def test_sigterm_checkpoints_and_exits_cleanly(reference, tiny_cache, tmp_path):
    ranks, ref = 1, _only(reference, 1, "the 2-rank cases are covered by the mid-save kill")
    out = tmp_path / "run"
    p = _launch(ranks, tiny_cache, out, {"CHORD_TEST_TERM_AT_STEP": "3"})
    assert p.returncode == 0, p.stderr[-3000:]
    assert "stopped after step 3; checkpoint saved" in p.stderr
    assert (out / "checkpoints/latest").read_text() == "step_3"
    # a changed algorithm is refused; a changed step count is allowed and reported
    p = _launch(ranks, tiny_cache, out, None, "algorithm.mu.peak=0.5")
    assert p.returncode == 2 and "different config: algorithm.mu.peak" in p.stderr, p.stderr[-2000:]
    p = _launch(ranks, tiny_cache, out, None, "logging.trackers=[]")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resuming with changed settings: logging.trackers" in p.stderr
    _assert_same_run(ref, out)


def _chord_line(stderr, *words):
    """The one `chord:` line that names all of `words` (the one-line failure message)."""
    lines = [x for x in stderr.splitlines() if x.startswith("chord:") and all(w in x for w in words)]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    return lines[0]


def test_filesystem_failures_in_logs_and_export_then_resume(reference, tiny_cache, tmp_path):
    """An I/O error while a metrics row is written (the torn row it leaves is dropped on resume), then a quota
    hit while final/ is exported: each stops the run with one line naming the last complete checkpoint, and
    the same command afterwards finishes the same run, bit for bit."""
    ranks, ref = 1, _only(reference, 1, "the filesystem paths are rank 0's; one layout is enough")
    out = tmp_path / "run"
    p = _launch(ranks, tiny_cache, out, {"CHORD_TEST_FS_FAULT": "metrics:3:EIO"})
    assert p.returncode == 1
    line = _chord_line(p.stderr, "metrics.jsonl")
    assert "input/output error" in line and "the last complete checkpoint is" in line and "step_2" in line
    assert "fix the filesystem and re-run the same command" in line
    p = _launch(ranks, tiny_cache, out, {"CHORD_TEST_FS_FAULT": "export:final:EDQUOT"})
    assert p.returncode == 1
    assert "dropped 1 torn line" in p.stderr, p.stderr[-3000:]
    line = _chord_line(p.stderr, "quota")
    assert ".final.tmp" in line and "step_4" in line
    assert not (out / "final").exists() and not (out / ".final.tmp").exists()
    p = _launch(ranks, tiny_cache, out, None)
    assert p.returncode == 0, p.stderr[-3000:]
    _assert_same_run(ref, out)


def test_resume_on_a_different_world_size(reference, tiny_cache, tmp_path):
    """ZeRO-0: a 2-rank checkpoint resumes on 1 rank; the resumed step samples what the 2-rank run sampled."""
    ref = _only(reference, 2, "covered from the 2-rank side")
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    shutil.copytree(ref / "checkpoints/step_2", out / "checkpoints/step_2")
    p = _launch(1, tiny_cache, out)
    assert p.returncode == 0, p.stderr[-3000:]
    assert "checkpoint written by 2 ranks, resuming on 1" in p.stderr
    step3_ref, step3 = _metrics(ref)[2], _metrics(out)[0]
    assert step3["step"] == 3
    # same weights in, same seeds: identical samples and rewards; only the reduction order differs
    for k in ("reward/mean", "tokens/rollout", "tokens/expert", "response/length_mean"):
        assert step3[k] == step3_ref[k], k
    for k in ("loss/total", "loss/grpo", "optim/grad_norm"):
        assert step3[k] == pytest.approx(step3_ref[k], rel=1e-4, abs=1e-6), k
    wa, wb = load_file(str(ref / "final/model.safetensors")), load_file(str(out / "final/model.safetensors"))
    assert max((wa[k] - wb[k]).abs().max().item() for k in wa) < 1e-4


def test_export_any_checkpoint_loads_in_transformers_and_vllm(reference, tiny_cache, tmp_path):
    ref = _only(reference, 1, "the checkpoint format does not depend on the rank count at ZeRO-0")
    p = run_cli([python(), "-m", "chord.export", str(ref), str(tmp_path / "latest")])
    assert p.returncode == 0, p.stderr[-3000:]
    latest, final = (load_file(str(tmp_path / "latest/model.safetensors")),
                     load_file(str(ref / "final/model.safetensors")))
    assert latest.keys() == final.keys() and all(torch.equal(latest[k], final[k]) for k in final)
    p = run_cli([python(), "-m", "chord.export", str(ref / "checkpoints/step_2"), str(tmp_path / "step2")])
    assert p.returncode == 0, p.stderr[-3000:]
    step2 = load_file(str(tmp_path / "step2/model.safetensors"))
    assert not torch.equal(step2["lm_head.weight"], final["lm_head.weight"])
    p = run_cli([python(), "-m", "chord.export", str(tmp_path), str(tmp_path / "x")])
    assert p.returncode == 2 and "no complete chord checkpoint" in p.stderr

    # transformers and vLLM both load the export and agree on log-probs
    p = run_cli([python(), "-m", "tests.integration.vllm_gap", str(tmp_path / "step2")])
    assert p.returncode == 0, p.stderr[-3000:]
    assert float(p.stdout.strip().split("=")[-1]) <= 1e-4, p.stdout


def test_nonfinite_steps_are_skipped_then_abort(tiny_cache, tmp_path):
    """NaN at steps 2, 4, 5 with max_nonfinite_steps=2: 2 and 4 skipped (weights and optimizer kept), 5 aborts."""
    out = tmp_path / "run"
    p = _launch(1, tiny_cache, out, {"CHORD_TEST_NAN_AT_STEPS": "2,4,5"}, "trainer.steps=5",
                "trainer.save_every=1", "trainer.keep_last=10", "trainer.max_nonfinite_steps=2")
    assert p.returncode == 1, p.stderr[-3000:]
    assert "2 non-finite steps in a row" in p.stderr and "step 2: non-finite loss" in p.stderr
    assert [r["optim/skipped"] for r in _metrics(out)] == [0, 1, 0, 1]
    assert (out / "checkpoints/latest").read_text() == "step_4"
    w = {s: policy_state_dict(out / f"checkpoints/step_{s}") for s in (1, 2, 3, 4)}

    def opt_steps(s):
        st = torch.load(out / f"checkpoints/step_{s}/mp_rank_00_model_states.pt", weights_only=False)
        return int(next(iter(st["optimizer"]["state"].values()))["step"])

    assert all(torch.equal(w[1][k], w[2][k]) and torch.equal(w[3][k], w[4][k]) for k in w[1])
    assert not torch.equal(w[2]["lm_head.weight"], w[3]["lm_head.weight"])
    assert [opt_steps(s) for s in (1, 2, 3, 4)] == [1, 1, 2, 2]

"""Staged recipes (SFT then GRPO), periodic evaluation with vLLM, best-checkpoint selection, resume
of an interrupted staged run, `python -m chord.eval`, and the tiny twins of the math recipes."""

import json
import shutil

import pytest

from chord.step_metrics import NOT_REPRODUCIBLE
from tests.integration.conftest import ROOT, python, run_cli, torchrun

pytestmark = pytest.mark.integration

BENCH = 'eval.benchmarks=[{name: tiny_math, source: "builtin:tiny_math", k: 2, max_problems: 8}]'


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _stable(rows):
    return [{k: v for k, v in r.items() if not k.startswith(NOT_REPRODUCIBLE)} for r in rows]


def _staged_args(cache, out):
    # best = the shortest responses: the initial model (SFT lengthens them), so best/ != final/; no lr warm-up,
    # so step 1 already lengthens them clearly (with a warm-up, step 1 barely moves and sampling noise can make
    # it the shortest)
    return [python(), "chord/train.py", str(ROOT / "recipes/tiny_math_sft_then_rl.yaml"), f"model.cache_dir={cache}",
            f"run.output_dir={out}", "logging.progress_bar=false", BENCH, "eval.every=1",
            "eval.best_metric=overall/length_mean", "eval.best_mode=min", "trainer.save_every=1",
            "stages.0.trainer.epochs=0.2", "stages.0.trainer.lr_warmup_steps=0", "stages.1.trainer.steps=2",
            "stages.1.trainer.prompts_per_step=8",
            "stages.1.trainer.samples_per_prompt=4", "stages.1.trainer.micro_batch_size=32"]


@pytest.fixture(scope="module")
def staged_run(tiny_cache, tmp_path_factory):
    out = tmp_path_factory.mktemp("staged") / "run"
    p = run_cli(_staged_args(tiny_cache, out))
    assert p.returncode == 0, p.stderr[-3000:]
    return out, p


def test_sft_then_rl_chains_from_the_best_checkpoint(staged_run):
    out, p = staged_run
    sft, rl = out / "stage1-sft", out / "stage2-rl"
    assert "stage 1 'sft' (sft) of 2" in p.stderr and "stage 2 'rl' (grpo) of 2" in p.stderr
    # SFT stage: 0.2 epochs of 320 rows at 32 per step = 2 steps, no rollouts, evaluated at 0, 1, 2
    m = _rows(sft / "metrics.jsonl")
    assert [r["step"] for r in m] == [0, 1, 2]
    assert all("reward/mean" not in r and r["mu"] == 1.0 and r["tokens/rollout"] == 0 for r in m[1:])
    # no rollout tokens: no rollout-side metric is logged (not a misleading 0); expert ones are
    assert all(not any(k.startswith(("entropy/rollout", "policy/", "gap/")) for k in r) for r in m[1:])
    assert all("entropy/expert" in r and "sft/weight_mean" in r for r in m[1:])
    ev = _rows(sft / "eval.jsonl")
    assert [r["step"] for r in ev] == [0, 1, 2]
    lengths = [r["overall/length_mean"] for r in ev]
    best = json.loads((sft / "best" / "chord_best.json").read_text())
    assert best["step"] == lengths.index(min(lengths)) and best["value"] == min(lengths)
    assert best["step"] != 2, "SFT should lengthen responses; the test needs best != final"
    assert (sft / "final" / "model.safetensors").is_file() and (sft / "stage_done.json").is_file()
    assert "| step | tiny_math/avg@2 | tiny_math/pass@2 |" in (sft / "eval.md").read_text()
    # GRPO stage: starts from stage 1's best/ export ...
    assert f"path: {sft / 'best'}" in (rl / "config.yaml").read_text()
    rl_ev = _rows(rl / "eval.jsonl")
    assert [r["step"] for r in rl_ev] == [0, 1, 2]
    # ... which is the initial model here: its step-0 evaluation repeats stage 1's exactly (same
    # weights, same per-step seeds); starting from final/ would give the SFT model's longer answers.
    assert {**rl_ev[0], "step": None} == {**ev[best["step"]], "step": None}
    rm = _rows(rl / "metrics.jsonl")
    assert all(r["mu"] == 0.0 and r["tokens/expert"] == 0 and r["gap/logp_max"] <= 1e-4 for r in rm[1:])
    assert all("entropy/rollout" in r and not any(k.startswith(("entropy/expert", "sft/")) for k in r) for r in rm[1:])
    assert all("reward/correct" in r and "reward/format_ok" in r for r in rm[1:])


def test_interrupted_staged_run_resumes_to_the_same_result(staged_run, tiny_cache, tmp_path):
    ref, _ = staged_run
    out = tmp_path / "run"
    killed = run_cli(_staged_args(tiny_cache, out), env={"CHORD_TEST_KILL_AT_STEP": "2"})  # dies inside stage 1
    assert killed.returncode != 0 and not (out / "stage1-sft" / "stage_done.json").exists()
    # SIGTERM right after stage 1 finished: stage 1 is done, stage 2 not started
    p = run_cli(_staged_args(tiny_cache, out), env={"CHORD_TEST_TERM_AT_STAGE_SWITCH": "1"})
    assert p.returncode == 0 and "stopped after stage 1" in p.stderr, p.stderr[-3000:]
    assert (out / "stage1-sft" / "stage_done.json").is_file() and not (out / "stage2-rl" / "metrics.jsonl").exists()
    # SIGTERM during stage 2's step-1 evaluation: the evaluation finishes, then step 1 is checkpointed
    p = run_cli(_staged_args(tiny_cache, out), env={"CHORD_TEST_TERM_IN_EVAL": "1"})
    assert p.returncode == 0 and "stopped after step 1; checkpoint saved" in p.stderr, p.stderr[-3000:]
    assert [r["step"] for r in _rows(out / "stage2-rl" / "eval.jsonl")] == [0, 1]
    # a full disk while step 2's evaluation is written: one line naming the file and the last checkpoint
    p = run_cli(_staged_args(tiny_cache, out), env={"CHORD_TEST_FS_FAULT": "eval:2"})
    line = [x for x in p.stderr.splitlines() if x.startswith("chord: no space left on device writing")]
    assert p.returncode == 1 and line and "eval.jsonl" in line[0], p.stderr[-3000:]
    assert "stage2-rl/checkpoints/step_1" in line[0] and "Traceback" not in p.stderr
    p = run_cli(_staged_args(tiny_cache, out))
    assert p.returncode == 0, p.stderr[-3000:]
    assert "resumed from" in p.stderr
    for stage in ("stage1-sft", "stage2-rl"):
        for log in ("metrics.jsonl", "eval.jsonl"):
            assert _stable(_rows(out / stage / log)) == _stable(_rows(ref / stage / log)), (stage, log)
    again = run_cli(_staged_args(tiny_cache, out))  # everything finished: both stages are skipped
    assert again.returncode == 0 and again.stderr.count("already finished") == 2, again.stderr[-2000:]


def test_eval_cli_matches_in_training_evaluation(staged_run, tiny_cache, tmp_path):
    """`python -m chord.eval` on stage 1's best/ reproduces the in-training evaluation of those weights."""
    out, _ = staged_run
    best = json.loads((out / "stage1-sft" / "best" / "chord_best.json").read_text())
    in_training = _rows(out / "stage1-sft" / "eval.jsonl")[best["step"]]
    assert best["step"] == 0  # the CLI evaluates as step 0: same sampling seeds only then
    p = run_cli([python(), "-m", "chord.eval", str(out / "stage1-sft" / "best"), "--out", str(tmp_path / "ev"),
                 "--recipe", str(ROOT / "recipes/tiny_math_sft_then_rl.yaml"), "--set", f"model.cache_dir={tiny_cache}",
                 "--set", BENCH])
    assert p.returncode == 0, p.stderr[-3000:]
    cli = _rows(tmp_path / "ev" / "eval.jsonl")
    assert cli == [in_training | {"step": 0}]
    assert "| 0 |" in p.stdout and (tmp_path / "ev" / "eval" / "samples_step_0.jsonl").is_file()
    # a run folder is exported from its latest checkpoint first
    p = run_cli([python(), "-m", "chord.eval", str(out / "stage2-rl"), "--out", str(tmp_path / "ev2"), "--k", "1",
                 "--data", f"tiny={_eval_file(tiny_cache)}", "--max-problems", "4",
                 "--set", f"model.cache_dir={tiny_cache}"])
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "ev2" / "model" / "model.safetensors").is_file()
    assert set(_rows(tmp_path / "ev2" / "eval.jsonl")[0]) >= {"tiny/avg@1", "tiny/pass@1", "overall/avg"}
    bad = run_cli([python(), "-m", "chord.eval", str(out / "stage2-rl"), "--data", str(tmp_path / "missing.jsonl"),
                   "--out", str(tmp_path / "ev3")])
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def _eval_file(cache):
    from chord.tasks.tiny import generate_tiny_task

    return generate_tiny_task(cache / "tiny_task", seed=0, style="boxed")["eval"]


@pytest.mark.parametrize("recipe", ["tiny_math.yaml", "tiny_math_chord_mu.yaml", "tiny_math_grpo.yaml",
                                    "tiny_math_sft.yaml"])
def test_tiny_twins_of_the_math_recipes_run(recipe, tiny_cache, tmp_path):
    out = tmp_path / "run"
    p = run_cli([python(), "chord/train.py", str(ROOT / "recipes" / recipe), f"model.cache_dir={tiny_cache}",
                 f"run.output_dir={out}", "logging.progress_bar=false", BENCH, "trainer.steps=2", "trainer.epochs=null",
                 "eval.every=0", "eval.at_start=false"])
    assert p.returncode == 0, p.stderr[-3000:]
    rows = _rows(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert [r["step"] for r in _rows(out / "eval.jsonl")] == [2]  # at_end
    assert "eval/overall/avg" in rows[-1] and (out / "best" / "chord_best.json").is_file()
    if "sft" not in recipe:
        assert all(r["gap/logp_max"] <= 1e-4 and "reward/correct" in r for r in rows)
    shutil.rmtree(out)


def _twin(recipe, cache, out, *extra):
    return [str(ROOT / "recipes" / recipe), f"model.cache_dir={cache}", f"run.output_dir={out}",
            "logging.progress_bar=false", BENCH, *extra]


def test_evaluation_does_not_perturb_training(tiny_cache, tmp_path):
    """Evaluation samples from the training engine: the training metrics must not notice it."""
    small = ["trainer.steps=3", "trainer.prompts_per_step=8", "trainer.samples_per_prompt=4",
             "trainer.expert_per_step=8", "trainer.micro_batch_size=40"]
    runs = {}
    for name, ev in (("with", ["eval.every=1", "eval.at_start=true"]), ("without", ["eval.benchmarks=[]"])):
        out = tmp_path / name
        p = run_cli([python(), "chord/train.py", *_twin("tiny_math.yaml", tiny_cache, out, *small, *ev)])
        assert p.returncode == 0, p.stderr[-3000:]
        runs[name] = [{k: v for k, v in r.items() if not k.startswith((*NOT_REPRODUCIBLE, "eval/"))}
                      for r in _rows(out / "metrics.jsonl") if r["step"] > 0]
    assert len(runs["with"]) == 3 and runs["with"] == runs["without"]
    assert (tmp_path / "with" / "best").is_dir() and not (tmp_path / "without" / "best").exists()


def test_two_rank_sft_run_evaluates_through_the_engine_process(tiny_cache, tmp_path):
    """At 2 ranks the engine runs in its own process; SFT pushes weights to it only to evaluate."""
    out = tmp_path / "run"
    p = run_cli([*torchrun(), "chord/train.py", *_twin("tiny_math_sft.yaml", tiny_cache, out, "trainer.epochs=null",
                                                       "trainer.steps=2", "eval.every=1")])
    assert p.returncode == 0, p.stderr[-3000:]
    ev = _rows(out / "eval.jsonl")
    assert [r["step"] for r in ev] == [0, 1, 2]
    assert ev[0]["overall/length_mean"] != ev[2]["overall/length_mean"]  # the engine saw the new weights
    assert (out / "best" / "model.safetensors").is_file() and (out / "final" / "model.safetensors").is_file()


def test_truncated_rollouts_reach_the_overlong_penalty(tiny_cache, tmp_path):
    out = tmp_path / "run"
    # the plain tiny task: its model answers "Answer: N" (several tokens), so 2 new tokens truncate most
    p = run_cli([python(), "chord/train.py", *_twin("tiny.yaml", tiny_cache, out, "eval.benchmarks=[]",
                                                    "reward.name=math", "trainer.steps=1", "rollout.max_new_tokens=2",
                                                    "reward.overlong_penalty=-0.5", "reward.format_penalty=-0.25")])
    assert p.returncode == 0, p.stderr[-3000:]
    (m,) = _rows(out / "metrics.jsonl")
    assert m["response/truncated_frac"] > 0.5 and m["reward/overlong"] == m["response/truncated_frac"]
    expected = m["reward/correct"] - 0.5 * m["reward/overlong"] - 0.25 * (1 - m["reward/format_ok"])
    assert m["reward/mean"] == pytest.approx(expected, abs=1e-6)
    assert m["reward/accuracy"] == m["reward/correct"]  # penalties never change accuracy


def test_eval_cli_with_tensor_parallel_uses_a_multiprocess_engine(tiny_cache, tmp_path):
    """--tensor-parallel-size 2 gets vLLM's multiprocess executor (an in-process one would wait forever for its
    second worker); on CPU each worker gets its share of the cores (VLLM_CPU_OMP_THREADS_BIND)."""
    from chord.models.tiny import build_tiny_model

    p = run_cli([python(), "-m", "chord.eval", str(build_tiny_model(tiny_cache)), "--out", str(tmp_path / "ev"),
                 "--k", "1", "--data", f"tiny={_eval_file(tiny_cache)}", "--max-problems", "4",
                 "--reward", "tiny", "--tensor-parallel-size", "2"], timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    assert set(_rows(tmp_path / "ev" / "eval.jsonl")[0]) >= {"tiny/avg@1", "overall/avg"}

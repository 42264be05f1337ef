"""Staged recipes (chord.config.stages.expand), `stages.N.key=value` overrides in load_config, bad stage
recipes failing at load time with a one-line ConfigError, stage_done.json, and --print-config."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from chord.config import ConfigError
from chord.config.recipe import load_config
from chord.config.stages import DONE, expand, is_done, mark_done

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "recipes/tiny_math_sft_then_rl.yaml"
REAL = ROOT / "recipes/math_sft_then_rl.yaml"
BENCH = {"name": "b", "source": "builtin:tiny_math", "k": 2}


def _error(recipe, overrides=None) -> str:
    with pytest.raises(ConfigError) as e:
        load_config(recipe, overrides)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


def _recipe(tmp_path, stages, **sections) -> Path:
    """A small staged recipe: tiny model, builtin data, one benchmark (loading touches neither)."""
    doc = {"run": {"name": "t", "output_dir": str(tmp_path / "runs")}, "model": {"path": "tiny"},
           "data": {"prompts": {"source": "builtin:tiny_math"}, "expert": {"source": "builtin:tiny_math"}},
           "eval": {"benchmarks": [BENCH]}}
    doc.update(sections)
    doc["stages"] = stages
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


SFT = {"name": "sft", "method": "sft", "trainer": {"expert_per_step": 8, "steps": 3}}
RL = {"name": "rl", "method": "grpo", "trainer": {"prompts_per_step": 4, "steps": 5, "lr": 2.0e-4}}


# ---------------------------------------------------------------------------------------------
# the shipped recipes


def test_tiny_recipe_expands_to_sft_then_grpo():
    cfg = load_config(TINY)
    assert len(cfg.stages) == 2  # the base config keeps the plan
    sft, rl = expand(cfg)
    root = Path("runs/tiny-math-sft-then-rl")
    assert cfg.run.output_dir == str(root)

    assert (sft.index, sft.name, sft.method, sft.init) == (0, "sft", "sft", "final")
    assert (rl.index, rl.name, rl.method, rl.init) == (1, "rl", "grpo", "best")
    assert sft.label == "stage 1 'sft' (sft)" and rl.label == "stage 2 'rl' (grpo)"
    assert sft.dir == root / "stage1-sft" and rl.dir == root / "stage2-rl"
    assert sft.cfg.run.output_dir == str(root / "stage1-sft")
    assert sft.cfg.run.name == "tiny-math-sft-then-rl-sft" and rl.cfg.run.name == "tiny-math-sft-then-rl-rl"

    # sft: mu = 1 throughout, plain SFT weights, no rollouts
    mu = sft.cfg.algorithm.mu
    assert (mu.peak, mu.valley, mu.warmup_steps, mu.decay_steps) == (1.0, 1.0, 0, 0)
    assert sft.cfg.algorithm.sft_weight == "none"
    assert sft.cfg.trainer.prompts_per_step == 0
    assert sft.cfg.data.expert.source == "builtin:tiny_math" and sft.cfg.data.expert.max_length == 160
    # grpo: mu = 0, no expert data, starting from the SFT stage's best export
    mu = rl.cfg.algorithm.mu
    assert (mu.peak, mu.valley) == (0.0, 0.0)
    assert rl.cfg.trainer.expert_per_step == 0 and rl.cfg.data.expert.source is None
    assert sft.cfg.model.path == "tiny"
    assert rl.cfg.model.path == str(sft.dir / "best")

    # stage sections override; one stage's sections never leak into the next
    assert sft.cfg.trainer.epochs == 4 and sft.cfg.trainer.expert_per_step == 32
    assert (sft.cfg.trainer.lr_schedule, sft.cfg.trainer.lr_warmup_steps) == ("cosine", 2)
    assert rl.cfg.trainer.epochs is None and rl.cfg.trainer.steps == 40
    assert (rl.cfg.trainer.prompts_per_step, rl.cfg.trainer.samples_per_prompt) == (16, 8)
    assert (rl.cfg.trainer.lr_schedule, rl.cfg.trainer.lr_warmup_steps) == ("constant", 0)
    # the recipe's sections reach every stage
    for st in (sft, rl):
        c = st.cfg
        assert [(b.name, b.k, b.max_problems) for b in c.eval.benchmarks] == [("tiny_math", 4, 32)]
        assert (c.eval.every, c.eval.at_start, c.eval.best_metric) == (10, True, "overall/avg")
        assert (c.reward.name, c.reward.format_penalty, c.reward.overlong_penalty) == ("math", -0.1, -0.1)
        assert c.rollout.max_new_tokens == 64
        assert c.data.prompts.source == "builtin:tiny_math" and c.data.prompts.max_prompt_length == 64
        assert c.stages == []  # a stage is an ordinary one-stage run


def test_real_recipe_stage_sections_merge_deeply():
    sft, rl = expand(load_config(REAL))
    assert sft.cfg.model.path == "Qwen/Qwen2.5-7B-Instruct"
    assert rl.cfg.model.path == "runs/math-sft-then-rl/stage1-sft/best"
    # stage 1's eval section changes `every` only: the recipe's four benchmarks stay
    assert sft.cfg.eval.every == 25 and rl.cfg.eval.every == 50
    assert sft.cfg.eval.max_new_tokens == 10240 and rl.cfg.eval.max_new_tokens is None
    for st in (sft, rl):
        assert [b.name for b in st.cfg.eval.benchmarks] == ["aime24", "aime25", "amc", "math500"]
        assert st.cfg.trainer.weight_decay == 0.01 and st.cfg.run.seed == 42
        assert st.cfg.model.dtype == "bfloat16" and st.cfg.deepspeed.zero_stage == 3
    assert (sft.cfg.trainer.save_every, rl.cfg.trainer.save_every) == (25, 50)
    assert (sft.cfg.trainer.lr, rl.cfg.trainer.lr) == (1.0e-5, 1.0e-6)


def test_real_recipe_sft_light_variant_from_its_comment():
    cfg = load_config(REAL, ["stages.1.init=final", "stages.0.trainer.epochs=1"])
    sft, rl = expand(cfg)
    assert sft.cfg.trainer.epochs == 1 and rl.init == "final"
    assert rl.cfg.model.path == "runs/math-sft-then-rl/stage1-sft/final"
    assert sft.cfg.trainer.lr_schedule == "cosine"  # the rest of stage 0's trainer section stays


# ---------------------------------------------------------------------------------------------
# CLI-style overrides


def test_stage_override_reaches_only_that_stage():
    sft, rl = expand(load_config(TINY, ["stages.1.trainer.steps=3", "stages.1.trainer.lr=2.5e-4"]))
    assert rl.cfg.trainer.steps == 3 and rl.cfg.trainer.lr == 2.5e-4
    assert rl.cfg.trainer.prompts_per_step == 16  # merged into the stage's section, not replacing it
    assert sft.cfg.trainer.steps == 60 and sft.cfg.trainer.lr == 1.0e-3
    sft, rl = expand(load_config(TINY, ["stages.0.eval.every=3"]))
    assert sft.cfg.eval.every == 3 and rl.cfg.eval.every == 10
    assert len(sft.cfg.eval.benchmarks) == 1


def test_plain_override_reaches_stages_that_do_not_set_the_key(tmp_path):
    sft, rl = expand(load_config(TINY, ["trainer.lr=5e-4", "trainer.weight_decay=0.05", "run.seed=7"]))
    assert sft.cfg.trainer.lr == rl.cfg.trainer.lr == 1.0e-3  # both stages set lr themselves
    assert sft.cfg.trainer.weight_decay == rl.cfg.trainer.weight_decay == 0.05
    assert sft.cfg.run.seed == rl.cfg.run.seed == 7

    path = _recipe(tmp_path, [SFT, RL])  # only rl sets lr
    sft, rl = expand(load_config(path, ["trainer.lr=5e-4"]))
    assert sft.cfg.trainer.lr == 5e-4 and rl.cfg.trainer.lr == 2.0e-4
    sft, rl = expand(load_config(path, ["run.output_dir=" + str(tmp_path / "elsewhere")]))
    assert sft.dir == tmp_path / "elsewhere" / "stage1-sft" and rl.cfg.model.path == str(sft.dir / "final")


def test_plain_override_cannot_undo_a_method_preset():
    # data.expert.source is the grpo preset's (None); trainer.prompts_per_step is the sft preset's (0)
    sft, rl = expand(load_config(TINY, ["trainer.prompts_per_step=4", "data.expert.source=other.jsonl"]))
    assert sft.cfg.trainer.prompts_per_step == 0 and sft.cfg.data.expert.source == "other.jsonl"
    assert rl.cfg.data.expert.source is None and rl.cfg.trainer.prompts_per_step == 16


@pytest.mark.parametrize("index", [2, 10])
def test_out_of_range_stage_override(index):
    msg = _error(TINY, [f"stages.{index}.trainer.steps=3"])
    assert f"stages.{index}" in msg and "2 stages" in msg


@pytest.mark.parametrize("override,expected", [
    ("stages.0.trainer.stepz=1",
     "unknown key 'stages.0.trainer.stepz' (did you mean 'stages.0.trainer.steps'?)"),
    ("stages.1.trainr.steps=1", "unknown key 'stages.1.trainr' (did you mean 'stages.1.trainer'?)"),
    ("stages.1.algorithm.mu.peek=1",
     "unknown key 'stages.1.algorithm.mu.peek' (did you mean 'stages.1.algorithm.mu.peak'?)"),
])
def test_unknown_key_in_a_stage_override(override, expected):
    assert _error(TINY, [override]) == expected


def test_stage_override_of_shared_sections_is_refused():
    msg = _error(TINY, ["stages.1.model.path=other"])
    assert "'stages.1.model'" in msg and "shared" in msg
    msg = _error(TINY, ["stages.0.run.seed=3"])
    assert "'stages.0.run'" in msg and "shared" in msg


def test_invalid_stage_override_value_names_stage_and_key():
    msg = _error(TINY, ["stages.1.trainer.lr=-1"])
    assert "stages.1" in msg and "trainer.lr" in msg
    msg = _error(TINY, ["stages.0.algorithm.mu.valley=1.5"])
    assert msg.startswith("stages.0 (sft): ") and "algorithm.mu.valley" in msg


def test_stage_section_beats_the_method_preset():
    sft, rl = expand(load_config(TINY, ["stages.0.algorithm.mu.peak=0.5", "stages.1.algorithm.sft_weight=is"]))
    assert (sft.cfg.algorithm.mu.peak, sft.cfg.algorithm.mu.valley) == (0.5, 1.0)
    assert rl.cfg.algorithm.sft_weight == "is" and rl.cfg.algorithm.mu.peak == 0.0


# ---------------------------------------------------------------------------------------------
# bad stage recipes fail at load time


BAD = {
    "unknown_method": ([SFT, {**RL, "method": "dpo"}], "'stages.1.method' must be one of sft, grpo, chord"),
    "best_on_first": ([{**SFT, "init": "best"}, RL], "'stages.0.init' must be final"),
    "bad_init": ([SFT, {**RL, "init": "latest"}], "'stages.1.init' must be final or best"),
    "duplicate_name": ([SFT, {**RL, "name": "sft"}], "'stages.1.name' 'sft' is used twice"),
    "bad_name": ([{**SFT, "name": "my sft"}, RL], "'stages.0.name' must be letters"),
    "model_in_stage": ([SFT, {**RL, "model": {"path": "x"}}], "unknown key 'stages.1.model' (run, model"),
    "run_in_stage": ([{**SFT, "run": {"seed": 1}}, RL], "unknown key 'stages.0.run' (run, model"),
    "stages_in_stage": ([{**SFT, "stages": []}, RL], "unknown key 'stages.0.stages' (run, model"),
    "typo_section": ([SFT, {**RL, "trainr": {"steps": 1}}], "'stages.1.trainr' (did you mean 'stages.1.trainer'?)"),
    "typo_key": ([SFT, {**RL, "trainer": {"lrr": 1.0}}],
                 "'stages.1.trainer.lrr' (did you mean 'stages.1.trainer.lr'?)"),
    "typo_benchmark_key": ([{**SFT, "eval": {"benchmarks": [{**BENCH, "kk": 2}]}}, RL],
                           "unknown key 'stages.0.eval.benchmarks.0.kk'"),
    "not_a_mapping": (["sft", RL], "'stages.0' must be a mapping"),
    "negative_lr": ([SFT, {**RL, "trainer": {**RL["trainer"], "lr": -1}}], "stages.1 (rl): 'trainer.lr' must be > 0"),
    "sft_with_rollouts": ([{**SFT, "trainer": {"expert_per_step": 8, "prompts_per_step": 4}}, RL],
                          "stages.0 (sft): 'trainer.prompts_per_step' must be 0 when mu is 1"),
    "no_save_at_end": ([{**SFT, "trainer": {**SFT["trainer"], "save_at_end": False}}, RL],
                       "stages.0 (sft): trainer.save_at_end must be true"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_stage_recipe_fails_at_load_time(tmp_path, case):
    stages, needle = BAD[case]
    msg = _error(_recipe(tmp_path, stages))
    assert needle in msg, msg


def test_init_best_needs_benchmarks_on_the_previous_stage(tmp_path):
    msg = _error(_recipe(tmp_path, [SFT, {**RL, "init": "best"}], eval={}))
    assert "'stages.1.init' is best but stage 'sft' has no eval.benchmarks" in msg
    # the recipe has benchmarks but the previous stage drops them: still refused
    msg = _error(_recipe(tmp_path, [{**SFT, "eval": {"benchmarks": []}}, {**RL, "init": "best"}]))
    assert "'stages.1.init' is best" in msg
    # and with benchmarks it loads
    assert expand(load_config(_recipe(tmp_path, [SFT, {**RL, "init": "best"}])))[1].init == "best"


def test_wrong_type_in_a_stage_names_stage_and_key(tmp_path):
    # config.py promises "wrong types ... fail with a one-line ConfigError naming the dotted key"
    msg = _error(_recipe(tmp_path, [SFT, {**RL, "trainer": {**RL["trainer"], "steps": "many"}}]))
    assert "stages.1" in msg and "trainer.steps" in msg, msg


def test_resume_path_is_refused_with_stages(tmp_path):
    msg = _error(_recipe(tmp_path, [SFT, RL]), ["trainer.resume=/some/checkpoint"])
    assert "'trainer.resume' must be auto or none" in msg
    for mode in ("auto", "none"):
        assert [s.cfg.trainer.resume for s in expand(load_config(_recipe(tmp_path, [SFT, RL]),
                                                                  [f"trainer.resume={mode}"]))] == [mode, mode]


def test_stage_level_resume_path_is_refused(tmp_path):
    # each stage resumes from its own checkpoints: a stage-level resume PATH would reload that PATH on
    # every relaunch of an interrupted stage, exactly what the recipe-level check refuses
    _error(_recipe(tmp_path, [SFT, {**RL, "trainer": {**RL["trainer"], "resume": "/some/checkpoint"}}]))


def test_save_at_end_false_is_fine_on_the_last_stage(tmp_path):
    sft, rl = expand(load_config(_recipe(tmp_path, [SFT, {**RL, "trainer": {**RL["trainer"], "save_at_end": False}}])))
    assert sft.cfg.trainer.save_at_end and not rl.cfg.trainer.save_at_end


def test_stages_are_validated_not_the_base(tmp_path):
    # the base alone has nothing to train on; each stage does
    path = _recipe(tmp_path, [SFT, RL], trainer={"prompts_per_step": 0, "expert_per_step": 0})
    sft, rl = expand(load_config(path))
    assert sft.cfg.trainer.expert_per_step == 8 and rl.cfg.trainer.prompts_per_step == 4


def test_defaults_and_chord_method_keep_the_recipe_algorithm(tmp_path):
    algo = {"mu": {"peak": 0.5, "valley": 0.05, "warmup_steps": 2, "decay_steps": 10}, "sft_weight": "phi"}
    path = _recipe(tmp_path, [{"trainer": {"steps": 2}}, {"method": "sft", "trainer": {"prompts_per_step": 0}}],
                   algorithm=algo)
    a, b = expand(load_config(path))
    assert (a.name, a.method, a.init) == ("stage0", "chord", "final")
    assert (b.name, b.method, b.init) == ("stage1", "sft", "final")
    assert b.cfg.model.path == str(a.dir / "final") and a.dir == tmp_path / "runs" / "stage1-stage0"
    m = a.cfg.algorithm.mu
    assert (m.peak, m.valley, m.warmup_steps, m.decay_steps) == (0.5, 0.05, 2, 10)
    assert a.cfg.algorithm.sft_weight == "phi"
    m = b.cfg.algorithm.mu  # the sft preset replaces the whole schedule
    assert (m.peak, m.valley, m.warmup_steps, m.decay_steps) == (1.0, 1.0, 0, 0)
    assert b.cfg.algorithm.sft_weight == "none"


# ---------------------------------------------------------------------------------------------
# stage_done.json


def test_mark_done_writes_stage_done_atomically(tmp_path, monkeypatch):
    sft, rl = expand(load_config(TINY, [f"run.output_dir={tmp_path}"]))
    sft.dir.mkdir(parents=True)
    assert not is_done(sft)
    replaced = []
    real_replace = os.replace

    def spy(src, dst):
        src, dst = Path(src), Path(dst)
        assert src.parent == dst.parent == sft.dir and src != dst and not dst.exists()
        assert json.loads(src.read_text())["stage"] == "sft"  # complete before it gets its final name
        replaced.append((src.name, dst.name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)  # the atomic writer (chord.logger) renames with it
    mark_done(sft, {"overall/avg": 0.5, "reward/mean": 0.25})
    monkeypatch.undo()
    assert len(replaced) == 1 and replaced[0][1] == DONE == "stage_done.json"
    assert is_done(sft) and not is_done(rl)
    assert sorted(p.name for p in sft.dir.iterdir()) == [DONE]  # no temp file left
    assert json.loads((sft.dir / DONE).read_text()) == {
        "stage": "sft", "method": "sft", "steps": 60, "final_metrics": {"overall/avg": 0.5, "reward/mean": 0.25}}
    mark_done(sft, {"overall/avg": 0.75})  # a re-run overwrites it
    assert json.loads((sft.dir / DONE).read_text())["final_metrics"] == {"overall/avg": 0.75}
    assert sorted(p.name for p in sft.dir.iterdir()) == [DONE]


# ---------------------------------------------------------------------------------------------
# train.py --print-config


@pytest.fixture(scope="module")
def cli():
    """Both train.py runs, started together (each is a ~2 s Python start-up): name -> CompletedProcess."""
    recipe = str(TINY.relative_to(ROOT))
    runs = {"print": [recipe, "--print-config", "stages.1.trainer.steps=3"],
            "bad": [recipe, "--print-config", "stages.0.trainer.stepz=1"]}
    procs = {k: subprocess.Popen([sys.executable, "chord/train.py", *a], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for k, a in runs.items()}
    out = {}
    for k, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        out[k] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return out


def test_print_config_prints_every_stage(cli):
    p = cli["print"]
    assert p.returncode == 0, p.stderr
    h1, h2 = "# ---- stage 1 'sft' (sft): resolved config", "# ---- stage 2 'rl' (grpo): resolved config"
    assert p.stdout.startswith(h1 + "\n") and p.stdout.count("# ---- ") == 2
    first, second = p.stdout[len(h1):].split(h2 + "\n")
    s1, s2 = yaml.safe_load(first), yaml.safe_load(second)  # each part is one whole config, nothing else
    assert s1["run"]["output_dir"] == "runs/tiny-math-sft-then-rl/stage1-sft"
    assert s2["run"]["output_dir"] == "runs/tiny-math-sft-then-rl/stage2-rl"
    assert s1["model"]["path"] == "tiny" and s2["model"]["path"] == "runs/tiny-math-sft-then-rl/stage1-sft/best"
    assert s1["algorithm"]["mu"]["peak"] == 1.0 and s1["trainer"]["prompts_per_step"] == 0
    assert s2["algorithm"]["mu"]["peak"] == 0.0 and s2["data"]["expert"]["source"] is None
    assert (s1["trainer"]["steps"], s2["trainer"]["steps"]) == (60, 3)
    assert s1["stages"] == [] and s2["stages"] == []
    assert s1["eval"]["benchmarks"] == s2["eval"]["benchmarks"] and s1["reward"]["name"] == "math"


def test_bad_stage_override_exits_2_with_one_line(cli):
    p = cli["bad"]
    assert p.returncode == 2 and p.stdout == ""
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines[-1] == ("chord: config error: unknown key 'stages.0.trainer.stepz' "
                         "(did you mean 'stages.0.trainer.steps'?)")
    assert "Traceback" not in p.stderr

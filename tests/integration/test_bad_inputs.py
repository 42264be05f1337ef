"""Bad inputs met through the real CLI on a real run: counted skips, one-line refusals that change nothing."""

import json

import pytest

from tests.integration.conftest import ROOT, python, run_cli

pytestmark = pytest.mark.integration


def _args(cache, out, *extra):
    return [str(ROOT / "recipes/tiny.yaml"), "trainer.steps=2", f"model.cache_dir={cache}", f"run.output_dir={out}",
            "logging.progress_bar=false", "trainer.prompts_per_step=4", "trainer.samples_per_prompt=4",
            "trainer.expert_per_step=4", "trainer.micro_batch_size=24", *extra]


def _last(stderr: str) -> str:
    return [ln for ln in stderr.splitlines() if ln.strip()][-1]


def test_data_files_with_a_bad_line_train_and_unusable_ones_refuse(tiny_cache, tmp_path):
    from chord.tasks.tiny import generate_tiny_task

    rows = generate_tiny_task(tiny_cache / "tiny_task", seed=0)["rl"].read_text().splitlines()
    bad = tmp_path / "rl.jsonl"
    bad.write_text("\n".join([*rows[:50], '{"prompt": "cut', *rows[50:]]) + "\n")
    p = run_cli([python(), "chord/train.py", *_args(tiny_cache, tmp_path / "run", f"data.prompts.source={bad}")])
    assert p.returncode == 0, p.stderr[-3000:]
    assert f"prompt data: kept {len(rows)}/{len(rows) + 1}, skipped 1 (bad_json: 1)" in p.stderr
    for name, text, needle in (("t.json", '[{"prompt": "a", "answer": 1}, {"pro', "malformed JSON"),
                               ("e.jsonl", " \n", "is empty")):
        (tmp_path / name).write_text(text)
        p = run_cli([python(), "chord/train.py",
                     *_args(tiny_cache, tmp_path / name.split(".")[0], f"data.prompts.source={tmp_path / name}")])
        assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-3000:]
        assert _last(p.stderr).startswith("chord: DataError: ") and needle in _last(p.stderr)


def test_refused_resume_of_a_real_run_keeps_its_config_and_falls_back_past_damage(tiny_cache, tmp_path):
    out = tmp_path / "run"
    p = run_cli([python(), "chord/train.py", *_args(tiny_cache, out, "trainer.save_every=1")])
    assert p.returncode == 0, p.stderr[-3000:]
    config = (out / "config.yaml").read_text()
    p = run_cli([python(), "chord/train.py", *_args(tiny_cache, out, "trainer.save_every=1", "algorithm.mu.peak=0.5")])
    assert p.returncode == 2 and "different config: algorithm.mu.peak" in _last(p.stderr)
    assert (out / "config.yaml").read_text() == config
    # same size, changed bytes in the newest checkpoint: named, refused; under resume=auto, step_1 is used
    states = out / "checkpoints/step_2/mp_rank_00_model_states.pt"
    data = bytearray(states.read_bytes())
    data[len(data) // 2] ^= 0xFF
    states.write_bytes(bytes(data))
    p = run_cli([python(), "chord/train.py",
                 *_args(tiny_cache, out, "trainer.save_every=1", f"trainer.resume={states.parent}")])
    assert p.returncode == 2 and "does not match its recorded sha256" in _last(p.stderr), p.stderr[-2000:]
    p = run_cli([python(), "-m", "chord.export", str(states.parent), str(tmp_path / "export")])
    assert p.returncode == 2 and "does not match its recorded sha256" in _last(p.stderr), p.stderr[-2000:]
    p = run_cli([python(), "chord/train.py", *_args(tiny_cache, out, "trainer.save_every=1", "trainer.steps=3")])
    assert p.returncode == 0, p.stderr[-3000:]
    assert "skipping damaged checkpoint" in p.stderr and "step_1 at step 1" in p.stderr
    steps = [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # step 2 re-run from step_1 and logged once

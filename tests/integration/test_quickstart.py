"""README's first command, shortened: the shipped card-sum base learns where the user sees it (held-out accuracy
in eval.jsonl and the summary line), curves.png is written, and third-party log lines stay off the terminal."""

import json

import pytest

from tests.integration.conftest import ROOT, python, run_cli

pytestmark = pytest.mark.integration


def test_quickstart_learns_visibly_and_speaks_plainly(tmp_path):
    out = tmp_path / "run"
    # 20 of the recipe's 60 steps, ID evaluation only (measured here: ID 32.5% -> 41.5% at step 20)
    # a user's shell: without the log-level variables that in-process engines of earlier tests set here
    clean = ["env", *(f"-u{v}" for v in ("VLLM_LOGGING_LEVEL", "TORCH_CPP_LOG_LEVEL", "TRANSFORMERS_VERBOSITY"))]
    p = run_cli([*clean, python(), "chord/train.py", str(ROOT / "recipes/quickstart.yaml"), f"run.output_dir={out}",
                 "trainer.steps=20", 'eval.benchmarks=[{name: id, source: "builtin:cards", k: 4}]',
                 f"model.cache_dir={tmp_path / 'cache'}"], cold=True)  # as README's command starts it
    assert p.returncode == 0, p.stderr[-3000:]
    ev = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ev] == [0, 20]
    start, end = ev[0]["id/avg@4"], ev[-1]["id/avg@4"]
    assert end - start >= 0.05, (start, end)  # 100 problems x 4 samples: +5 points is past the noise of one run
    last = p.stderr.strip().splitlines()[-1]
    assert last == (f"chord: held-out accuracy (avg@4): id {100 * start:.0f}% -> {100 * end:.0f}%; curves: "
                    f"{out}/curves.png; TensorBoard: tensorboard --logdir {out}")
    assert (out / "curves.png").stat().st_size > 10_000
    assert not any((tmp_path / "cache").glob("cards-*"))  # the shipped base: nothing built
    # what reaches the terminal: chord's lines and its progress bar, fewer than 3 lines of anyone else's
    bar = "quickstart:"  # tqdm's bar, redrawn in place on one line
    other = [x for x in (p.stdout + p.stderr).splitlines() if x.strip() and not x.startswith(("chord:", bar))]
    assert len(other) < 3, other
    assert "starting vLLM" in p.stderr and "step 1 of 20 starts" in p.stderr

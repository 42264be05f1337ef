"""/dev/shm holds nothing of a finished or killed run: no weight files (weights travel in memory, in
buckets), no DeepSpeed all-reduce buffers, with rank 0's engine or an engine per rank."""

import os
import time
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, python, run_cli, torchrun

pytestmark = pytest.mark.integration
SHM = Path("/dev/shm")


def _args(cache, out, *extra):
    return [str(ROOT / "recipes/tiny.yaml"), "trainer.steps=2", f"model.cache_dir={cache}", f"run.output_dir={out}",
            "logging.progress_bar=false", "trainer.prompts_per_step=4", "trainer.samples_per_prompt=4",
            "trainer.expert_per_step=4", "trainer.micro_batch_size=24", *extra]


def _gone(pattern: str, before: set, wait_s: float = 20.0) -> list[str]:
    deadline = time.time() + wait_s
    while True:
        left = sorted({p.name for p in SHM.glob(pattern)} - before)
        if not left or time.time() > deadline:
            return left
        time.sleep(0.5)


def test_one_rank_sigkill_leaves_no_weight_folder(tiny_cache, tmp_path):
    before = {p.name for p in SHM.glob("chord_weights_*")}
    p = run_cli([python(), "chord/train.py", *_args(tiny_cache, tmp_path / "run")],
                env={"CHORD_TEST_KILL_AT_STEP": "2"})
    assert p.returncode != 0
    assert _gone("chord_weights_*", before) == []


@pytest.mark.parametrize("kill,placement", [(False, "rank0"), (True, "rank0"), (True, "per_rank")],
                         ids=["clean_exit", "sigkill", "sigkill-per_rank"])
def test_two_ranks_leave_no_deepspeed_buffers(tiny_cache, tmp_path, kill, placement):
    before = {p.name for p in SHM.glob("chord_weights_*")}
    launch = torchrun()
    port = launch[launch.index("--master_port") + 1]
    pattern = f"deepspeed_allreduce_buffer_{os.getuid()}_*_{port}_*"
    env = {"LOCAL_SIZE": "2", **({"CHORD_TEST_KILL_AT_STEP": "2"} if kill else {})}  # LOCAL_SIZE: DeepSpeed's shm path
    p = run_cli([*launch, "chord/train.py", *_args(tiny_cache, tmp_path / "run", f"rollout.placement={placement}")],
                env=env)
    assert (p.returncode != 0) if kill else (p.returncode == 0), p.stderr[-3000:]
    assert _gone(pattern, set()) == []
    assert _gone("chord_weights_*", before) == []  # older versions' weight folder: never again

"""Checkpoints are data: content hashes, RNG state as JSON, no file of chord's own is unpickled."""

import hashlib
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from chord.checkpoint import STATE, find
from chord.checkpoint.ds_weights import policy_state_dict
from chord.checkpoint.files import restore_rng, rng_state, set_rng_state, sha256_file
from chord.config import ConfigError, to_yaml
from chord.config.recipe import load_config
from chord.models.load import ModelError

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _ckpt(root: Path, step: int, files: dict[str, bytes], config: str = "") -> Path:
    """A checkpoint folder the way chord.checkpoint.save records it: sizes and sha256 of every file."""
    d = root / f"step_{step}"
    d.mkdir(parents=True)
    for name, data in files.items():
        (d / name).write_bytes(data)
    state = {"step": step, "world_size": 1, "config": config, "files": {n: len(b) for n, b in files.items()},
             "sha256": {n: hashlib.sha256(b).hexdigest() for n, b in files.items()}}
    (d / STATE).write_text(json.dumps(state))
    return d


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom((8 << 20) + 12345)  # more than one buffer
    (tmp_path / "f").write_bytes(data)
    assert sha256_file(tmp_path / "f") == hashlib.sha256(data).hexdigest()


def test_same_size_corruption_falls_back_to_the_previous_checkpoint(tmp_path, capsys):
    cfg = load_config(None, [f"run.output_dir={tmp_path}"])
    root = tmp_path / "checkpoints"
    _ckpt(root, 2, {"weights.bin": b"a" * 100})
    newest = _ckpt(root, 4, {"weights.bin": b"b" * 100})
    (root / "latest").write_text("step_4")
    (newest / "weights.bin").write_bytes(b"b" * 50 + b"X" + b"b" * 49)  # same size, one byte changed
    assert find(cfg) == root / "step_2"
    assert "skipping damaged checkpoint" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="weights.bin does not match its recorded sha256") as e:
        find(load_config(None, [f"trainer.resume={newest}"]))
    assert "\n" not in str(e.value)


def test_a_file_the_save_did_not_write_is_damage(tmp_path):
    d = _ckpt(tmp_path / "checkpoints", 2, {"weights.bin": b"a" * 10, "rng_rank0.json": b"{}"})
    torch.save(Payload(tmp_path / "marker"), d / "rng_rank0.pt")  # DeepSpeed reads *.pt by name
    with pytest.raises(ConfigError, match="rng_rank0.pt was not written by the save"):
        find(load_config(None, [f"trainer.resume={d}"]))
    assert not (tmp_path / "marker").exists()


def test_rng_state_round_trips_through_json():
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    np.random.standard_normal()  # a cached gaussian is part of numpy's state
    state = json.loads(json.dumps(rng_state()))
    expected = (random.random(), np.random.standard_normal(), torch.rand(3))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(state)
    got = (random.random(), np.random.standard_normal(), torch.rand(3))
    assert got[:2] == expected[:2] and torch.equal(got[2], expected[2])


@pytest.mark.parametrize("name", ["rng_rank0.pt", "rng_rank0.json"])
def test_crafted_rng_file_runs_nothing_and_is_one_line(tmp_path, name):
    marker = tmp_path / "marker"
    if name.endswith(".pt"):
        torch.save(Payload(marker), tmp_path / name)
    else:
        (tmp_path / name).write_text('{"python": "__import__(\'os\')"}')
    with pytest.raises(ConfigError, match=f"{name} is not a valid RNG state") as e:
        restore_rng(tmp_path / name)
    assert "\n" not in str(e.value) and not marker.exists()


def test_crafted_model_states_run_nothing(tmp_path):
    marker = tmp_path / "marker"
    torch.save({"module": Payload(marker)}, tmp_path / "mp_rank_00_model_states.pt")
    with pytest.raises(ModelError, match="cannot read the policy weights") as e:
        policy_state_dict(tmp_path)
    assert "\n" not in str(e.value) and not marker.exists()


def test_export_cli_on_a_crafted_checkpoint_with_matching_hashes(tmp_path):
    """Even a checkpoint whose manifest was rewritten to match (the hashes cannot catch that) runs no code."""
    marker = tmp_path / "marker"
    scratch = tmp_path / "payload.pt"
    torch.save({"module": Payload(marker)}, scratch)
    cfg = to_yaml(load_config(None, [f"model.cache_dir={tmp_path / 'cache'}"]))
    d = _ckpt(tmp_path / "run/checkpoints", 2, {"mp_rank_00_model_states.pt": scratch.read_bytes()}, cfg)
    p = subprocess.run([sys.executable, "-m", "chord.export", str(d), str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1].startswith(f"chord.export: checkpoint {d}: cannot read the policy weights")
    assert not marker.exists() and not (tmp_path / "cache").exists()  # refused before building any model


def test_export_cli_refuses_a_changed_file(tmp_path):
    d = _ckpt(tmp_path / "run/checkpoints", 2, {"mp_rank_00_model_states.pt": b"z" * 64}, "")
    (d / "mp_rank_00_model_states.pt").write_bytes(b"y" * 64)
    p = subprocess.run([sys.executable, "-m", "chord.export", str(d), str(tmp_path / "out")], capture_output=True,
                       text=True, timeout=300, cwd=ROOT)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "does not match its recorded sha256" in p.stderr.strip().splitlines()[-1]


def _train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "chord/train.py"), str(ROOT / "recipes/tiny.yaml"), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)


@pytest.mark.parametrize("case", ["changed_config", "missing_path", "damaged_path", "zero2_world_size"])
def test_refused_resume_changes_nothing_and_builds_nothing(tmp_path, case):
    """The checkpoint is checked before the model or engine is built and before config.yaml is written."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    base = [f"run.output_dir={run}", f"model.cache_dir={cache}"]
    saved = to_yaml(load_config(ROOT / "recipes/tiny.yaml", base))
    ckpt = _ckpt(run / "checkpoints", 2, {"weights.bin": b"w" * 32}, saved)
    (run / "config.yaml").write_text(saved)
    args, needle = {
        "changed_config": (["algorithm.mu.peak=0.5"], "different config: algorithm.mu.peak"),
        "missing_path": ([f"trainer.resume={run}/checkpoints/step_9"], "not a complete chord checkpoint"),
        "damaged_path": ([f"trainer.resume={ckpt}"], "weights.bin does not match its recorded sha256"),
        "zero2_world_size": (["deepspeed.zero_stage=2"], "written by 2 ranks with ZeRO-2"),
    }[case]
    if case == "damaged_path":
        (ckpt / "weights.bin").write_bytes(b"v" * 32)
    if case == "zero2_world_size":  # the checkpoint's config says ZeRO-2 too, but was written by 2 ranks
        saved = to_yaml(load_config(ROOT / "recipes/tiny.yaml", [*base, "deepspeed.zero_stage=2"]))
        state = json.loads((ckpt / STATE).read_text())
        (ckpt / STATE).write_text(json.dumps({**state, "world_size": 2, "config": saved}))
        (run / "config.yaml").write_text(saved)
    p = _train(*base, *args)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("chord: ConfigError: ") and needle in last, last
    assert (run / "config.yaml").read_text() == saved  # not overwritten by the refused launch
    assert not cache.exists()  # no tiny model or task files were built

"""Checkpoint discovery and config comparison (no engines needed)."""

import hashlib
import json

import pytest

from chord.checkpoint import STATE, config_differences, find
from chord.config import ConfigError, to_yaml
from chord.config.recipe import load_config

pytestmark = pytest.mark.unit


def _ckpt(root, step):
    d = root / f"step_{step}"
    d.mkdir(parents=True)
    (d / "weights.bin").write_bytes(b"x" * 100)
    (d / STATE).write_text(json.dumps({"step": step, "files": {"weights.bin": 100},
                                       "sha256": {"weights.bin": hashlib.sha256(b"x" * 100).hexdigest()}}))
    return d


def test_find_latest_and_fallbacks(tmp_path, capsys):
    cfg = load_config(None, [f"run.output_dir={tmp_path}"])
    assert find(cfg) is None  # fresh run
    root = tmp_path / "checkpoints"
    _ckpt(root, 2)
    _ckpt(root, 4)
    (root / ".tmp-step_6").mkdir()
    (root / "step_5").mkdir()  # incomplete: no trainer_state.json
    (root / "latest").write_text("step_4")
    assert find(cfg) == root / "step_4"
    assert "ignoring half-written checkpoint" in capsys.readouterr().err
    (root / "latest").write_text("step_9")  # pointer to a vanished folder
    assert find(cfg) == root / "step_4"
    assert find(load_config(None, [f"run.output_dir={tmp_path}", "trainer.resume=none"])) is None
    assert find(load_config(None, [f"trainer.resume={root / 'step_2'}"])) == root / "step_2"
    with pytest.raises(ConfigError, match="not a complete chord checkpoint"):
        find(load_config(None, [f"trainer.resume={root / 'step_5'}"]))


def test_damaged_checkpoints_are_skipped_with_a_warning(tmp_path, capsys):
    cfg = load_config(None, [f"run.output_dir={tmp_path}"])
    root = tmp_path / "checkpoints"
    _ckpt(root, 2)
    _ckpt(root, 3)
    newest = _ckpt(root, 4)
    (root / "latest").write_text("step_4")
    (newest / "weights.bin").write_bytes(b"x" * 10)  # truncated after the save
    assert find(cfg) == root / "step_3"
    err = capsys.readouterr().err
    assert "skipping damaged checkpoint" in err and "weights.bin has 10 bytes, 100 were written" in err
    (root / "step_3" / "weights.bin").unlink()
    (root / "step_2" / STATE).write_text("{not json")
    assert find(cfg) is None
    err = capsys.readouterr().err
    assert "weights.bin is missing" in err and "unreadable" in err
    with pytest.raises(ConfigError, match="has 10 bytes"):
        find(load_config(None, [f"trainer.resume={newest}"]))


def test_config_differences_split_meaning_from_bookkeeping():
    saved = to_yaml(load_config(None, []))
    cfg = load_config(None, ["trainer.steps=99", "logging.trackers=[]", "algorithm.sft_weight=none",
                             "model.path=/elsewhere"])
    meaningful, harmless = config_differences(saved, cfg)
    assert meaningful == ["algorithm.sft_weight", "model.path"]
    assert harmless == ["logging.trackers", "trainer.steps"]

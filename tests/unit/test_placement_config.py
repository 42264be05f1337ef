"""rollout.placement / sleep_mode resolution and engine groups (chord.build), without engines."""

import pytest
import torch

from chord.config import ConfigError
from chord.config.recipe import load_config
from chord.distributed import Dist
from chord.rollout.placement import engine_group, placement, sleeps

pytestmark = pytest.mark.unit


def cfg(*over):
    return load_config(None, list(over))


@pytest.mark.parametrize("cuda,world,backend,want", [
    (True, 2, "vllm", "per_rank"), (True, 1, "vllm", "rank0"), (False, 2, "vllm", "rank0"), (True, 8, "hf", "rank0")])
def test_auto_placement(monkeypatch, cuda, world, backend, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    assert placement(cfg(f"rollout.backend={backend}"), world) == want


def test_explicit_placement_and_world_size_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert placement(cfg("rollout.placement=per_rank"), 2) == "per_rank"
    assert placement(cfg("rollout.placement=per_rank"), 1) == "rank0"  # one rank: one engine either way
    assert placement(cfg("rollout.placement=rank0"), 4) == "rank0"


def test_engine_groups_follow_tensor_parallel(monkeypatch):
    c = cfg("rollout.placement=per_rank", "rollout.tensor_parallel_size=2")
    got = [engine_group(c, Dist(r, 4, r)) for r in range(4)]
    assert got == [(0, 2, True), (0, 2, False), (1, 2, True), (1, 2, False)]
    assert [engine_group(cfg("rollout.placement=rank0"), Dist(r, 3, r)) for r in range(3)] == [
        (0, 1, True), (0, 1, False), (0, 1, False)]


def test_sleep_mode_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert sleeps(cfg(), 4) and not sleeps(cfg(), 1)  # auto: per_rank on CUDA
    assert not sleeps(cfg("rollout.sleep_mode=false"), 4)
    assert sleeps(cfg("rollout.sleep_mode=true"), 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert not sleeps(cfg(), 4)


@pytest.mark.parametrize("over,key", [("rollout.placement=everywhere", "rollout.placement"),
                                      ("rollout.sleep_mode=maybe", "rollout.sleep_mode"),
                                      ("rollout.weight_bucket_mb=0", "rollout.weight_bucket_mb")])
def test_bad_values_name_their_key(over, key):
    with pytest.raises(ConfigError, match=key):
        cfg(over)

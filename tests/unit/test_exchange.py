"""chord.distributed.exchange: `shard` splits, and exact rollout round trips at world size 1 and over real 2- and
3-process gloo groups (spawned workers; each imports torch, the main cost of a few seconds)."""

import math
import os
import pickle
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from chord.distributed.exchange import (
    _pack,
    _unpack,
    all_gather_rollouts,
    all_gather_varlen,
    gather_floats,
    shard,
)
from chord.distributed.group import _free_port
from chord.types import Rollout

pytestmark = pytest.mark.unit

# Values that a lossy trip would change: 17 significant digits, tiny magnitudes, a subnormal, -0.0.
HARD_FLOATS = [-1e-300, 0.1 + 0.2, -2.2250738585072014e-308, -5e-324, -0.0, -1.2345678901234567, -math.pi / 3]


def _rollouts(rank: int) -> list[Rollout]:
    """Rank r's rollouts: rank 1 has none, the others differ in count, lengths and fields."""
    counts = {0: 3, 1: 0, 2: 2}
    out = []
    for i in range(counts[rank]):
        k = 4 * rank + i
        resp = [] if i == 1 else [151643, 7 + k, 2**40 + k][: 1 + (k % 3)]
        out.append(
            Rollout(
                prompt_ids=list(range(k, k + 5 + i)),
                response_ids=resp,
                sampling_logprobs=[HARD_FLOATS[(k + j) % len(HARD_FLOATS)] for j in range(len(resp))],
                response_text="" if i == 1 else f'r{rank}: ∑ x² = 😀 «{k}» 数学\n"q"\\',
                truncated=bool(k % 2),
                group=10 * rank + i,
                policy_version=rank + 2**33,
                reward=HARD_FLOATS[k % len(HARD_FLOATS)] + k,
                reward_info={f"key{j}_{k}": HARD_FLOATS[j] for j in range(k % 4)}
                | ({"inf": math.inf} if k == 2 else {}),
            )
        )
    return out


def _bits(rollouts: list[Rollout]) -> list:
    """Every float as hex (== treats -0.0 and 0.0 as equal; the exchange must not)."""
    return [
        (
            [x.hex() for x in r.sampling_logprobs],
            r.reward.hex(),
            {k: v.hex() for k, v in r.reward_info.items()},
        )
        for r in rollouts
    ]


# ----------------------------------------------------------------------------- shard


@pytest.mark.parametrize("world", [1, 2, 3, 4, 7, 8])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 7, 8, 13, 64, 100])
def test_shard_covers_in_order_and_balances(n, world):
    parts = [shard(n, world, r) for r in range(world)]
    assert [i for p in parts for i in p] == list(range(n))  # every item once, in rank order
    sizes = [len(p) for p in parts]
    # balanced, and the extra items go to the first ranks
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)
    assert sizes.count(n // world + 1) == n % world
    assert all(p.step == 1 for p in parts)


def test_shard_small_n_gives_empty_ranges():
    assert [list(shard(2, 4, r)) for r in range(4)] == [[0], [1], [], []]
    assert [len(shard(0, 3, r)) for r in range(3)] == [0, 0, 0]


def test_shard_rejects_bad_arguments():
    for args in [(-1, 2, 0), (4, 0, 0), (4, 2, 2), (4, 2, -1)]:
        with pytest.raises(ValueError):
            shard(*args)


# ----------------------------------------------------------------------------- world size 1


def test_world_one_round_trip():
    assert not dist.is_initialized()
    local = _rollouts(0) + _rollouts(2)
    assert all_gather_rollouts(local) == local
    assert all_gather_rollouts([]) == []
    t = torch.arange(5)
    assert all_gather_varlen(t)[0] is t
    assert gather_floats([1.5, -1e-300]) == [1.5, -1e-300]


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_pack_unpack_is_exact(rank):
    local = _rollouts(rank)
    back = _unpack(*_pack(local))
    assert back == local and _bits(back) == _bits(local)
    assert [type(r.reward) for r in back] == [float] * len(local)


def test_pack_unpack_any_str():
    r = Rollout([1], [2], [-0.5], "lone \ud800 surrogate, nul \x00", False, 0, 0)
    assert _unpack(*_pack([r])) == [r]


def test_varlen_rejects_2d():
    with pytest.raises(ValueError):
        all_gather_varlen(torch.zeros(2, 2))


# ----------------------------------------------------------------------------- real gloo groups


def _exchange(rank: int, world: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=timedelta(seconds=60),
    )
    try:
        rollouts = all_gather_rollouts(_rollouts(rank))
        # rank 1 sends an empty tensor; bool exercises the uint8 view
        varlen = all_gather_varlen(torch.arange(2 * rank if rank != 1 else 0, dtype=torch.int64))
        flags = all_gather_varlen(torch.tensor([True, False][: 2 - rank % 2]))
        empty = all_gather_varlen(torch.empty(0, dtype=torch.float64))  # every rank empty
        floats = gather_floats([HARD_FLOATS[rank]] * rank)
        result = dict(
            rollouts=rollouts,
            bits=_bits(rollouts),
            varlen=[t.tolist() for t in varlen],
            dtypes=[t.dtype for t in varlen + flags + empty],
            flags=[t.tolist() for t in flags],
            empty=[t.numel() for t in empty],
            floats=[x.hex() for x in floats],
        )
        Path(out_dir, f"{world}-{rank}.pkl").write_bytes(pickle.dumps(result))
    finally:
        dist.destroy_process_group()


def _worker(rank: int, ports: tuple[int, int], out_dir: str) -> None:
    # One spawn serves both group sizes: a 3-rank group, then ranks 0-1 as a 2-rank group. Importing
    # torch is nearly all of a worker's cost (~2.5 s each on 2 busy cores), so a second spawn would
    # nearly double the test.
    torch.set_num_threads(1)
    _exchange(rank, 3, ports[0], out_dir)
    if rank < 2:
        _exchange(rank, 2, ports[1], out_dir)
    # Results are on disk and the groups destroyed: skip interpreter teardown, which took ~1.5 s of a
    # ~6 s test here. Only on success: an exception still reaches mp.spawn's error queue.
    os._exit(0)


def test_gloo_all_gather_2_and_3_ranks(tmp_path):
    mp.spawn(_worker, args=((_free_port(), _free_port()), str(tmp_path)), nprocs=3, join=True)
    for world in (2, 3):
        results = [pickle.loads((tmp_path / f"{world}-{r}.pkl").read_bytes()) for r in range(world)]
        expected = [r for rank in range(world) for r in _rollouts(rank)]
        assert len(expected) == (3 if world == 2 else 5)
        for res in results:  # identical on every rank, equal to the rank-order concatenation, bit for bit
            assert res["rollouts"] == expected and res["bits"] == _bits(expected)
            assert res["varlen"] == [list(range(2 * r if r != 1 else 0)) for r in range(world)]
            assert res["flags"] == [[True, False][: 2 - r % 2] for r in range(world)]
            assert res["dtypes"] == [torch.int64] * world + [torch.bool] * world + [torch.float64] * world
            assert res["empty"] == [0] * world
            assert res["floats"] == [HARD_FLOATS[r].hex() for r in range(world) for _ in range(r)]

"""Exchange scored rollouts and small per-rank results across data-parallel ranks.

Every rank generates and scores its share of a step's prompt groups; afterwards every rank needs
all of them. The bulk travels as tensors through torch.distributed collectives (gloo on CPU, NCCL on
GPU), not as pickled Python lists (`all_gather_object` pickles, and on NCCL copies each object
through a CUDA byte tensor one rank at a time). Tests: tests/unit/test_exchange.py.
"""

from __future__ import annotations

import json
from itertools import chain

import torch
import torch.distributed as dist

from chord.types import Rollout


def _world() -> int:
    """Ranks in the default process group; 1 when there is none."""
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size()


def _comm_device() -> torch.device:
    # NCCL only moves CUDA tensors; gloo's all_gather takes CPU tensors.
    if "nccl" in str(dist.get_backend()):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_varlen(t: torch.Tensor) -> list[torch.Tensor]:
    """All-gather a 1-D tensor whose length differs per rank: one tensor per rank, in rank order.

    Collectives need equal shapes, so lengths go first, then every rank pads to the longest and the
    padding is trimmed off. Results are on `t`'s device. Every rank must call it (it is a collective).
    """
    if t.dim() != 1:
        raise ValueError(f"all_gather_varlen takes a 1-D tensor, got shape {tuple(t.shape)}")
    world = _world()
    if world == 1:
        return [t]
    dev = _comm_device()
    x = t.contiguous().to(dev)
    if x.dtype == torch.bool:  # not every backend reduces/gathers bool; same bytes as uint8
        x = x.view(torch.uint8)
    n = torch.tensor([x.numel()], dtype=torch.int64, device=dev)
    sizes = [torch.empty_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    lens = [int(s) for s in torch.cat(sizes).tolist()]
    longest = max(lens)
    if longest == 0:  # every rank agrees (they all saw `lens`), so skipping the gather is safe
        return [t.new_empty(0) for _ in range(world)]
    padded = x.new_zeros(longest)
    padded[: x.numel()] = x
    bufs = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(bufs, padded)
    out = [b[:m] for b, m in zip(bufs, lens)]
    if t.dtype == torch.bool:
        out = [o.view(torch.bool) for o in out]
    return [o.to(t.device) for o in out]


# Per rollout in the int64 tensor: prompt length, response length, log-prob count, truncated, group,
# policy_version. The log-prob count is its own field: nothing here assumes it equals the response length.
_META = 6


def _pack(rollouts: list[Rollout]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One rank's rollouts as (int64, float64, uint8 UTF-8 JSON) 1-D tensors.

    int64:   [n, meta(n x _META), prompt_0, response_0, prompt_1, response_1, ...]
    float64: [reward_0 .. reward_{n-1}, logprobs_0, logprobs_1, ...]; float64 holds every Python
             float exactly, so values are bit-identical after the trip.
    bytes:   JSON [[response_text, reward_info], ...]; json writes floats with repr(), the shortest
             string that parses back to the same double, so reward_info values survive bit-exact too
             (inf/nan included: json's default allow_nan writes Infinity/NaN and reads them back).
    """
    meta = (
        (
            len(r.prompt_ids),
            len(r.response_ids),
            len(r.sampling_logprobs),
            int(r.truncated),
            r.group,
            r.policy_version,
        )
        for r in rollouts
    )
    ids = chain.from_iterable(chain(r.prompt_ids, r.response_ids) for r in rollouts)
    ints = torch.tensor([len(rollouts), *chain.from_iterable(meta), *ids], dtype=torch.int64)
    floats = torch.tensor(
        [*(r.reward for r in rollouts), *chain.from_iterable(r.sampling_logprobs for r in rollouts)],
        dtype=torch.float64,
    )
    # surrogatepass: any Python str round-trips, even a lone surrogate that strict UTF-8 refuses
    text = json.dumps([[r.response_text, r.reward_info] for r in rollouts], ensure_ascii=False)
    blob = torch.frombuffer(bytearray(text.encode("utf-8", "surrogatepass")), dtype=torch.uint8)
    return ints, floats, blob


def _unpack(ints: torch.Tensor, floats: torch.Tensor, blob: torch.Tensor) -> list[Rollout]:
    """Inverse of `_pack` for one rank's tensors."""
    iv, fv = ints.tolist(), floats.tolist()  # one conversion each, then plain list slicing
    extras = json.loads(blob.cpu().numpy().tobytes().decode("utf-8", "surrogatepass"))
    n = iv[0]
    pos, fpos = 1 + _META * n, n
    out = []
    for i in range(n):
        p, q, k, truncated, group, version = iv[1 + _META * i : 1 + _META * (i + 1)]
        text, info = extras[i]
        out.append(
            Rollout(
                prompt_ids=iv[pos : pos + p],
                response_ids=iv[pos + p : pos + p + q],
                sampling_logprobs=fv[fpos : fpos + k],
                response_text=text,
                truncated=bool(truncated),
                group=group,
                policy_version=version,
                reward=fv[i],
                reward_info=info,
            )
        )
        pos, fpos = pos + p + q, fpos + k
    if (pos, fpos, len(extras)) != (len(iv), len(fv), n):
        raise RuntimeError(
            f"rollout exchange: malformed payload ({pos}/{len(iv)} ints, {fpos}/{len(fv)} floats)"
        )
    return out


def all_gather_rollouts(local: list[Rollout]) -> list[Rollout]:
    """Every rank's rollouts concatenated in rank order, identical on every rank (a collective).

    Three variable-length gathers (ints, floats, JSON bytes) carry any number of rollouts per rank,
    zero included. With one rank the input list is returned as a new list of the same objects.
    """
    if _world() == 1:
        return list(local)
    parts = [all_gather_varlen(t) for t in _pack(local)]
    return [r for ints, floats, blob in zip(*parts) for r in _unpack(ints, floats, blob)]


def gather_floats(values: list[float]) -> list[float]:
    """Every rank's floats concatenated in rank order (float64: exact), e.g. per-rank timings."""
    if _world() == 1:
        return [float(v) for v in values]
    gathered = all_gather_varlen(torch.tensor(values, dtype=torch.float64))
    return torch.cat(gathered).tolist()


def shard(n: int, world: int, rank: int) -> range:
    """This rank's contiguous share of range(n): sizes differ by at most one, the first n % world
    ranks take the extra item, ranks past n get an empty range; all shares in rank order are range(n)."""
    if n < 0 or world < 1 or not 0 <= rank < world:
        raise ValueError(f"shard(n={n}, world={world}, rank={rank}): need n >= 0 and 0 <= rank < world")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (rank < extra))


def gather_objects(values: list) -> list:
    """Every rank's list concatenated in rank order, pickled: only for optional diagnostic output
    (eval.save_samples' per-sample rows), never for what training consumes."""
    if _world() == 1:
        return list(values)
    box: list = [None] * _world()
    dist.all_gather_object(box, values)
    return [v for part in box for v in part]

"""Weight push without the engine: bucket planning, and the call order a push and sleep mode make
on vLLM (a recording stand-in for `vllm.LLM`; the real engine is tested in tests/integration)."""

import pytest
import torch

from chord.config import RolloutConfig
from chord.learner.weight_buckets import plan_buckets
from chord.rollout.vllm_engine import VLLMEngine
from chord.rollout.weight_ext import from_wire, to_wire

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("sizes,limit", [([4, 4, 4, 4], 8), ([10, 1, 1, 30, 2], 12), ([5], 1), ([], 3),
                                         ([3, 3, 3], 100), ([7, 1, 7, 1], 8)])
def test_buckets_keep_order_and_limit(sizes, limit):
    buckets = plan_buckets(sizes, limit)
    assert [i for b in buckets for i in b] == list(range(len(sizes)))  # every tensor once, model order
    for b in buckets:
        assert sum(sizes[i] for i in b) <= limit or len(b) == 1  # an oversized tensor travels alone
    for a, b in zip(buckets, buckets[1:]):
        assert sum(sizes[i] for i in a) + sizes[b[0]] > limit  # greedy: a bucket closes only when full


def test_bucket_limit_must_be_positive():
    with pytest.raises(ValueError):
        plan_buckets([1], 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.int64])
def test_wire_format_round_trip(dtype):
    t = (torch.randn(3, 5) * 100).to(dtype)
    [(name, back)] = from_wire([list(x) for x in to_wire([("w", t.t())])])  # non-contiguous in; lists as msgpack gives
    assert name == "w" and back.dtype == dtype and torch.equal(back, t.t())


class RecordingLLM:
    def __init__(self):
        self.calls = []

    def collective_rpc(self, method, args=()):
        self.calls.append((method, args))
        if method == "chord_reload_bucket":
            return [len(args[0])]
        if method == "chord_reload_end":
            return [self.sent]
        return [None]

    def sleep(self, level):
        self.calls.append(("sleep", level))

    def wake_up(self, tags=None):
        self.calls.append(("wake_up", tags))

    def reset_prefix_cache(self):
        self.calls.append(("reset_prefix_cache", ()))


def engine(multiprocess: bool, sleeps: bool) -> VLLMEngine:
    e = object.__new__(VLLMEngine)  # no vLLM: the push logic only talks to self.llm
    e.cfg, e.multiprocess, e.version, e.seed, e.sleeps, e.asleep = RolloutConfig(), multiprocess, 0, 0, sleeps, False
    e.llm = RecordingLLM()
    return e


def buckets():
    return iter([[("a", torch.ones(2)), ("b", torch.zeros(3))], [("c", torch.full((4,), 2.0))]])


@pytest.mark.parametrize("multiprocess", [False, True])
def test_sleep_then_push_wakes_weights_loads_then_kv_cache(multiprocess):
    e = engine(multiprocess, sleeps=True)
    e.llm.sent = 3
    e.sleep()
    assert e.asleep
    with pytest.raises(RuntimeError, match="push weights before generating"):
        e.generate([], 1, 0)  # released weights are never sampled from
    e.push_weights(buckets(), version=7)
    names = [c[0] if c[0] != "wake_up" else f"wake_up:{','.join(c[1])}" for c in e.llm.calls]
    assert names == ["sleep", "wake_up:weights", "chord_reload_begin", "chord_reload_bucket", "chord_reload_bucket",
                     "chord_reload_end", "wake_up:kv_cache", "reset_prefix_cache"]
    assert e.llm.calls[0] == ("sleep", 2) and not e.asleep and e.version == 7
    first = e.llm.calls[3][1][0]
    if multiprocess:  # another process: raw bytes with dtype and shape, never a file
        assert [tuple(x[:3]) for x in first] == [("a", "float32", [2]), ("b", "float32", [3])]
        assert isinstance(first[0][3], bytes)
    else:  # same process: the tensors themselves
        assert [n for n, _ in first] == ["a", "b"] and torch.equal(first[0][1], torch.ones(2))


def test_without_sleep_mode_sleep_is_a_no_op_and_push_never_wakes():
    e = engine(False, sleeps=False)
    e.llm.sent = 3
    e.sleep()
    e.push_weights(buckets(), version=1)
    assert [c[0] for c in e.llm.calls] == ["chord_reload_begin", "chord_reload_bucket", "chord_reload_bucket",
                                           "chord_reload_end", "reset_prefix_cache"]


def test_a_push_the_engine_did_not_fully_load_is_an_error():
    e = engine(False, sleeps=False)
    e.llm.sent = 2  # the engine reports fewer tensors than were sent
    with pytest.raises(RuntimeError, match="expected 3"):
        e.push_weights(buckets(), version=1)

"""MathReward: math-verify on the last \\boxed{}, in killable workers with a per-sample deadline."""

import os
import pickle
import threading
import time

import pytest

from chord.rewards import score_all
from chord.rewards.math_verifier import MathReward, extract_boxed, last_number, think_ok
from tests.math_cases import ADVERSARIAL

pytestmark = pytest.mark.unit

TIMEOUT = 1.0
MARGIN = 1.0  # pipe round trips and a SIGKILL on 2 busy cores
HOOK = "tests.unit.test_math_reward:slow_verify"


def slow_verify(pred: str, gold: str) -> bool:
    """Test-only verifier, imported by the workers: "slow" hangs past any deadline."""
    if pred == "slow":
        time.sleep(600)
    from chord.rewards.math_verifier import parse_and_verify

    return parse_and_verify(pred, gold)


@pytest.fixture(scope="module")
def reward():
    r = MathReward(format_penalty=-0.1, overlong_penalty=-0.5, timeout_s=TIMEOUT, workers=2)
    r.warm_up()
    yield r
    r.close()


def timed(r: MathReward, text: str, gold: str, **kw):
    r.warm_up()  # a worker killed by the previous case restarts outside the timed window
    t = time.monotonic()
    out = r(text, gold, **kw)
    return out, time.monotonic() - t


# ---------------------------------------------------------------- extraction (no workers)


def test_extract_boxed_last_nested_and_bare():
    assert extract_boxed(r"first \boxed{1} then \boxed{\frac{a}{b}} end") == r"\frac{a}{b}"
    assert extract_boxed(r"so $\boxed 5$.") == "5"
    assert extract_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"  # escaped braces don't count
    assert extract_boxed(r"\boxedfoo{1} \boxed{2} \boxedbar") == "2"
    assert extract_boxed(r"\boxed{1} \boxed{2") is None  # last one unclosed (truncated)
    assert extract_boxed(r"\boxed{ }") is None
    assert extract_boxed("no answer here") is None


def test_extract_is_linear_and_bounded():
    deep = r"\boxed{" + "{" * 10_000 + "1" + "}" * 10_000 + "}"
    t = time.monotonic()
    assert extract_boxed(deep, tail_chars=len(deep)) == "{" * 10_000 + "1" + "}" * 10_000  # no recursion
    assert extract_boxed(deep) is None  # the \boxed is outside the default 16 KiB tail
    assert extract_boxed(r"\boxed{" * 150_000) is None  # 1 MB of unclosed boxes
    assert extract_boxed("x" * 1_000_000 + r"\boxed{7}") == "7"
    assert time.monotonic() - t < 1.0


def test_last_number_and_think():
    assert last_number("so 3 apples and 12.5 pears, i.e. -1/2") == "-1/2"
    assert last_number("x" * 1_000_000 + " 42") == "42"
    assert last_number("４２ only fullwidth") is None
    assert think_ok("<think>a</think> b") and think_ok("a</think> b") and think_ok("plain")
    assert not think_ok("<think>a b")
    assert not think_ok("<think>a</think><think>b</think>")
    assert not think_ok("</think> a <think>")


# ---------------------------------------------------------------- scoring


@pytest.mark.parametrize(
    ("text", "gold"),
    [
        (r"The answer is \boxed{42}.", "42"),
        (r"\boxed{\frac{1}{2}}", "0.5"),
        (r"\boxed{\frac{1}{2}}", "1/2"),
        (r"\boxed{1 + x}", "x+1"),
        (r"\boxed{x+1}", r"$1+x$"),
        (r"\boxed{\frac{a}{b}}", r"\frac{a}{b}"),
        (r"maybe \boxed{41}, no: \boxed{42}", "42"),
        (r"<think>hmm</think> \boxed{42}", "42"),
    ],
)
def test_correct(reward, text, gold):
    score, info = reward(text, gold)
    assert score == 1.0, info
    assert info == {
        "correct": 1.0,
        "format_ok": 1.0,
        "boxed_found": 1.0,
        "timeout": 0.0,
        "parse_error": 0.0,
        "overlong": 0.0,
    }


@pytest.mark.parametrize(("text", "gold"), [(r"\boxed{43}", "42"), (r"\boxed{42} \boxed{41}", "42")])
def test_wrong(reward, text, gold):
    score, info = reward(text, gold)
    assert score == 0.0 and info["correct"] == 0.0 and info["format_ok"] == 1.0


def test_format_and_overlong_penalties(reward):
    score, info = reward("the answer is 42", "42")
    assert score == pytest.approx(-0.1) and info["boxed_found"] == 0.0 and info["format_ok"] == 0.0
    score, info = reward(r"<think>still thinking \boxed{42}", "42")
    assert score == pytest.approx(0.9) and info["boxed_found"] == 1.0 and info["format_ok"] == 0.0
    score, info = reward(r"\boxed{42}", "42", truncated=True)
    assert score == pytest.approx(0.5) and info["overlong"] == 1.0
    out = reward.score_batch([r"\boxed{42}", "no box"], ["42", "42"], truncated=[True, False])
    assert [s for s, _ in out] == pytest.approx([0.5, -0.1])


def test_fallback_last_number():
    with MathReward(format_penalty=-0.1, fallback="last_number", workers=1) as r:
        score, info = r("so it is 41... no, 42", "42")
        assert score == pytest.approx(0.9) and info["correct"] == 1.0 and info["boxed_found"] == 0.0
        assert r("so it is 42 or 43", "42")[0] == pytest.approx(-0.1)
    with pytest.raises(ValueError):
        MathReward(fallback="first_number")


def test_score_all_and_pickle(reward):
    out = score_all(reward, [r"\boxed{2}", r"\boxed{3}"], ["2", "2"])
    assert out.rewards == [1.0, 0.0] and out.errors == 0
    copy = pickle.loads(pickle.dumps(MathReward(format_penalty=-0.1)))
    assert copy.format_penalty == -0.1 and copy._pool is None


# ---------------------------------------------------------------- adversarial


def test_adversarial_inputs_are_bounded(reward):
    cases = ADVERSARIAL
    worst = 0.0
    for text, gold in cases:
        (score, info), dt = timed(reward, text, gold)
        worst = max(worst, dt)
        assert score <= 0.0 and info["correct"] == 0.0, (text[:40], info)
        assert dt < TIMEOUT + MARGIN, (text[:40], dt)
    print(f"adversarial worst case {worst:.2f}s (timeout {TIMEOUT}s)")
    # A genuinely correct answer at the end of 1 MB still scores.
    (score, _), dt = timed(reward, "z" * 1_000_000 + r" \boxed{42}", "42")
    assert score == 1.0 and dt < TIMEOUT + MARGIN


def test_code_like_answers_are_never_executed(reward, tmp_path):
    marker = tmp_path / "pwned"
    payloads = [
        f"__import__('os').system('touch {marker}')",
        f"exec(\"open('{marker}', 'w')\")",
        f"eval(compile(\"open('{marker}','w')\", 's', 'exec'))",
        f"(lambda: __import__('pathlib').Path('{marker}').touch())()",
    ]
    with MathReward(fallback="last_number", timeout_s=TIMEOUT, workers=1) as fallback:
        for p in payloads:
            for text in (rf"\boxed{{{p}}}", p, f"$${p}$$"):
                for r in (reward, fallback):
                    (score, info), dt = timed(r, text, p)  # hostile gold too
                    assert score <= 1.0 and dt < TIMEOUT + MARGIN
                    assert not marker.exists(), text
    assert not marker.exists()


# ---------------------------------------------------------------- deadline and recovery


def test_timeout_kills_only_the_stuck_worker():
    with MathReward(timeout_s=TIMEOUT, workers=2, _verifier=HOOK) as r:
        r.warm_up()
        pids = {w.proc.pid for w in r._pool.workers}
        texts = [r"\boxed{slow}"] + [rf"\boxed{{{i}}}" for i in range(20)]
        golds = ["1"] + [str(i) for i in range(20)]
        t = time.monotonic()
        out = r.score_batch(texts, golds)
        dt = time.monotonic() - t
        assert dt < TIMEOUT + MARGIN, dt  # the other 20 went through the other worker meanwhile
        assert out[0] == (0.0, {**out[0][1], "timeout": 1.0, "correct": 0.0})
        assert [s for s, _ in out[1:]] == [1.0] * 20
        assert all(i["timeout"] == 0.0 for _, i in out[1:])
        killed = pids - {w.proc.pid for w in r._pool.workers}
        assert len(killed) == 1 and all(w.proc.poll() is None for w in r._pool.workers)
        # Recovered: the next call scores normally, including from a non-main thread.
        assert r(r"\boxed{7}", "7")[0] == 1.0
        got = []
        th = threading.Thread(target=lambda: got.extend([r(r"\boxed{slow}", "1"), r(r"\boxed{8}", "8")]))
        th.start()
        th.join(timeout=30)
        assert not th.is_alive()
        assert got[0][1]["timeout"] == 1.0 and got[1][0] == 1.0
        pool = r._pool
    assert pool.workers == []  # close() reaped them


def test_workers_die_with_close_and_start_errors_are_loud():
    r = MathReward(workers=1)
    assert r._pool is None  # lazy
    r.warm_up()
    (w,) = r._pool.workers
    r.close()
    assert w.proc.poll() is not None
    with MathReward(workers=1, _verifier="chord.no_such_module:fn") as bad, pytest.raises(RuntimeError):
        bad(r"\boxed{1}", "1")


def test_os_has_spare_fds_after_many_restarts(reward):
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    for _ in range(3):
        timed(reward, r"\boxed{10^{10^{10^{10}}}}", "1")
    reward.warm_up()
    after = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0
    assert after <= before + 2  # killed workers' pipes are closed, not leaked


def test_worker_killed_while_idle_is_replaced(reward):
    reward.warm_up()
    victim = reward._pool.workers[0]
    victim.proc.kill()
    victim.proc.wait(timeout=5)
    out = reward.score_batch([rf"\boxed{{{i}}}" for i in range(6)], [str(i) for i in range(6)])
    assert [s for s, _ in out] == [1.0] * 6
    assert victim not in reward._pool.workers


def test_registry_name_math_scores_through_the_batch_path():
    from chord.rewards import resolve_reward
    from chord.rewards.math_verifier import MathReward

    fn = resolve_reward("math")
    assert isinstance(fn, MathReward)
    s = score_all(fn, [r"so \boxed{4}", "no box", r"\boxed{5}"], ["4", "4", "4"])
    assert s.rewards == [1.0, 0.0, 0.0] and s.errors == 0
    assert [i["boxed_found"] for i in s.info] == [1.0, 0.0, 1.0]
    fn.close()


def test_timed_out_sample_returns_at_its_deadline_while_the_worker_is_replaced(monkeypatch):
    """Replacing the killed worker (reaping a GB-sized process, starting a new one) happens in the background:
    here starting a worker takes 3 s, and the timed-out call still returns at its deadline."""
    from chord.rewards.math_verifier import _VerifierPool

    with MathReward(timeout_s=TIMEOUT, workers=1, _verifier=HOOK) as r:
        r.warm_up()
        spawn = _VerifierPool._spawn

        def slow_spawn(self):
            time.sleep(3.0)  # a fork+exec and interpreter start on a loaded machine
            return spawn(self)

        monkeypatch.setattr(_VerifierPool, "_spawn", slow_spawn)
        t = time.monotonic()
        out = r(r"\boxed{slow}", "1")
        dt = time.monotonic() - t
        assert out[1]["timeout"] == 1.0
        assert dt < TIMEOUT + 0.5, dt
        assert r(r"\boxed{7}", "7")[0] == 1.0  # the next call waits for the replacement, then scores
        pool = r._pool
    assert pool.workers == [] and pool.pending == 0

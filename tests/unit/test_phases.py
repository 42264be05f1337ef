"""chord.analysis.phases / run_phases on synthetic curves whose phases are known by construction."""

import json
import math
import random

import pytest

from chord.analysis.phases import (
    Curve,
    Series,
    binomial_stderr,
    detect_phases,
    problem_stderr,
    z_diff,
)
from chord.analysis.run_phases import curves_from_rows, phases_from_rows, read_run_phases, sample_stderrs

pytestmark = pytest.mark.unit

SE = 0.01
STEPS = [10 * i for i in range(10)]
# start 0.30, shift (0.20, 0.18), back (0.22), readapt (0.35, 0.40), peak 0.42, then a fall (0.33, 0.30)
CLEAN = [0.30, 0.20, 0.18, 0.22, 0.35, 0.40, 0.42, 0.41, 0.33, 0.30]
FALLING = Series(list(range(1, 1001)), [3.0 - 0.002 * s for s in range(1, 1001)])
RISING = Series(list(range(1, 1001)), [1.0 + 0.002 * s for s in range(1, 1001)])


def curve(acc, steps=None, se=SE):
    return Curve(steps or STEPS[: len(acc)], acc, [se] * len(acc))


def test_clean_shift_readapt_overfit():
    ph = detect_phases(curve(CLEAN), FALLING, sft_start=1)
    assert (ph.shift, ph.readapt, ph.overfit) == (10, 40, 80)
    ev = ph.evidence
    assert (ev.baseline_step, ev.baseline_acc, ev.baseline_se) == (0, 0.30, SE)
    assert ev.shift_z == pytest.approx(0.10 / math.hypot(SE, SE))
    assert (ev.trough_step, ev.trough_acc) == (20, 0.18)
    assert ev.readapt_z == pytest.approx(0.05 / math.hypot(SE, SE))
    # the peak (0.42 at step 60) is measured by its neighbours 0.40 and 0.41, not by its own noisy maximum
    assert (ev.peak_step, ev.peak_acc) == (60, 0.42) and ev.peak_level == pytest.approx(0.405)
    assert ev.overfit_z == pytest.approx((0.405 - 0.33) / math.hypot(SE * math.sqrt(2) / 2, SE))
    assert ev.expert_slope == pytest.approx(-0.002) and ev.expert_slope_se == pytest.approx(0.0, abs=1e-9)


def test_flat_noise_within_the_standard_error_has_no_phase():
    acc = [0.30, 0.31, 0.295, 0.305, 0.29, 0.30, 0.31, 0.29, 0.30, 0.305]
    assert all(abs(a - 0.30) <= SE + 1e-12 for a in acc)  # within one SE of 0.30
    ph = detect_phases(curve(acc), FALLING)
    assert (ph.shift, ph.readapt, ph.overfit) == (None, None, None)
    assert ph.evidence.shift_z is None and ph.evidence.peak_step is None


def test_only_a_shift():
    ph = detect_phases(curve([0.30, 0.20, 0.19, 0.20, 0.21, 0.22]), FALLING)
    assert (ph.shift, ph.readapt, ph.overfit) == (10, None, None)
    assert (ph.evidence.trough_step, ph.evidence.trough_acc) == (20, 0.19)


def test_dip_within_noise_or_for_one_point_is_no_shift():
    small = [0.30, 0.28, 0.285, 0.29, 0.30]  # 0.02 below: z = 1.4 < 2
    assert detect_phases(curve(small), FALLING).shift is None
    assert z_diff(0.30, SE, 0.28, SE) == pytest.approx(0.02 / math.hypot(SE, SE))
    one = [0.30, 0.30, 0.10, 0.30, 0.30]  # one point far below: not persistent
    assert detect_phases(curve(one), FALLING).shift is None
    assert detect_phases(curve(one), FALLING, persist=1).shift == 20
    last = [0.30, 0.30, 0.30, 0.10]  # only the last evaluation: not yet a phase
    assert detect_phases(curve(last), FALLING).shift is None
    # the same 0.02 dip is significant when the evaluations are 10x less noisy
    assert detect_phases(curve(small, se=SE / 10), FALLING).shift == 10


def test_overfit_needs_the_expert_loss_to_fall():
    ph = detect_phases(curve(CLEAN), RISING)
    assert (ph.shift, ph.readapt, ph.overfit) == (10, 40, None)
    assert detect_phases(curve(CLEAN), None).overfit is None
    flat = Series(list(range(1, 101)), [2.0 + 0.01 * (-1) ** s for s in range(1, 101)])  # noise, no trend
    assert detect_phases(curve(CLEAN), flat).overfit is None


def test_unequal_step_spacing():
    steps = [0, 5, 30, 31, 100, 250, 251, 400, 410, 1000]
    ph = detect_phases(curve(CLEAN, steps), FALLING, sft_start=1)
    assert (ph.shift, ph.readapt, ph.overfit) == (5, 100, 410)
    assert ph.evidence.peak_step == 251 and ph.evidence.expert_slope == pytest.approx(-0.002)


def test_rise_then_fall_below_the_start_is_overfit_not_shift():
    ph = detect_phases(curve([0.30, 0.40, 0.42, 0.41, 0.20, 0.18]), FALLING)
    assert (ph.shift, ph.readapt, ph.overfit) == (None, None, 40)
    assert ph.evidence.peak_step == 20


def test_baseline_is_the_last_evaluation_before_sft():
    acc = [0.10, 0.30, 0.20, 0.19]  # a first stage lifted accuracy to 0.30 before SFT starts at step 11
    assert detect_phases(curve(acc), FALLING, sft_start=11).shift == 20
    assert detect_phases(curve(acc), FALLING, sft_start=11).evidence.baseline_step == 10
    assert detect_phases(curve(acc), FALLING).shift is None  # from step 0: a rise first


def test_curve_validation():
    with pytest.raises(ValueError, match="strictly increasing"):
        Curve([0, 10, 10], [0.1] * 3, [SE] * 3)
    with pytest.raises(ValueError):
        Curve([0, 10], [0.1], [SE])
    with pytest.raises(ValueError):
        Curve([], [], [])
    with pytest.raises(ValueError):
        Curve([0], [0.1], [-1.0])
    with pytest.raises(ValueError):
        detect_phases(curve(CLEAN), persist=0)


def test_standard_errors():
    assert binomial_stderr(0.5, 100) == pytest.approx(0.05)
    assert binomial_stderr(0.0, 400) == binomial_stderr(1.0, 400) == 1 / 400  # one sample's worth, not 0
    assert problem_stderr([[True, False], [True, True]]) == pytest.approx(math.sqrt(0.25 / 1) / 2)
    # problems that are always / never solved add no noise: far below the binomial bound
    mixed = [[True] * 4] * 50 + [[False] * 4] * 49 + [[True, False, False, True]]
    assert problem_stderr(mixed) < binomial_stderr(201 / 400, 400) / 5
    with pytest.raises(ValueError):
        problem_stderr([[True]])


def test_problem_stderr_matches_the_spread_of_repeated_evaluations():
    """On a fixed set of 60 problems (solve rates q_i), the SD of avg@4 over 1000 re-samplings ~ the estimate."""
    rng = random.Random(0)
    q = [rng.random() for _ in range(60)]
    evals = [[[rng.random() < qi for _ in range(4)] for qi in q] for _ in range(1000)]
    avgs = [sum(map(sum, e)) / 240 for e in evals]
    m = sum(avgs) / len(avgs)
    sd = math.sqrt(sum((a - m) ** 2 for a in avgs) / (len(avgs) - 1))
    est = sum(problem_stderr(e) for e in evals) / len(evals)
    assert est == pytest.approx(sd, rel=0.1)
    assert binomial_stderr(m, 240) > sd  # the bound from the mean alone holds, and is looser


def write_jsonl(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 99, "truncated\n')


def make_run(folder, expert=True):
    """id/avg@4 follows CLEAN, ood/avg@4 is flat; 2000 samples each (SE ~ 0.01); SFT from step 1."""
    evals = [
        {"step": s, "id/avg@4": a, "id/problems": 500.0, "ood/avg@4": 0.5, "ood/problems": 500.0}
        for s, a in zip(STEPS, CLEAN)
    ]
    rows = [
        {
            "step": s,
            "mu": 0.5,
            "tokens/expert": 100 if expert else 0,
            "loss/sft": 1.0 + 0.01 * s,
            **({"sft/expert_logp": -3.0 + 0.01 * s} if expert else {}),
        }
        for s in range(1, 91)
    ]
    write_jsonl(folder / "eval.jsonl", evals)
    write_jsonl(folder / "metrics.jsonl", rows)
    return evals, rows


def test_read_run_phases(tmp_path):
    make_run(tmp_path)
    phases = read_run_phases(tmp_path)
    assert sorted(phases) == ["id", "ood", "overall"]
    ph = phases["id"]
    # the expert NLL is -sft/expert_logp (falling); loss/sft (rising here) is not used when both are logged
    assert (ph.shift, ph.readapt, ph.overfit) == (10, 40, 80)
    assert ph.evidence.baseline_se == pytest.approx(binomial_stderr(0.30, 2000))
    assert (phases["ood"].shift, phases["ood"].readapt, phases["ood"].overfit) == (None, None, None)


def test_run_without_sft_has_no_phases(tmp_path):
    evals, rows = make_run(tmp_path, expert=False)
    assert read_run_phases(tmp_path) == {}
    assert phases_from_rows(evals, []) == {}


def test_curves_from_rows_standard_errors_and_overall(tmp_path):
    evals = [
        {"step": 0, "a/avg@4": 0.5, "a/problems": 25.0, "b/avg@8": 0.0, "b/problems": 50.0},
        {"step": 5, "a/avg@4": 0.5, "b/avg@8": 0.25, "b/problems": 50.0},
    ]  # a's count missing at 5
    curves = curves_from_rows(evals, {("b", 5): 0.123})
    assert list(curves["a"].steps) == [0] and curves["a"].stderr[0] == pytest.approx(0.05)
    assert list(curves["b"].stderr) == [pytest.approx(1 / 400), 0.123]
    assert list(curves["overall"].steps) == [0]
    assert curves["overall"].stderr[0] == pytest.approx(math.hypot(0.05, 1 / 400) / 2)
    samples = [
        {"benchmark": "b", "problem": p, "sample": j, "correct": p == 0 or j == 0}
        for p in range(2)
        for j in range(2)
    ]
    write_jsonl(tmp_path / "samples_step_5.jsonl", samples)
    (tmp_path / "samples_step_x.jsonl").write_text("{}\n")
    assert sample_stderrs(tmp_path) == {("b", 5): problem_stderr([[True, True], [True, False]])}

"""chord.evaluation with a fake engine (avg@k, pass@k, length, truncation, sample rows), benchmark
loading in the usual layouts, the eval.jsonl / eval.md / samples files, and the `truncated` plumbing
of chord.rewards.score_all / build_reward."""

import itertools
import json

import pytest

from chord.config import BenchmarkConfig, EvalConfig, RewardConfig
from chord.data.loading import DataError
from chord.evaluation.evaluate import (
    Benchmark,
    better,
    evaluate,
    is_correct,
    load_benchmark,
    markdown_table,
    sampling_for,
    write_results,
)
from chord.rewards import BUILTIN, build_reward, score_all
from chord.rollout.placement import EngineSlot
from chord.types import PromptExample, Rollout, Sampling

pytestmark = pytest.mark.unit

SAMPLING = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=16)


# ---------------------------------------------------------------------------------------------
# fake engine and helpers


class FakeEngine:
    """Answers each prompt from a table: prompt_text -> list of (response, truncated, length[, response ids]);
    without ids a response is the token ids 0 .. length - 1."""

    def __init__(self, table):
        self.table = table
        self.calls = []

    def generate(self, prompts, samples, step, sampling=None, slots=None):
        assert prompts, "an engine with no share of the problems must not be called (vLLM with no requests)"
        self.calls.append({"prompts": list(prompts), "samples": samples, "step": step, "sampling": sampling})
        out = []
        for g, p in zip(range(len(prompts)) if slots is None else slots, prompts, strict=True):
            answers = self.table[p.prompt_text]
            assert len(answers) == samples, "the evaluation asked for a different k than the table holds"
            for text, cut, n, *ids in answers:
                out.append(Rollout(prompt_ids=list(p.prompt_ids), response_ids=ids[0] if ids else list(range(n)),
                                   sampling_logprobs=[-0.5] * n, response_text=text, truncated=cut, group=g,
                                   policy_version=0))
        return out


def exact(response, answer):
    return (1.0 if response == answer else 0.0), {}


def _bench(name, pattern, *, lengths=None, cut=None):
    """A benchmark whose problem i gets k = len(pattern[i]) responses, right where pattern says True.

    Returns (Benchmark, engine table). Problem i has dataset index 100 + i (not its group number)."""
    k = len(pattern[0])
    problems, table = [], {}
    for i, row in enumerate(pattern):
        text, answer = f"{name}-q{i}", f"{name}-a{i}"
        problems.append(PromptExample(prompt_ids=[1, 2, 3 + i], prompt_text=text, answer=answer, index=100 + i))
        table[text] = [(answer if ok else f"wrong-{j}",
                        bool(cut[i][j]) if cut else False,
                        lengths[i][j] if lengths else 5)
                       for j, ok in enumerate(row)]
    return Benchmark(name, problems, k, summary=f"{name}: kept {len(problems)}"), table


def _brute_pass(samples, k):
    """pass@k by enumeration: the share of k-subsets of the n samples holding a correct one."""
    subsets = list(itertools.combinations(range(len(samples)), k))
    return sum(any(samples[i] for i in s) for s in subsets) / len(subsets)


# benchmark A: 3 problems, k = 4; benchmark B: 2 problems, k = 2 (different sizes and k)
PAT_A = [[True, False, False, True], [False, False, False, False], [True, True, True, True]]
LEN_A = [[3, 5, 7, 9], [10, 10, 10, 10], [1, 2, 3, 4]]
CUT_A = [[0, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0]]
PAT_B = [[False, True], [False, False]]
LEN_B = [[20, 30], [40, 50]]
CUT_B = [[1, 1], [1, 0]]


def _two_benchmarks():
    a, ta = _bench("aime", PAT_A, lengths=LEN_A, cut=CUT_A)
    b, tb = _bench("amc", PAT_B, lengths=LEN_B, cut=CUT_B)
    return [a, b], FakeEngine({**ta, **tb})


# benchmark C: 5 problems, k = 3 (not a power of two), responses with their own token ids
PAT_C = [[True, False, False], [False, False, False], [True, True, False], [False, True, False], [True] * 3]
IDS_C = [[[1, 2, 3], [1, 2, 3], [1, 2, 3]],  # one response three times: 2 distinct bigrams of 6
         [[1, 2], [2, 1], [1, 1]],  # 3 of 3
         [[5, 5, 5, 5], [5, 5], []],  # (5, 5) only: 1 of 4
         [[7], [8], [9]],  # no bigram at all: 0
         [[1, 2, 3, 4], [4, 3, 2, 1], [1, 2, 4, 3]]]  # 7 of 9: (1, 2) and (4, 3) twice
DISTINCT_C = [2 / 6, 3 / 3, 1 / 4, 0.0, 7 / 9]


def _three_benchmarks():
    (a, b), engine = _two_benchmarks()
    c, tc = _bench("gen", PAT_C)
    for i, p in enumerate(c.problems):
        tc[p.prompt_text] = [(text, cut, len(ids), ids) for (text, cut, _), ids in zip(tc[p.prompt_text], IDS_C[i],
                                                                                       strict=True)]
    engine.table.update(tc)
    return [a, b, c], engine


# ---------------------------------------------------------------------------------------------
# evaluate


def test_metrics_match_hand_counts_and_brute_force():
    benches, engine = _two_benchmarks()
    m, _ = evaluate(engine, benches, exact, step=3, sampling=SAMPLING)
    # hand counts
    assert m["aime/avg@4"] == pytest.approx(6 / 12)
    assert m["aime/pass@4"] == pytest.approx(2 / 3)
    assert m["amc/avg@2"] == pytest.approx(1 / 4)
    assert m["amc/pass@2"] == pytest.approx(1 / 2)
    # pass@k against enumeration of k-subsets
    for name, pat in (("aime", PAT_A), ("amc", PAT_B)):
        k = len(pat[0])
        assert m[f"{name}/pass@{k}"] == pytest.approx(sum(_brute_pass(s, k) for s in pat) / len(pat))
    assert m["aime/length_mean"] == pytest.approx(sum(map(sum, LEN_A)) / 12)
    assert m["amc/length_mean"] == pytest.approx(140 / 4)
    assert m["aime/truncated_frac"] == pytest.approx(3 / 12)
    assert m["amc/truncated_frac"] == pytest.approx(3 / 4)
    assert m["aime/problems"] == 3.0 and m["amc/problems"] == 2.0
    assert m["aime/reward_errors"] == 0.0 and m["amc/reward_errors"] == 0.0
    # overall = unweighted mean over benchmarks (the sample-weighted mean would be 7/16, not 6/16)
    assert m["overall/avg"] == pytest.approx((6 / 12 + 1 / 4) / 2)
    assert m["overall/avg"] != pytest.approx(7 / 16)
    assert m["overall/pass"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["overall/length_mean"] == pytest.approx((sum(map(sum, LEN_A)) / 12 + 35) / 2)
    assert m["overall/truncated_frac"] == pytest.approx((3 / 12 + 3 / 4) / 2)


def test_pass_curve_below_k_and_distinct_2():
    benches, engine = _three_benchmarks()
    m, _ = evaluate(engine, benches, exact, step=3, sampling=SAMPLING)
    per_bench = {name: {k.split("/", 1)[1] for k in m if k.startswith(name + "/")} for name in ("aime", "amc", "gen")}
    assert {k for k in per_bench["aime"] if k.startswith("pass@")} == {"pass@1", "pass@2", "pass@4"}
    assert {k for k in per_bench["amc"] if k.startswith("pass@")} == {"pass@1", "pass@2"}
    assert {k for k in per_bench["gen"] if k.startswith("pass@")} == {"pass@1", "pass@2", "pass@3"}
    # hand counts: pass@1 is the mean accuracy; aime's first problem (2 of 4 correct) has pass@2 = 1 - 1/6
    assert m["aime/pass@1"] == pytest.approx(m["aime/avg@4"]) and m["amc/pass@1"] == pytest.approx(1 / 4)
    assert m["aime/pass@2"] == pytest.approx((5 / 6 + 0 + 1) / 3)
    for name, pat in (("aime", PAT_A), ("amc", PAT_B), ("gen", PAT_C)):
        for j in range(1, len(pat[0]) + 1):
            if f"{name}/pass@{j}" in m:
                assert m[f"{name}/pass@{j}"] == pytest.approx(sum(_brute_pass(s, j) for s in pat) / len(pat))
    # distinct-2 over each problem's k responses (token ids 0 .. n-1 for aime and amc), mean over problems
    assert m["aime/distinct_2"] == pytest.approx((8 / 20 + 9 / 36 + 3 / 6) / 3)
    assert m["amc/distinct_2"] == pytest.approx((29 / 48 + 49 / 88) / 2)
    assert m["gen/distinct_2"] == pytest.approx(sum(DISTINCT_C) / 5)
    # overall/* and the markdown table keep their columns: avg@k and pass@k, not the curve
    assert {k for k in m if k.startswith("overall/")} == {"overall/avg", "overall/pass", "overall/length_mean",
                                                         "overall/truncated_frac"}
    assert m["overall/pass"] == pytest.approx((m["aime/pass@4"] + m["amc/pass@2"] + m["gen/pass@3"]) / 3)
    head = markdown_table([{"step": 3, **m}]).splitlines()[0]
    assert "pass@1" not in head and "distinct" not in head and "aime/pass@4" in head and "gen/pass@3" in head


def test_benchmark_order_does_not_change_metrics():
    benches, engine = _two_benchmarks()
    m1, _ = evaluate(engine, benches, exact, step=0, sampling=SAMPLING)
    m2, _ = evaluate(engine, benches[::-1], exact, step=0, sampling=SAMPLING)
    assert m1.keys() == m2.keys()
    assert all(m1[k] == pytest.approx(m2[k]) for k in m1)


def test_no_benchmarks_no_overall():
    m, rows = evaluate(FakeEngine({}), [], exact, step=0, sampling=SAMPLING)
    assert m == {} and rows == []


def test_penalty_in_reward_does_not_change_accuracy():
    benches, engine = _two_benchmarks()

    def penalized(response, answer, truncated=False):
        ok = response == answer
        # a correct but truncated response scores 0.9 (< 1); a wrong one gets a format bonus of 1.2 (>= 1)
        reward = (1.0 if ok else 1.2) - (0.1 if truncated else 0.0)
        return reward, {"correct": float(ok)}

    m_exact, _ = evaluate(engine, benches, exact, step=0, sampling=SAMPLING)
    m_pen, rows = evaluate(engine, benches, penalized, step=0, sampling=SAMPLING)
    for key in ("aime/avg@4", "aime/pass@4", "amc/avg@2", "amc/pass@2", "overall/avg", "overall/pass"):
        assert m_pen[key] == pytest.approx(m_exact[key]), key
    # the reward really differs from `correct` (so the test would notice grading by reward)
    assert any(r["reward"] != float(r["correct"]) for r in rows)
    # evaluate passes each rollout's truncated flag to a reward that accepts it
    for r in rows:
        expect = (1.0 if r["correct"] else 1.2) - (0.1 if r["truncated"] else 0.0)
        assert r["reward"] == pytest.approx(expect)
    assert any(r["truncated"] and r["correct"] for r in rows)  # the 0.9 case occurs


def test_is_correct_prefers_info_then_reward():
    assert is_correct(1.0, {}) and is_correct(2.0, {})
    assert not is_correct(0.99, {})
    assert is_correct(0.9, {"correct": 1.0})
    assert not is_correct(1.5, {"correct": 0.0})


def test_raising_reward_counts_errors_and_scores_zero():
    bench, table = _bench("b", [[True, True], [True, False]])

    def flaky(response, answer):
        if response == "b-a1":
            raise RuntimeError("verifier crashed")
        return exact(response, answer)

    m, rows = evaluate(FakeEngine(table), [bench], flaky, step=0, sampling=SAMPLING)
    assert m["b/reward_errors"] == 1.0
    assert m["b/avg@2"] == pytest.approx(2 / 4)
    assert [r["correct"] for r in rows] == [True, True, False, False]


@pytest.mark.parametrize("step", [0, 1, 7, 120])
def test_engine_gets_negative_step_and_the_given_sampling(step):
    benches, engine = _two_benchmarks()
    evaluate(engine, benches, exact, step=step, sampling=SAMPLING)
    assert len(engine.calls) == 2
    for call, b in zip(engine.calls, benches, strict=True):
        assert call["step"] == -1 - step
        assert call["sampling"] is SAMPLING
        assert call["samples"] == b.k
        assert [p.prompt_text for p in call["prompts"]] == [p.prompt_text for p in b.problems]


def test_eval_seeds_never_collide_with_training_steps():
    benches, engine = _two_benchmarks()
    steps = range(0, 60, 3)
    for s in steps:
        evaluate(engine, benches[:1], exact, step=s, sampling=SAMPLING)
    seen = [c["step"] for c in engine.calls]
    assert len(set(seen)) == len(seen)  # distinct evaluation steps get distinct seeds
    assert all(x < 0 for x in seen)  # training rollouts use steps >= 0


def test_sampling_for():
    assert sampling_for(EvalConfig(temperature=0.6, top_p=0.95), 48) == Sampling(0.6, 0.95, 48)
    assert sampling_for(EvalConfig(max_new_tokens=100), 48) == Sampling(1.0, 1.0, 100)


def test_sample_rows_one_per_response():
    benches, engine = _two_benchmarks()
    _, rows = evaluate(engine, benches, exact, step=0, sampling=SAMPLING)
    assert len(rows) == 3 * 4 + 2 * 2
    expected = []
    for name, pat, lens, cut in (("aime", PAT_A, LEN_A, CUT_A), ("amc", PAT_B, LEN_B, CUT_B)):
        for i, row in enumerate(pat):
            for j, ok in enumerate(row):
                expected.append({"benchmark": name, "problem": 100 + i, "sample": j, "prompt": f"{name}-q{i}",
                                 "answer": f"{name}-a{i}",
                                 "response": f"{name}-a{i}" if ok else f"wrong-{j}", "correct": ok,
                                 "reward": 1.0 if ok else 0.0, "truncated": bool(cut[i][j]),
                                 "length": lens[i][j]})
    assert rows == expected
    json.dumps(rows)  # rows are written as jsonl: plain types only


# ---------------------------------------------------------------------------------------------
# load_benchmark


@pytest.fixture(scope="module")
def tok():
    from chord.models.tiny import tiny_tokenizer

    return tiny_tokenizer(seed=0, vocab_size=512)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def _load(tok, source, *, eval_k=4, system_prompt=None, max_prompt_length=128, max_bad_fraction=0.0, **kw):
    """load_benchmark with eval-level settings; **kw are BenchmarkConfig fields."""
    b = BenchmarkConfig(name=kw.pop("name", "bench"), source=source, **kw)
    return load_benchmark(b, tok, k=eval_k, system_prompt=system_prompt, max_prompt_length=max_prompt_length,
                          max_bad_fraction=max_bad_fraction)


LAYOUTS = {
    "math500": [{"problem": "What is 1 + 1?", "solution": "2", "answer": "2", "subject": "Algebra", "level": 1},
                {"problem": "Simplify 2/4.", "solution": "...", "answer": "\\frac{1}{2}", "subject": "x",
                 "level": 2}],
    "aime24": [{"id": 60, "problem": "Find n.", "solution": "s", "answer": "204", "url": "u", "year": "2024"},
               {"id": 61, "problem": "Find m.", "solution": "s", "answer": "25", "url": "u", "year": "2024"}],
    "capitalized": [{"Problem": "Find n.", "Answer": 33, "ID": "2024-I-1"},
                    {"Problem": "Find m.", "Answer": 7, "ID": "2024-I-2"}],
    "gsm8k": [{"question": "Find n.", "answer": "12"}, {"question": "Find m.", "answer": "5"}],
}
EXPECTED = {"math500": (["What is 1 + 1?", "Simplify 2/4."], ["2", "\\frac{1}{2}"]),
            "aime24": (["Find n.", "Find m."], ["204", "25"]),
            "capitalized": (["Find n.", "Find m."], ["33", "7"]),
            "gsm8k": (["Find n.", "Find m."], ["12", "5"])}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_detected(tok, tmp_path, layout):
    b = _load(tok, _jsonl(tmp_path / f"{layout}.jsonl", LAYOUTS[layout]), name=layout)
    prompts, answers = EXPECTED[layout]
    assert b.name == layout and b.k == 4
    assert [p.prompt_text for p in b.problems] == prompts
    assert [p.answer for p in b.problems] == answers
    assert [p.index for p in b.problems] == [0, 1]
    for p in b.problems:  # chat-templated: the question sits inside the user turn, generation prompt last
        text = tok.decode(p.prompt_ids)
        assert f"user\n{p.prompt_text}" in text and text.endswith("<|im_start|>assistant\n")
    assert "kept 2/2" in b.summary


def test_amc_float_answers(tok, tmp_path):
    rows = [{"id": 0, "problem": "p0", "answer": 142.0, "url": "u"},
            {"id": 1, "problem": "p1", "answer": 2.5, "url": "u"},
            {"id": 2, "problem": "p2", "answer": -3.0, "url": "u"}]
    b = _load(tok, _jsonl(tmp_path / "amc.jsonl", rows))
    assert [p.answer for p in b.problems] == ["142", "2.5", "-3"]


def test_problem_column_wins_over_question(tok, tmp_path):
    rows = [{"question": "not me", "problem": "me", "final_answer": "1", "answer": "2"}]
    b = _load(tok, _jsonl(tmp_path / "both.jsonl", rows))
    assert b.problems[0].prompt_text == "me" and b.problems[0].answer == "2"


def test_explicit_columns_k_and_max_problems(tok, tmp_path):
    rows = [{"text": f"question {i}", "target": str(i), "problem": "decoy", "answer": "decoy"} for i in range(5)]
    src = _jsonl(tmp_path / "custom.jsonl", rows)
    b = _load(tok, src, prompt_column="text", answer_column="target", eval_k=8)
    assert [p.prompt_text for p in b.problems] == [f"question {i}" for i in range(5)]
    assert [p.answer for p in b.problems] == [str(i) for i in range(5)]
    assert b.k == 8  # no per-benchmark k: eval.k
    b = _load(tok, src, prompt_column="text", answer_column="target", eval_k=8, k=2, max_problems=3)
    assert b.k == 2  # the benchmark's own k wins
    assert [p.prompt_text for p in b.problems] == ["question 0", "question 1", "question 2"]
    assert [p.index for p in b.problems] == [0, 1, 2]
    assert len(_load(tok, src, max_problems=50).problems) == 5  # more than there are: all


def test_system_prompt_and_resolve(tok, tmp_path):
    src = _jsonl(tmp_path / "s.jsonl", LAYOUTS["gsm8k"])
    seen = []

    def resolve(s):
        seen.append(s)
        return src

    b = load_benchmark(BenchmarkConfig(name="g", source="alias:gsm"), tok, k=1, system_prompt="Be brief.",
                       max_prompt_length=128, max_bad_fraction=0.0, resolve=resolve)
    assert seen == ["alias:gsm"]
    text = tok.decode(b.problems[0].prompt_ids)
    assert text.startswith("<|im_start|>system\nBe brief.") and "user\nFind n." in text
    assert b.problems[0].prompt_text == "Find n."  # the question, not the template


def test_missing_prompt_column_names_the_columns(tok, tmp_path):
    src = _jsonl(tmp_path / "x.jsonl", [{"statement": "p", "answer": "1", "source": "s"}])
    with pytest.raises(DataError) as e:
        _load(tok, src, name="weird")
    msg = str(e.value)
    assert "\n" not in msg and "weird" in msg
    assert all(c in msg for c in ("statement", "answer", "source")) and "prompt_column" in msg


def test_missing_answer_column_names_the_columns(tok, tmp_path):
    src = _jsonl(tmp_path / "x.jsonl", [{"problem": "p", "solution": "1"}])
    with pytest.raises(DataError) as e:
        _load(tok, src)
    msg = str(e.value)
    assert "\n" not in msg and "problem" in msg and "solution" in msg and "answer_column" in msg


def test_explicit_column_missing_names_it_and_the_columns(tok, tmp_path):
    src = _jsonl(tmp_path / "x.jsonl", [{"problem": "p", "answer": "1"}])
    with pytest.raises(DataError) as e:
        _load(tok, src, answer_column="gold")
    msg = str(e.value)
    assert "\n" not in msg and "'gold'" in msg and "problem" in msg and "answer" in msg


def test_too_long_prompt_fails_by_default(tok, tmp_path):
    rows = [{"problem": "short", "answer": "1"}, {"problem": "7 " * 200, "answer": "2"},
            {"problem": "also short", "answer": "3"}]
    src = _jsonl(tmp_path / "long.jsonl", rows)
    with pytest.raises(DataError) as e:
        _load(tok, src, max_prompt_length=40, max_bad_fraction=EvalConfig().max_bad_fraction)
    msg = str(e.value)
    assert "\n" not in msg and "too_long: 1" in msg and "max_bad_fraction" in msg
    # allowed explicitly: the long one is skipped and counted
    b = _load(tok, src, max_prompt_length=40, max_bad_fraction=0.5)
    assert [p.answer for p in b.problems] == ["1", "3"] and [p.index for p in b.problems] == [0, 2]
    assert b.summary.startswith("benchmark bench: kept 2/3") and "too_long: 1" in b.summary


def test_too_long_prompt_error_names_the_benchmark(tok, tmp_path):
    # With several benchmarks (and the training prompts) the error must say which data set failed;
    # "prompt data: ..." reads like data.prompts.
    rows = [{"problem": "short", "answer": "1"}, {"problem": "7 " * 200, "answer": "2"}]
    src = _jsonl(tmp_path / "long.jsonl", rows)
    with pytest.raises(DataError) as e:
        _load(tok, src, name="aime24", max_prompt_length=40)
    assert "benchmark aime24" in str(e.value)


# ---------------------------------------------------------------------------------------------
# markdown_table / write_results / better


M0 = {"aime/avg@4": 0.25, "aime/pass@4": 0.5, "aime/length_mean": 12.5, "aime/truncated_frac": 0.125,
      "aime/problems": 3.0, "overall/avg": 0.25, "overall/pass": 0.5, "overall/length_mean": 12.5,
      "overall/truncated_frac": 0.125}
M1 = {**M0, "aime/avg@4": 0.75, "overall/avg": 0.75, "overall/length_mean": 30.0}


def test_markdown_table():
    assert markdown_table([]) == ""
    md = markdown_table([{"step": 0, **M0}, {"step": 10, **M1}])
    lines = md.splitlines()
    assert lines[0] == ("| step | aime/avg@4 | aime/pass@4 | overall/avg | overall/pass | overall/length_mean "
                        "| overall/truncated_frac |")
    assert lines[1] == "|---:|" + "---:|" * 6
    assert lines[2] == "| 0 | 25.0 | 50.0 | 25.0 | 50.0 | 12.5 | 12.5 |"  # % except the length
    assert lines[3] == "| 10 | 75.0 | 50.0 | 75.0 | 50.0 | 30.0 | 12.5 |"
    assert "in %" in md


def test_write_results_appends_and_rewrites(tmp_path):
    out = tmp_path / "run" / "nested"
    samples = [{"benchmark": "aime", "problem": 0, "response": "Ω", "correct": True},
               {"benchmark": "aime", "problem": 1, "response": "x", "correct": False}]
    write_results(out, 0, M0, None)
    assert not (out / "eval").exists()  # no samples given: no samples file
    write_results(out, 10, M1, samples)
    records = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 10]
    assert records[0] == {"step": 0, **M0} and records[1] == {"step": 10, **M1}
    md = (out / "eval.md").read_text().splitlines()
    rows = [ln for ln in md if ln.startswith("| ") and ln[2].isdigit()]
    assert len(rows) == 2 and rows[0].startswith("| 0 | 25.0 |") and rows[1].startswith("| 10 | 75.0 |")
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["samples_step_10.jsonl"]
    got = [json.loads(line) for line in (out / "eval" / "samples_step_10.jsonl").read_text().splitlines()]
    assert got == samples
    assert "Ω" in (out / "eval" / "samples_step_10.jsonl").read_text(encoding="utf-8")  # not \u-escaped
    write_results(out, 20, M0, [])  # an empty list is still "given": an (empty) file
    assert (out / "eval" / "samples_step_20.jsonl").read_text() == ""
    assert len((out / "eval.jsonl").read_text().splitlines()) == 3
    assert len([ln for ln in (out / "eval.md").read_text().splitlines() if ln.startswith("| 20 |")]) == 1
    leftovers = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_better():
    assert better(0.1, None, "max") and better(0.1, None, "min")
    assert better(0.6, 0.5, "max") and not better(0.5, 0.5, "max") and not better(0.4, 0.5, "max")
    assert better(0.4, 0.5, "min") and not better(0.5, 0.5, "min") and not better(0.6, 0.5, "min")


# ---------------------------------------------------------------------------------------------
# score_all's `truncated` plumbing and build_reward


RESPONSES, ANSWERS, FLAGS = ["a", "b", "c"], ["a", "x", "c"], [False, True, True]


def test_score_all_passes_truncated_to_a_function_that_takes_it():
    seen = []

    def fn(response, answer, truncated=None):
        seen.append(truncated)
        return (1.0 if response == answer else 0.0) - (0.5 if truncated else 0.0), {}

    s = score_all(fn, RESPONSES, ANSWERS, FLAGS)
    assert seen == FLAGS and s.errors == 0
    assert s.rewards == [1.0, -0.5, 0.5]
    seen.clear()
    score_all(fn, RESPONSES, ANSWERS)  # no flags given: the reward's own default
    assert seen == [None, None, None]


def test_score_all_passes_truncated_through_kwargs():
    seen = []

    def fn(response, answer, **kw):
        seen.append(kw.get("truncated"))
        return 0.0, {}

    score_all(fn, RESPONSES, ANSWERS, FLAGS)
    assert seen == FLAGS


def test_score_all_does_not_pass_truncated_to_a_two_argument_reward():
    seen = []

    def fn(response, answer):
        seen.append((response, answer))
        return (1.0 if response == answer else 0.0), {"correct": float(response == answer)}

    s = score_all(fn, RESPONSES, ANSWERS, FLAGS)
    assert s.errors == 0 and s.error_examples == []
    assert s.rewards == [1.0, 0.0, 1.0] and s.info[1] == {"correct": 0.0}
    assert seen == list(zip(RESPONSES, ANSWERS, strict=True))


class BatchReward:
    def __init__(self):
        self.batches = []

    def score_batch(self, responses, answers, truncated=None):
        self.batches.append((list(responses), list(answers), truncated))
        return [((1.0 if r == a else 0.0) - (0.1 if t else 0.0), {"correct": float(r == a)})
                for r, a, t in zip(responses, answers, truncated or [False] * len(responses), strict=True)]

    def __call__(self, response, answer):
        raise AssertionError("score_batch must be used")


class TwoArgBatchReward(BatchReward):
    def score_batch(self, responses, answers):
        return super().score_batch(responses, answers)


def test_score_all_passes_truncated_to_score_batch():
    fn = BatchReward()
    s = score_all(fn, RESPONSES, ANSWERS, FLAGS)
    assert fn.batches == [(RESPONSES, ANSWERS, FLAGS)]
    assert s.rewards == pytest.approx([1.0, -0.1, 0.9]) and s.errors == 0
    assert [i["correct"] for i in s.info] == [1.0, 0.0, 1.0]
    fn2 = TwoArgBatchReward()
    s2 = score_all(fn2, RESPONSES, ANSWERS, FLAGS)
    assert fn2.batches == [(RESPONSES, ANSWERS, None)] and s2.rewards == [1.0, 0.0, 1.0]
    assert s2.error_examples == []  # not a fallback after a TypeError


def test_broken_score_batch_falls_back_per_sample_with_truncated():
    seen = []

    class Broken:
        def score_batch(self, responses, answers, truncated=None):
            raise RuntimeError("pool died")

        def __call__(self, response, answer, truncated=False):
            seen.append(truncated)
            return (1.0 if response == answer else 0.0), {}

    s = score_all(Broken(), RESPONSES, ANSWERS, FLAGS)
    assert s.rewards == [1.0, 0.0, 1.0] and seen == FLAGS
    assert len(s.error_examples) == 1 and "pool died" in s.error_examples[0]


def test_build_reward_warns_about_math_only_options(capsys):
    fn = build_reward(RewardConfig(name="tiny", overlong_penalty=-0.1))
    err = capsys.readouterr().err
    assert "warning" in err and "reward.overlong_penalty" in err and "'tiny'" in err
    assert "reward.format_penalty" not in err  # only the options that were set
    assert fn is BUILTIN["tiny"]
    assert fn("Answer: 3", "3")[0] == 1.0 and fn("Answer: 4", "3")[0] == 0.0
    build_reward(RewardConfig(name="tiny"))
    assert capsys.readouterr().err == ""  # defaults: silent
    build_reward(RewardConfig(name="tiny", format_penalty=-0.2, timeout_s=5.0))
    err = capsys.readouterr().err
    assert "reward.format_penalty" in err and "reward.timeout_s" in err and "overlong" not in err


# ---------------------------------------------------------------------------------------------
# sharded evaluation (rollout.placement: per_rank): real gloo groups of 2 and 3 ranks


def _sharded(rank: int, world: int, port: int, out: str, tp: int) -> None:
    import os
    from datetime import timedelta

    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=60))
    benches, engine = _three_benchmarks()
    # tp ranks share one engine (tensor parallel): only its first rank reports what it generated
    m, rows = evaluate(engine, benches, exact, step=3, sampling=SAMPLING,
                       engine_slot=EngineSlot(rank // tp, world // tp, rank % tp == 0))
    asked = [c["prompts"][i].prompt_text for c in engine.calls for i in range(len(c["prompts"]))]
    with open(f"{out}/rank{rank}.json", "w") as f:
        json.dump({"metrics": m, "rows": rows, "asked": asked}, f)
    dist.destroy_process_group()
    os._exit(0)  # skip interpreter teardown (seconds per spawned worker); errors still reach spawn


@pytest.mark.parametrize("world,tp", [(2, 1), (3, 1), (4, 2)])
def test_sharded_evaluation_equals_one_engine(tmp_path, world, tp):
    import torch.multiprocessing as mp

    from chord.distributed.group import _free_port

    benches, engine = _three_benchmarks()
    m1, rows1 = evaluate(engine, benches, exact, step=3, sampling=SAMPLING)
    assert {"gen/pass@2", "gen/distinct_2", "aime/pass@1"} <= m1.keys()  # the exploration numbers, exact too
    mp.spawn(_sharded, args=(world, _free_port(), str(tmp_path), tp), nprocs=world, join=True)
    got = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(world)]
    for g in got:
        assert g["metrics"] == m1  # exactly, on every rank
        assert g["rows"] == rows1
    # every problem generated by exactly one engine (ranks of one tp group ask for the same ones)
    engines = [got[r]["asked"] for r in range(0, world, tp)]
    assert sorted(sum(engines, [])) == sorted(p.prompt_text for b in benches for p in b.problems)
    assert all(got[r]["asked"] == got[r - r % tp]["asked"] for r in range(world))


def test_best_checkpoint_may_exclude_the_starting_weights():
    from chord.config import ConfigError
    from chord.config.recipe import load_config
    from chord.evaluation import new_best

    # an SFT stage that never beats its start: with includes_start=False its best/ is still an SFT checkpoint
    curve = [(0, 0.30), (20, 0.01), (40, 0.10), (60, 0.21)]
    for includes, want in ((True, 0), (False, 60)):
        best = None
        for step, v in curve:
            if new_best(step, v, best[1] if best else None, "max", includes):
                best = (step, v)
        assert best[0] == want
    assert new_best(5, 1.0, 2.0, "min", False) and not new_best(0, 1.0, None, "min", False)
    with pytest.raises(ConfigError, match="best_includes_start"):
        load_config(None, ["eval.best_includes_start=false", "eval.at_end=false", "eval.every=0",
                           'eval.benchmarks=[{name: t, source: "builtin:tiny"}]'])

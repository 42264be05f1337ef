"""prepare_openr1: OpenR1-Math-220k -> CHORD SFT/RL splits, on a synthetic file with the real columns."""

import hashlib
import json

import pytest

from chord.tasks.openr1 import SYSTEM_PROMPT, good_generations, integer_answer, is_cjk, main, prepare

pytestmark = pytest.mark.unit

MAX_TOKENS = 50  # chars/4 measure: a generation is good up to 200 characters
LONG = "<think>" + "x" * 400 + "</think> long"  # correct but over the limit
WRONG = "<think>wrong</think> \\boxed{-1}"


def _row(i, problem, answer, gens, correct):
    return {"problem": problem, "solution": "s", "answer": answer, "problem_type": "Algebra",
            "question_type": "math-word-problem", "source": "synthetic", "uuid": f"u{i:03d}",
            "is_reasoning_complete": [True] * len(gens or []), "generations": gens,
            "correctness_math_verify": correct, "correctness_llama": None,
            "finish_reasons": None, "correctness_count": sum(c is True for c in correct or []),
            "messages": [{"role": "user", "content": problem}]}


def _good(i, j):
    return f"<think>step {i}.{j}</think> \\boxed{{{i}}}"


def _rows():
    """62 rows, every group sized so the expected counts can be written down by hand."""
    rows, i = [], 0

    def add(problem, answer, gens, correct):
        nonlocal i
        rows.append(_row(i, problem, answer, gens, correct))
        i += 1

    cjk = ["求 x 的值", "カタカナの問題", "ひらがな", "한국어 문제", "Find x（mod 7）", "Compute 3。", "㐀 ext A",
           "Fullwidth ｘ"]
    for k, text in enumerate(cjk):  # A: 8 CJK, otherwise perfect RL material
        add(f"{text} #{k}", "5", [_good(i, 0), _good(i, 1), _good(i, 2)], [True, True, True])
    for k in range(6):  # B: no correct generation
        add(f"B problem {k}", "3", [WRONG, WRONG], [False, False])
    for k in range(10):  # C: exactly one good
        add(f"C problem {k}", "4", [WRONG, _good(i, 1)], [False, True])
    answers = ["42", "-3", "$7$", " 12 ", "+8", "007"]
    for k in range(20):  # D: >= 2 good, integer answers
        add(f"D problem {k}", answers[k % len(answers)], [_good(i, 0), WRONG, _good(i, 2)], [True, False, True])
    for k, ans in enumerate(["3.5", "\\frac{1}{2}", "x=2", "2^{10}", "1,000", "$\\pi$"]):  # E: non-integer
        add(f"E problem {k}", ans, [_good(i, 0), _good(i, 1)], [True, True])
    for k in range(4):  # F: correct but every one too long
        add(f"F problem {k}", "9", [LONG, LONG, WRONG], [True, True, False])
    for k in range(3):  # G: first correct one too long, then two good
        add(f"G problem {k}", "11", [LONG, _good(i, 1), _good(i, 2)], [True, True, True])
    add("H missing generations 0", "1", None, [True])  # H: malformed
    add("H missing generations 1", "1", None, None)
    add(None, "1", [_good(i, 0)], [True])
    add("H mismatch 0", "1", [_good(i, 0), _good(i, 1)], [True])
    add("H mismatch 1", "1", [_good(i, 0)], [True, True])
    return rows


N_GOOD_PROBLEMS = 10 + 20 + 6 + 3  # C + D + E + G
N_RL_CANDIDATES = 20 + 3  # D + G


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def _read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _good_in_source(row):
    return [g for g, c in zip(row["generations"], row["correctness_math_verify"])
            if c is True and len(g) <= 4 * MAX_TOKENS]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return _write_jsonl(tmp_path_factory.mktemp("src") / "openr1.jsonl", _rows())


def _run(source, out, *extra):
    return main(["--source", str(source), "--out", str(out), "--max-tokens", str(MAX_TOKENS), *extra])


@pytest.fixture(scope="module")
def default_run(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    assert _run(source, out, "--sft-problems", "10", "--rl-problems", "8", "--seed", "1") == 0
    return out


def test_is_cjk_and_integer_answer():
    assert all(is_cjk(t) for t in ["中", "カ", "ひ", "한", "（", "。", "㐀", "ｘ"])
    assert not any(is_cjk(t) for t in ["x^2 + 1 = 0", "Ω ≥ π", "café", "\\frac{1}{2}", ""])
    good = {"42": "42", "-3": "-3", "$7$": "7", " 12 ": "12", "+8": "8", "007": "7", "-0": "0", "$ -5 $": "-5"}
    assert {a: integer_answer(a) for a in good} == good
    for bad in ["3.5", "\\frac{1}{2}", "x=2", "", "$$", "1,000", "2^{10}", "١٢", "4 5", None, 7]:
        assert integer_answer(bad) is None, bad
    assert integer_answer("9" * 10_000) == "9" * 10_000  # no int() digit limit
    # only an exact True counts; unmeasured (None) or over-long never does
    assert good_generations([True, False, None, "True", True, True, True], [5, 5, 5, 5, 60, None, 50], 50) == [0, 6]


def test_counts_match_hand_computed(default_run):
    m = json.loads((default_run / "manifest.json").read_text())
    c = m["counts"]
    assert c["rows_read"] == 62
    assert c["skipped"] == {"length_mismatch": 2, "missing_field": 3}
    assert c["cjk_dropped"] == 8
    assert c["problems_kept"] == 62 - 5 - 8
    assert c["problems_with_good"] == N_GOOD_PROBLEMS
    assert c["rl_candidates"] == N_RL_CANDIDATES
    assert c["generations_correct"] == 10 + 20 * 2 + 6 * 2 + 4 * 2 + 3 * 3
    assert c["generations_too_long"] == 4 * 2 + 3
    assert c["sft_written"] == 10 and c["rl_written"] == 8 and m["shortfall"] == {}
    sft = _read_jsonl(default_run / "sft.jsonl")
    rl = _read_jsonl(default_run / "rl.jsonl")
    assert c["rl_eligible"] == N_RL_CANDIDATES - sum(r["uuid"] in _rl_uuids() for r in sft)
    assert m["length_measure"] == "chars/4" and m["system_prompt"] == SYSTEM_PROMPT and m["seed"] == 1
    assert m["args"]["sft_problems"] == 10 and m["created"].endswith("+00:00")
    assert len(sft) == 10 and len(rl) == 8


def _rl_uuids():
    return {r["uuid"] for r in _rows() if r["problem"] and r["problem"][0] in "DG"}


def test_outputs_respect_the_rules(default_run):
    src = {r["uuid"]: r for r in _rows()}
    sft = _read_jsonl(default_run / "sft.jsonl")
    rl = _read_jsonl(default_run / "rl.jsonl")
    for r in sft:
        s = src[r["uuid"]]
        system, user, assistant = r["messages"]
        assert system == {"role": "system", "content": SYSTEM_PROMPT}
        assert user == {"role": "user", "content": s["problem"]} and r["answer"] == s["answer"]
        assert assistant["role"] == "assistant"
        assert assistant["content"] == _good_in_source(s)[0]  # the first good one, documented
        assert not is_cjk(user["content"])
    for r in rl:
        s = src[r["uuid"]]
        assert r["prompt"] == s["problem"] and not is_cjk(r["prompt"])
        assert r["answer"] == integer_answer(s["answer"]) and r["answer"].lstrip("-").isdigit()
        assert len(_good_in_source(s)) >= 2
    assert not {r["uuid"] for r in sft} & {r["uuid"] for r in rl}
    assert not {r["messages"][1]["content"] for r in sft} & {r["prompt"] for r in rl}


def test_deterministic_and_hashed(source, default_run, tmp_path, monkeypatch):
    monkeypatch.setattr("chord.tasks.openr1._CHUNK_ROWS", 7)  # batch boundaries must not matter
    again = tmp_path / "again"
    assert _run(source, again, "--sft-problems", "10", "--rl-problems", "8", "--seed", "1") == 0
    m = json.loads((again / "manifest.json").read_text())
    for name in ("sft.jsonl", "rl.jsonl"):
        data = (again / name).read_bytes()
        assert data == (default_run / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["sha256"][name]
    assert not list(again.glob(".*tmp*"))  # no temp file left behind
    other = tmp_path / "other"
    assert _run(source, other, "--sft-problems", "10", "--rl-problems", "8", "--seed", "2") == 0
    assert ({r["uuid"] for r in _read_jsonl(other / "sft.jsonl")}
            != {r["uuid"] for r in _read_jsonl(again / "sft.jsonl")})


def test_shortfall_is_recorded_not_fatal(source, tmp_path, capsys):
    assert _run(source, tmp_path, "--sft-problems", "1000", "--rl-problems", "5", "--system-prompt", "") == 0
    m = json.loads((tmp_path / "manifest.json").read_text())
    # every good problem went to SFT, so none is left for RL
    assert m["shortfall"] == {"sft": {"requested": 1000, "available": N_GOOD_PROBLEMS},
                              "rl": {"requested": 5, "available": 0}}
    assert m["counts"]["sft_written"] == N_GOOD_PROBLEMS and m["counts"]["rl_written"] == 0
    assert (tmp_path / "rl.jsonl").read_bytes() == b""
    sft = _read_jsonl(tmp_path / "sft.jsonl")
    assert m["system_prompt"] is None and all([x["role"] for x in r["messages"]] == ["user", "assistant"] for r in sft)
    assert "warning: sft" in capsys.readouterr().err


def test_rl_disjoint_by_problem_text_and_odd_rows_counted(tmp_path):
    dup = [_row(i, "Same problem", "6", [_good(i, 0), _good(i, 1)], [True, True]) for i in range(2)]
    rows = [*dup, _row(2, "Other problem", "8", [_good(2, 0), _good(2, 1)], [True, True]),
            _row(3, 17, "1", [_good(3, 0)], [True]), _row(4, "Bad gens", "1", [1, 2], [True, True]),
            _row(5, "Bad correctness", "1", ["a"], "yes"), _row(6, "   ", "1", ["a"], [True])]
    rows[1]["uuid"] = None  # falls back to the row position
    branches = set()
    for seed in range(6):
        out = tmp_path / str(seed)
        m = prepare(out, rows=rows, source="in-memory", seed=seed, sft_problems=1, rl_problems=10,
                    max_tokens=MAX_TOKENS)
        assert m["counts"]["skipped"] == {"bad_correctness": 1, "bad_generations": 1, "empty_problem": 1,
                                          "not_a_string": 1}
        sft, rl = _read_jsonl(out / "sft.jsonl"), _read_jsonl(out / "rl.jsonl")
        prompts = sorted(r["prompt"] for r in rl)
        same = sft[0]["messages"][1]["content"] == "Same problem"
        branches.add(same)
        # the twin of an SFT problem never reaches RL, whatever its uuid
        assert prompts == (["Other problem"] if same else ["Same problem", "Same problem"])
        assert m["counts"]["rl_eligible"] == len(prompts)
        assert {r["uuid"] for r in sft + rl} <= {"u000", "row-1", "u002"}
    assert branches == {True, False}


def test_missing_columns_and_bad_source_fail_in_one_line(tmp_path, capsys):
    bad = _write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "1"}] * 3)
    assert main(["--source", str(bad), "--out", str(tmp_path / "o")]) == 2
    head, _, msg = capsys.readouterr().err.rstrip("\n").rpartition("\n")  # head: datasets' progress bars
    assert msg.startswith("prepare_openr1: ") and "prepare_openr1" not in head and "Traceback" not in head
    assert all(c in msg for c in ("problem", "generations", "correctness_math_verify"))
    assert not (tmp_path / "o" / "sft.jsonl").exists()
    assert main(["--source", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == f"prepare_openr1: data file '{tmp_path / 'nope.jsonl'}' does not exist\n"


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    from chord.models.tiny import tiny_tokenizer

    path = tmp_path_factory.mktemp("tok")
    tiny_tokenizer(seed=0, vocab_size=512).save_pretrained(str(path))
    return path


def test_tokenizer_length_and_chord_loader(tok_dir, tmp_path):
    from transformers import AutoTokenizer

    from chord.data.loading import build_expert_examples, load_rows

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    digits = "1234567890" * 8  # 80 characters = 20 chars/4 units, but one token per digit
    assert len(tok(digits).input_ids) > MAX_TOKENS >= -(-len(digits) // 4)
    short = "Answer: 5"
    src = _write_jsonl(tmp_path / "src.jsonl", [_row(0, "Digits", "5", [digits, short], [True, True])])
    by_chars, by_tokens = tmp_path / "chars", tmp_path / "tokens"
    assert _run(src, by_chars, "--rl-problems", "0") == 0
    assert _run(src, by_tokens, "--rl-problems", "0", "--tokenizer", str(tok_dir)) == 0
    assert _read_jsonl(by_chars / "sft.jsonl")[0]["messages"][-1]["content"] == digits
    assert _read_jsonl(by_tokens / "sft.jsonl")[0]["messages"][-1]["content"] == short
    m = json.loads((by_tokens / "manifest.json").read_text())
    assert m["length_measure"] == f"tokenizer:{tok_dir}" and m["counts"]["generations_too_long"] == 1

    # the trainer's own expert loader takes the output as is
    examples, report = build_expert_examples(load_rows(str(by_chars / "sft.jsonl")), tok,
                                             messages_column="messages", max_length=100000)
    assert report.kept == 1 and not report.skipped and sum(examples[0].loss_mask) > 0


def test_sft_file_loads_through_chord_loader(default_run, tok_dir):
    from transformers import AutoTokenizer

    from chord.data.loading import build_expert_examples, build_prompt_examples, load_rows

    tok = AutoTokenizer.from_pretrained(str(tok_dir))
    examples, report = build_expert_examples(load_rows(str(default_run / "sft.jsonl")), tok,
                                             messages_column="messages", max_length=100000)
    assert report.kept == 10 and not report.skipped and all(sum(e.loss_mask) > 0 for e in examples)
    prompts, report = build_prompt_examples(load_rows(str(default_run / "rl.jsonl")), tok,
                                            system_prompt=SYSTEM_PROMPT, max_prompt_length=100000)
    assert report.kept == 8 and not report.skipped

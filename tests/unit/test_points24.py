"""24-point task: safe parser and verifier, solver, deterministic hands, expert demos, CLI files."""

import itertools
import json
import random
import time
from fractions import Fraction

import pytest

from chord.data.json_rows import read_json_rows
from chord.rewards import resolve_reward, score_all
from chord.tasks.points24 import (
    CARDS,
    ID_RULE,
    OOD_RULE,
    build_points24,
    card_value,
    draw_hand,
    expert_solution,
    main,
    solve,
)
from chord.tasks.points24_verifier import (
    ExprError,
    check,
    evaluate,
    extract_answer,
    ground_truth,
    parse,
    points24_reward,
)

pytestmark = pytest.mark.unit


def _gt(values, target=24):
    return ground_truth([str(v) for v in values], ID_RULE, values, target)


# ------------------------------------------------------------------------------------------ parser


@pytest.mark.parametrize(
    "expr, value",
    [
        ("2+3*4", 14),
        ("(2+3)*4", 20),
        ("8-4-2", 2),
        ("8/4/2", 1),
        ("2*3-4/2", 4),
        ("10-(4-1)", 7),
        ("((1+2))*(3+(4-1))", 18),
        (" 6 * ( 5 - 1 ) ", 24),
        ("7", 7),
        ("12/8", Fraction(3, 2)),
    ],
)
def test_parser_precedence_associativity_and_exact_values(expr, value):
    assert evaluate(parse(expr)) == value


def test_parser_tree_shape():
    assert parse("1+2*3") == ("+", 1, ("*", 2, 3))
    assert parse("1-2-3") == ("-", ("-", 1, 2), 3)  # left-associative
    assert parse("1-(2-3)") == ("-", 1, ("-", 2, 3))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "1+",
        "(1+2",
        "1+2)",
        "1 2",
        "()",
        "1++2",
        "-1+25",
        "(-1)*24",
        "1.5*16",
        "2**3",
        "2^3",
        "abc",
        "3x8",
        "__import__('os').system('true')",
        "1+2=3",
        "\uff12\uff14",
        "2\u00b2",
        "24\n",
        "1,2",
    ],
)
def test_parser_rejects_malformed_input(bad):
    with pytest.raises(ExprError):
        parse(bad)


def test_hostile_100k_input_returns_quickly():
    gt = _gt([3, 3, 8, 8])
    t0 = time.perf_counter()
    for text in ("(" * 100_000, "1+" * 50_000 + "1", "9" * 100_000):
        with pytest.raises(ExprError):
            parse(text)
        assert points24_reward("Answer: " + text, gt)[0] == 0.0
    assert points24_reward("x" * 1_000_000 + "\nAnswer: 8/(3-8/3)", gt)[0] == 1.0  # only the tail is read
    assert time.perf_counter() - t0 < 1.0


def test_division_is_exact_and_division_by_zero_is_wrong_not_a_crash():
    assert 8 / (3 - 8 / 3) != 24  # the float bug the official verifier has
    assert check("8/(3-8/3)", [3, 3, 8, 8]) == (True, True, True)
    assert check("8/(3-3)*8", [3, 3, 8, 8]) == (True, True, False)
    assert check("(8-8)/(3-3)", [3, 3, 8, 8]) == (True, True, False)
    with pytest.raises(ZeroDivisionError):
        evaluate(parse("1/(2-2)"))


@pytest.mark.parametrize(
    "expr, verdict",
    [
        ("2*3*4*1", (True, True, True)),
        ("2*3*4/1", (True, True, True)),
        ("2*3*4", (True, False, False)),  # unused card
        ("2*3*4*1*1", (True, False, False)),  # a card used twice
        ("2*3*4+1-1", (True, False, False)),  # extra number
        ("4*3*2*1+0", (True, False, False)),
        ("24", (True, False, False)),
        ("4*6*1*1", (True, False, False)),  # a number not on the cards
        ("2+3+4+1", (True, True, False)),  # right cards, wrong value
        ("2*3*4*1=24", (False, False, False)),  # check() takes the bare expression
    ],
)
def test_each_card_exactly_once(expr, verdict):
    assert check(expr, [1, 2, 3, 4]) == verdict


def test_reward_reads_the_last_answer_line():
    gt = _gt([1, 2, 3, 4])
    assert points24_reward("Answer: 1+2+3+4\nAnswer: 1*2*3*4", gt) == (
        1.0,
        {"format": 1.0, "cards": 1.0, "correct": 1.0},
    )
    assert points24_reward("Answer: 1*2*3*4\nAnswer: 1+2+3+4", gt)[0] == 0.0
    assert points24_reward("Answer: (1+2+3)*4 = 24\n", gt)[0] == 1.0  # text after '=' is not graded
    assert points24_reward("the answer is 1*2*3*4", gt) == (
        0.0,
        {"format": 0.0, "cards": 0.0, "correct": 0.0},
    )
    assert points24_reward("Answer: 1*2*3*4*5", gt)[1] == {"format": 1.0, "cards": 0.0, "correct": 0.0}
    assert points24_reward("Answer: __import__('os')", gt)[1]["format"] == 0.0
    assert extract_answer("Answer:   (1+2)*8  \nthanks") == "(1+2)*8"
    assert points24_reward("Answer: 10*2+4", ground_truth(["K", "2", "4"], ID_RULE, [10, 2, 4]))[0] == 1.0


def test_registered_builtin_and_bad_ground_truth_is_counted():
    fn = resolve_reward("points24")
    assert fn("Answer: 8/(3-8/3)", _gt([3, 3, 8, 8]))[0] == 1.0
    s = score_all(fn, ["Answer: 1*2*3*4", "Answer: 1*2*3*4"], ["not json", json.dumps({"values": ["1"]})])
    assert s.rewards == [0.0, 0.0] and s.errors == 2


# ------------------------------------------------------------------------------------------ solver


def test_solver_known_hands():
    for values in ([4, 10, 3, 1], [3, 3, 8, 8], [1, 5, 5, 5], [13, 7, 7, 12]):
        expr = solve(values)
        assert expr is not None and check(expr, values) == (True, True, True), (values, expr)
    assert "/" in solve([3, 3, 8, 8]) and "/" in solve([1, 5, 5, 5])  # only fractional routes exist
    assert solve([1, 1, 1, 1]) is None and solve([13, 13, 13, 13]) is None
    assert check(solve([1, 2, 3, 4], target=10), [1, 2, 3, 4], 10)[2]
    assert solve([24]) == "24" and solve([23]) is None


def test_solver_counts_match_the_known_totals():
    # Well-known totals: 566 of the 715 multisets of 1..10 and 1,362 of the 1,820 of 1..13 make 24.
    for top, total, solvable in ((10, 715, 566), (13, 1820, 1362)):
        hands = list(itertools.combinations_with_replacement(range(1, top + 1), 4))
        found = {h: solve(h) for h in hands}
        assert len(hands) == total and sum(e is not None for e in found.values()) == solvable
        for h, e in found.items():
            assert e is None or check(e, h)[2], (h, e)


# ----------------------------------------------------------------------------------- hands, rules


def test_rules_map_face_cards():
    assert [card_value(c, ID_RULE) for c in ("A", "10", "J", "Q", "K")] == [1, 10, 10, 10, 10]
    assert [card_value(c, OOD_RULE) for c in ("A", "10", "J", "Q", "K")] == [1, 10, 11, 12, 13]
    with pytest.raises(ValueError):
        card_value("K", "face=0")


def test_a_hand_with_a_king_differs_between_rules():
    hand = ["4", "4", "K", "K"]
    id_values, ood_values = [card_value(c, ID_RULE) for c in hand], [card_value(c, OOD_RULE) for c in hand]
    expr = solve(id_values)
    assert expr is not None and solve(ood_values) is None
    assert points24_reward(f"Answer: {expr}", ground_truth(hand, ID_RULE, id_values))[0] == 1.0
    assert points24_reward(f"Answer: {expr}", ground_truth(hand, OOD_RULE, ood_values))[1]["cards"] == 0.0
    hand = ["2", "7", "8", "K"]  # the other way round
    assert solve([card_value(c, ID_RULE) for c in hand]) is None
    assert solve([card_value(c, OOD_RULE) for c in hand]) is not None


def test_ood_hands_always_hold_a_face_card():
    rng = random.Random(0)
    assert all(set(draw_hand(rng, OOD_RULE)) & {"J", "Q", "K"} for _ in range(500))
    assert all(len(h) == 4 and set(h) <= set(CARDS) for h in (draw_hand(rng, ID_RULE) for _ in range(100)))


def test_generator_is_deterministic_and_eval_held_out():
    a, b = build_points24(seed=3, n_train=60, n_eval=30), build_points24(seed=3, n_train=60, n_eval=30)
    assert a == b and a != build_points24(seed=4, n_train=60, n_eval=30)
    assert build_points24(seed=3, n_train=10, n_eval=30)["eval_id"] == a["eval_id"]  # splits seeded apart
    assert {k: len(v) for k, v in a.items()} == {"train": 60, "eval_id": 30, "eval_ood": 30}

    def keys(rows):
        return [tuple(sorted(json.loads(r["answer"])["values"])) for r in rows]

    assert len(set(keys(a["eval_id"]))) == 30 and len(set(keys(a["eval_ood"]))) == 30  # distinct
    assert not set(keys(a["train"])) & set(keys(a["eval_id"]))  # ID eval numbers never seen in training
    for split, rule in (("train", ID_RULE), ("eval_id", ID_RULE), ("eval_ood", OOD_RULE)):
        for row in a[split]:
            gt = json.loads(row["answer"])
            assert gt["rule"] == rule and gt["target"] == 24
            assert gt["values"] == [card_value(c, rule) for c in gt["cards"]] and solve(gt["values"])
            assert f"Cards: {gt['cards']}" in row["prompt"]


def test_impossible_request_fails_instead_of_spinning():
    with pytest.raises(ValueError, match="drew only 0"):
        build_points24(seed=0, n_train=1, n_eval=1, target=10**6)


def test_expert_demos_verify_under_their_rule():
    rows = build_points24(seed=0, n_train=200, n_eval=5)["train"]
    for row in rows:
        msgs = row["messages"]
        assert msgs[0] == {"role": "user", "content": row["prompt"]} and msgs[1]["role"] == "assistant"
        demo = msgs[1]["content"]
        assert points24_reward(demo, row["answer"])[0] == 1.0, demo
        lines = demo.splitlines()
        assert lines[-2].startswith("Step 3: ") and lines[-2].endswith(" = 24")  # 4 cards: 3 operators
    demo = expert_solution(["3", "3", "8", "8"], ID_RULE)
    assert demo.endswith("Step 3: 8 / (1/3) = 24\nAnswer: 8/(3-8/3)")
    ood = expert_solution(["2", "7", "8", "K"], OOD_RULE)
    assert (
        "worth 2, 7, 8, 13" in ood
        and points24_reward(ood, ground_truth(["2", "7", "8", "K"], OOD_RULE, [2, 7, 8, 13]))[0] == 1.0
    )
    with pytest.raises(ValueError):
        expert_solution(["A", "A", "A", "A"], ID_RULE)


def test_cli_writes_files_chord_reads(tmp_path, capsys):
    main(["--out", str(tmp_path), "--n-train", "8", "--n-eval", "4", "--seed", "1"])
    assert "train:" in capsys.readouterr().out
    rows = {name: read_json_rows(tmp_path / f"{name}.jsonl") for name in ("train", "eval_id", "eval_ood")}
    assert [len(r) for r in rows.values()] == [8, 4, 4] and not any(r.bad for r in rows.values())
    assert set(rows["train"].column_names) == {"prompt", "answer", "messages"}
    assert set(rows["eval_ood"].column_names) == {"prompt", "answer"}
    assert rows["train"].rows == build_points24(seed=1, n_train=8, n_eval=4)["train"]
    assert json.loads((tmp_path / "manifest.json").read_text())["reward"] == "points24"

"""The card-sum task (chord.tasks.cards) and its recipes (the seed statistics: test_seed_stats.py)."""

import json
import random
from pathlib import Path

import pytest

from chord.config.recipe import load_config
from chord.config.stages import expand
from chord.tasks import cards
from chord.tasks.tiny import tiny_reward

pytestmark = pytest.mark.unit
RECIPES = Path(__file__).resolve().parents[2] / "recipes"
CARD_RECIPES = sorted(RECIPES.glob("cards*.yaml"))


def test_rule_change_moves_every_ood_answer():
    assert cards.card_value("K", cards.ID_RULE) == 10 and cards.card_value("K", cards.OOD_RULE) == 13
    assert cards.card_value("A", cards.ID_RULE) == cards.card_value("A", cards.OOD_RULE) == 1
    for h in cards.ood_hands():
        assert cards.hand_sum(h, cards.OOD_RULE) > cards.hand_sum(h, cards.ID_RULE)  # the ID rule is wrong on each
    assert len(cards.all_hands()) == 13**3 and len(cards.ood_hands()) == 13**3 - 10**3
    with pytest.raises(ValueError, match="unknown rule"):
        cards.card_value("K", "face=11")


@pytest.mark.parametrize("rule", [cards.ID_RULE, cards.OOD_RULE])
def test_expert_solution_is_graded_correct_and_its_steps_add_up(rule):
    for h in random.Random(0).sample(cards.all_hands(), 200):
        sol = cards.expert_solution(h, rule)
        assert tiny_reward(sol, str(cards.hand_sum(h, rule)))[0] == 1.0
        assert tiny_reward(cards.terse_answer(h, rule), str(cards.hand_sum(h, rule)))[0] == 1.0
        values = [int(v) for v in sol.split("Values: ")[1].split(".")[0].split(", ")]
        assert values == [cards.card_value(c, rule) for c in h]
        for step in sol.split(". ")[1:]:
            lhs, rhs = step.split("\n")[0].rstrip(".").split(" = ")
            a, b = map(int, lhs.split(" + "))
            assert a + b == int(rhs)


def test_noisy_answers_are_right_at_the_given_rate_and_otherwise_near():
    rng, h = random.Random(1), ("7", "K", "4")
    answers = [int(cards.noisy_answer(h, cards.ID_RULE, rng, 0.5).split()[1]) for _ in range(4000)]
    assert abs(sum(a == 21 for a in answers) / 4000 - 0.5) < 0.03
    assert {a - 21 for a in answers} == {-2, -1, 0, 1, 2}


def test_split_is_disjoint_and_ood_hands_hold_a_face_card():
    parts = cards.split(seed=0, n_eval=100)
    assert len(parts["eval_id"]) == len(parts["eval_ood"]) == 100
    train = set(parts["train"])
    assert not train & set(parts["eval_id"]) and not train & set(parts["eval_ood"])
    assert not set(parts["eval_id"]) & set(parts["eval_ood"])
    assert all(any(map(cards.is_face, h)) for h in parts["eval_ood"])
    assert cards.split(seed=0, n_eval=100) == parts and cards.split(seed=1, n_eval=100) != parts


def test_generated_files_match_the_split_and_are_reused(tmp_path):
    paths = cards.generate_cards_task(tmp_path, seed=0, n_rl=50, n_expert=20, n_eval=30)
    rows = {k: [json.loads(x) for x in p.read_text().splitlines()] for k, p in paths.items()}
    assert [len(rows[k]) for k in ("rl", "expert", "eval", "eval_ood")] == [50, 20, 30, 30]
    assert all(cards.RULE_TEXT[cards.ID_RULE] in r["prompt"] for r in rows["rl"] + rows["eval"])
    assert all(cards.RULE_TEXT[cards.OOD_RULE] in r["prompt"] for r in rows["eval_ood"])
    held_out = {r["prompt"] for r in rows["eval"]}
    assert not held_out & {r["prompt"] for r in rows["rl"]}
    assert not held_out & {r["messages"][0]["content"] for r in rows["expert"]}
    for r in rows["expert"]:
        assert "Values:" in r["messages"][1]["content"]
    mtime = paths["rl"].stat().st_mtime_ns
    assert cards.generate_cards_task(tmp_path, seed=0, n_rl=50, n_expert=20, n_eval=30) == paths
    assert paths["rl"].stat().st_mtime_ns == mtime


def test_base_pretraining_never_sees_held_out_hands_or_the_expert_style(monkeypatch):
    from chord.models import cards as cards_base
    from chord.models.tiny import train_tokenizer

    seen = []
    real = cards.noisy_answer
    monkeypatch.setattr(cards, "noisy_answer", lambda h, rule, rng, c: seen.append((h, rule)) or real(h, rule, rng, c))
    tok = train_tokenizer(cards.corpus(0, 300), 384)
    parts = cards.split(seed=0, n_eval=100)
    held = set(parts["eval_id"]) | set(parts["eval_ood"])
    hands = {rule: [h for h in cards.all_hands() if h not in held] for rule in (cards.ID_RULE, cards.OOD_RULE)}
    rng = random.Random(0)
    for _ in range(10):
        enc, labels = cards_base._batch(tok, rng, hands, 64, 0.5, 0.5)
        for ids, lab in zip(enc["input_ids"], labels):
            target = tok.decode([t for t in lab.tolist() if t != -100])
            assert "Values:" not in target and "+" not in tok.decode(ids[lab == -100])[-3:]
            assert target.startswith(("Answer: ", " ")), target  # loss only on answers, sums and values
    held_out = {(h, cards.ID_RULE) for h in parts["eval_id"]} | {(h, cards.OOD_RULE) for h in parts["eval_ood"]}
    assert seen and not set(seen) & held_out
    assert {rule for _, rule in seen} == {cards.ID_RULE, cards.OOD_RULE}


@pytest.mark.parametrize("path", CARD_RECIPES, ids=lambda p: p.name)
def test_card_recipes_share_task_model_and_evaluation(path):
    cfgs = [s.cfg for s in expand(load_config(path))] if "stages" in path.read_text() else [load_config(path)]
    assert cfgs[0].model.path == "cards"  # a later stage starts from the previous stage's export
    for cfg in cfgs:
        assert cfg.reward.name == "cards"
        assert [(b.name, b.source, b.k) for b in cfg.eval.benchmarks] == [
            ("id", "builtin:cards", 4), ("ood", "builtin:cards_ood", 4)]
        assert cfg.eval.best_metric == "id/avg@4" and cfg.eval.at_start
    assert sum(c.trainer.steps for c in cfgs) == 120  # the equal budget


def test_worked_sums_use_the_expert_procedure_on_plain_numbers_only():
    from chord.models import cards as cards_base
    from chord.models.tiny import train_tokenizer

    rng = random.Random(0)
    for _ in range(200):
        q, a = cards.worked_sum(rng)
        nums = [int(x) for x in q.removeprefix("Add the numbers ").rstrip(".").split(", ")]
        assert a.endswith(f"Answer: {sum(nums)}") and a.startswith(f"Values: {', '.join(map(str, nums))}.")
        assert not any(c in q + a for c in ("J", "K", "Q", "count as"))  # no cards, no rule
    tok = train_tokenizer(cards.corpus(0, 300), 384)
    hands = {rule: cards.all_hands()[:50] for rule in (cards.ID_RULE, cards.OOD_RULE)}
    enc, labels = cards_base._batch(tok, random.Random(1), hands, 64, 0.5, 0.5, worked=0.5)
    texts = [tok.decode(ids) for ids in enc["input_ids"]]
    worked = [t for t in texts if "Values:" in t]
    assert 16 < len(worked) < 48 and all("<|im_start|>" not in t for t in worked)  # plain text, never chat


def test_the_shipped_base_is_the_default_build_and_is_used_without_building(tmp_path):
    """`model.path: cards` resolves to the base in chord/models/shipped/ (no ~8-minute pretraining): its folder
    is the default arguments' cache key, and its weights are the ones its chord_build.json names."""
    from chord.models.cards import SHIPPED, weights_sha256
    from chord.models.load import resolve_model_path

    shipped = sorted(SHIPPED.glob("cards-*"))
    assert len(shipped) == 1, shipped  # one base: an old one left beside a new one would be dead weight
    info = json.loads((shipped[0] / "chord_build.json").read_text())
    assert info["weights_sha256"] == weights_sha256(shipped[0])
    assert resolve_model_path("cards", tmp_path) == str(shipped[0])  # the default arguments' key
    assert not any(tmp_path.iterdir())  # nothing built into the cache
    assert (shipped[0] / "model.safetensors").stat().st_size < 10 * 2**20

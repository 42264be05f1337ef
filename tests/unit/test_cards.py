"""The card-sum task (chord.tasks.cards) and its recipes (the seed statistics: test_seed_stats.py)."""

import hashlib
import json
import random
from pathlib import Path

import pytest
import torch

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


def test_validation_hands_come_after_the_test_hands_and_leave_them_unchanged():
    base, parts = cards.split(seed=0, n_eval=100), cards.split(seed=0, n_eval=100, n_val=100)
    assert base["eval_val"] == []
    assert parts["eval_id"] == base["eval_id"] and parts["eval_ood"] == base["eval_ood"]  # the same test sets
    val = set(parts["eval_val"])
    assert len(val) == len(parts["eval_val"]) == 100
    assert not val & (set(parts["train"]) | set(parts["eval_id"]) | set(parts["eval_ood"]))
    assert base["train"] == parts["eval_val"] + parts["train"]  # taken off the front of the same order


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _prompts(rows: list[dict]) -> list[str]:
    return [r["prompt"] if "prompt" in r else r["messages"][0]["content"] for r in rows]


# sha256 over the default call's file names and bytes, measured when n_val was added: builtin:cards and the
# recorded benchmark results (docs/benchmark.md) use these files; change it only with a TASK_VERSION bump
DEFAULT_FILES_SHA256 = "e0386e6486f62f8f55e4d56a54d07caef80cc7524bb6cd4676d3f3a54537c33b"


def test_validation_split_keeps_the_default_files_and_draws_rl_and_expert_hands_apart(tmp_path):
    default = cards.generate_cards_task(tmp_path / "a", seed=0)
    with_val = cards.generate_cards_task(tmp_path / "a", seed=0, n_val=100)
    again = cards.generate_cards_task(tmp_path / "b", seed=0)
    assert set(default) == {"rl", "expert", "eval", "eval_ood"} and set(with_val) == set(default) | {"eval_val"}
    assert {p.name for p in default.values()} == {p.name for p in again.values()}
    assert all(default[k].read_bytes() == again[k].read_bytes() for k in default)
    digest = hashlib.sha256()
    for k in sorted(default):
        digest.update(default[k].name.encode() + default[k].read_bytes())
    assert digest.hexdigest() == DEFAULT_FILES_SHA256  # byte-identical to the files before n_val existed
    key = default["rl"].name.removeprefix("rl-")
    assert with_val["rl"].name != default["rl"].name and all(p.name.endswith(key) for p in default.values())
    assert len(list((tmp_path / "a").glob("manifest-*.json"))) == 2
    rows = {k: _rows(p) for k, p in with_val.items()}
    assert [len(rows[k]) for k in ("rl", "expert", "eval", "eval_ood", "eval_val")] == [1000, 300, 100, 100, 100]
    assert with_val["eval"].read_bytes() == default["eval"].read_bytes()  # the same test hands
    assert with_val["eval_ood"].read_bytes() == default["eval_ood"].read_bytes()
    rl, expert, val = (set(_prompts(rows[k])) for k in ("rl", "expert", "eval_val"))
    assert len(rl) == 1000 and len(expert) == 300 and len(val) == 100
    assert not rl & expert and not (rl | expert) & val and not (rl | expert | val) & set(_prompts(rows["eval"]))
    assert _prompts(rows["eval_val"]) == [cards.prompt_text(h, cards.ID_RULE)
                                          for h in cards.split(0, 100, 100)["eval_val"]]
    old = _rows(default["rl"]), _rows(default["expert"])  # without n_val the two draws may share hands
    assert set(_prompts(old[0])) & set(_prompts(old[1]))
    with pytest.raises(ValueError, match="disjoint hands"):
        cards.generate_cards_task(tmp_path / "c", seed=0, n_rl=2000, n_val=100)


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


class _Stop(Exception):
    pass


def _pretraining_hands(monkeypatch, held_out_val: int) -> dict[str, list]:
    """The `hands` dict the real _pretrain hands to its first _batch call (stopped there: no training)."""
    from chord.models import cards as cards_base

    got = {}

    def first_batch(tokenizer, rng, hands, *args, **kwargs):
        got.update(hands)
        raise _Stop

    monkeypatch.setattr(cards_base, "_batch", first_batch)
    with pytest.raises(_Stop):
        cards_base._pretrain(torch.nn.Linear(1, 1), None, seed=0, steps=1, batch=1, lr=1e-3, correct=0.5,
                             facts=0.5, held_out_val=held_out_val)
    monkeypatch.undo()
    return got


def test_base_pretraining_with_held_out_val_never_sees_the_validation_hands(monkeypatch):
    from chord.models import cards as cards_base
    from chord.models.tiny import train_tokenizer

    val = set(cards.split(0, 100, 100)["eval_val"])
    default, held = _pretraining_hands(monkeypatch, 0), _pretraining_hands(monkeypatch, 100)
    for rule in (cards.ID_RULE, cards.OOD_RULE):
        assert val <= set(default[rule])  # the default base (the shipped one) did see them
        assert held[rule] == [h for h in default[rule] if h not in val]
    seen = []
    real = cards.noisy_answer
    monkeypatch.setattr(cards, "noisy_answer", lambda h, rule, rng, c: seen.append(h) or real(h, rule, rng, c))
    tok = train_tokenizer(cards.corpus(0, 300), 384)
    rng = random.Random(0)
    for _ in range(5):
        cards_base._batch(tok, rng, held, 64, 0.5, 0.0)
    assert len(seen) == 5 * 64 and not set(seen) & val


def test_held_out_val_changes_the_base_models_cache_key(monkeypatch, tmp_path):
    """Pretraining itself is replaced (minutes); the key, the folder and the argument reaching _pretrain are real."""
    from chord.models import cards as cards_base

    passed = []
    monkeypatch.setattr(cards_base, "_pretrain", lambda *a: passed.append(a[-1]))
    tiny = dict(hidden_size=16, num_layers=1, num_heads=2, head_dim=8, intermediate_size=32, shipped=None)
    plain = cards_base.build_cards_model(tmp_path, **tiny)
    held = cards_base.build_cards_model(tmp_path, held_out_val=100, **tiny)
    assert plain != held and plain.parent == held.parent == tmp_path and passed == [0, 100]
    assert "held_out_val" not in json.loads((plain / "chord_build.json").read_text())  # the default key is kept
    assert json.loads((held / "chord_build.json").read_text())["held_out_val"] == 100
    assert cards_base.build_cards_model(tmp_path, held_out_val=100, **tiny) == held and passed == [0, 100]


@pytest.mark.parametrize("path", CARD_RECIPES, ids=lambda p: p.name)
def test_card_recipes_share_task_model_and_evaluation(path):
    cfgs = [s.cfg for s in expand(load_config(path))] if "stages" in path.read_text() else [load_config(path)]
    assert cfgs[0].model.path == "cards"  # a later stage starts from the previous stage's export
    for cfg in cfgs:
        assert cfg.reward.name == "cards"
        assert [(b.name, b.source, b.k) for b in cfg.eval.benchmarks] == [  # validation selects, test reports
            ("val", "builtin:cards_val", 4), ("id", "builtin:cards", 4), ("ood", "builtin:cards_ood", 4)]
        assert cfg.eval.best_metric == "val/avg@4" and not cfg.eval.best_includes_start
        assert cfg.data.prompts.source == "builtin:cards_train" and cfg.trainer.lr_warmup_steps == 5
    assert cfgs[0].eval.at_start and cfgs[0].eval.at_steps == [5, 10, 20, 40][:len(cfgs[0].eval.at_steps)]
    assert sum(c.trainer.steps for c in cfgs) == 60  # the equal budget


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


def test_the_shipped_bases_are_the_default_and_math_builds_and_are_used_without_building(tmp_path):
    """`model.path: cards` and the benchmark's math-setting base resolve to the bases in chord/models/shipped/ (no
    ~8-minute pretraining): each folder is its arguments' cache key, and its weights are the ones its
    chord_build.json names; nothing else ships (an old base left beside a new one would be dead weight)."""
    from benchmarks.method_comparison import SETTINGS, VAL_HANDS
    from chord.models.cards import SHIPPED, build_cards_model, weights_sha256
    from chord.models.load import resolve_model_path

    default = Path(resolve_model_path("cards", tmp_path))  # the default arguments' key
    math = build_cards_model(tmp_path, worked=SETTINGS["math"], held_out_val=VAL_HANDS)
    assert sorted(SHIPPED.glob("cards-*")) == sorted([default, math]) and default != math
    for folder in (default, math):
        info = json.loads((folder / "chord_build.json").read_text())
        assert info["weights_sha256"] == weights_sha256(folder)
        assert (folder / "model.safetensors").stat().st_size < 10 * 2**20
    assert json.loads((math / "chord_build.json").read_text())["worked"] == SETTINGS["math"]
    assert not any(tmp_path.iterdir())  # nothing built into the cache

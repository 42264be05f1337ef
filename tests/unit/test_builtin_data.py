"""`builtin:<name>` data sources resolve to generated, cached files under model.cache_dir (chord.build)."""

import json
from pathlib import Path

import pytest

from chord.config import ChordConfig, ConfigError
from chord.config.recipe import load_config
from chord.data.json_rows import read_json_rows
from chord.data.loading import build_expert_examples, build_prompt_examples, load_rows
from chord.tasks import BUILTIN_TASKS, builtin_source
from chord.tasks.points24 import ID_RULE, OOD_RULE, build_points24

pytestmark = pytest.mark.unit
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _cfg(cache_dir) -> ChordConfig:
    cfg = ChordConfig()
    cfg.model.cache_dir = str(cache_dir)
    return cfg


def _rules(path) -> set[str]:
    return {json.loads(r["answer"])["rule"] for r in read_json_rows(path).rows}


def test_points24_sources_resolve_to_cached_splits(tmp_path):
    cfg = _cfg(tmp_path)
    got = {kind: Path(builtin_source(cfg, "builtin:points24", kind)) for kind in ("rl", "expert", "eval")}
    ood = Path(builtin_source(cfg, "builtin:points24_ood", "eval"))
    assert got["rl"] == got["expert"] and got["rl"].name == "train.jsonl"  # prompts and expert rows
    assert got["eval"].name == "eval_id.jsonl" and ood.name == "eval_ood.jsonl"
    folder = got["rl"].parent
    assert folder.parent == tmp_path / "points24" and ood.parent == folder == got["eval"].parent
    assert _rules(got["rl"]) == _rules(got["eval"]) == {ID_RULE} and _rules(ood) == {OOD_RULE}
    rows = read_json_rows(got["rl"])
    assert set(rows.column_names) == {"prompt", "answer", "messages"} and len(rows) == 1000
    assert len(read_json_rows(got["eval"])) == len(read_json_rows(ood)) == 234  # the official eval size
    # deterministic: the same rows chord.tasks.points24 builds for seed 0
    assert read_json_rows(ood).rows == build_points24(seed=0, n_train=1000, n_eval=234)["eval_ood"]


def test_points24_files_are_reused_and_a_broken_cache_is_rewritten(tmp_path):
    cfg = _cfg(tmp_path)
    train = Path(builtin_source(cfg, "builtin:points24", "rl"))
    text, stamp = train.read_text(), train.stat().st_mtime_ns
    assert Path(builtin_source(cfg, "builtin:points24", "expert")) == train
    assert train.stat().st_mtime_ns == stamp  # cached: not written again
    (train.parent / "manifest.json").write_text('{"seed": 0, "n_tr')  # an interrupted first write
    train.unlink()
    assert Path(builtin_source(cfg, "builtin:points24", "rl")) == train and train.read_text() == text
    assert not [p.name for p in train.parent.iterdir() if ".tmp" in p.name]


def test_points24_ood_is_an_evaluation_set_only(tmp_path):
    with pytest.raises(ConfigError) as e:
        builtin_source(_cfg(tmp_path), "builtin:points24_ood", "rl")
    msg = str(e.value)
    assert (
        "\n" not in msg and "builtin:points24_ood" in msg and "no rl data" in msg and "eval.benchmarks" in msg
    )


def test_unknown_builtin_lists_the_available_ones(tmp_path):
    with pytest.raises(ConfigError) as e:
        builtin_source(_cfg(tmp_path), "builtin:points42", "rl")
    msg = str(e.value)
    assert "\n" not in msg and "builtin:points42" in msg
    names = ("tiny", "tiny_math", "points24", "points24_ood", "cards", "cards_ood", "cards_train", "cards_val")
    for name in names:
        assert f"builtin:{name}," in msg + "," or f"builtin:{name})" in msg
    assert set(BUILTIN_TASKS) == set(names)
    assert not (tmp_path / "points24").exists()  # nothing generated for a bad name


def test_cards_train_and_cards_val_share_the_test_set_and_keep_validation_apart(tmp_path):
    cfg = _cfg(tmp_path)
    train = {kind: Path(builtin_source(cfg, "builtin:cards_train", kind)) for kind in ("rl", "expert", "eval")}
    val = Path(builtin_source(cfg, "builtin:cards_val", "eval"))
    test = Path(builtin_source(cfg, "builtin:cards", "eval"))
    assert all(p.parent == tmp_path / "cards_task" for p in (*train.values(), val, test))
    assert val.name.startswith("eval_val-") and train["eval"] != test  # the n_val task's own files
    assert train["eval"].read_bytes() == test.read_bytes()  # results on either recipe share their test hands
    rl = {r["prompt"] for r in read_json_rows(train["rl"]).rows}
    expert = {r["messages"][0]["content"] for r in read_json_rows(train["expert"]).rows}
    held = {r["prompt"] for r in read_json_rows(val).rows}
    assert len(rl) == 1000 and len(expert) == 300 and len(held) == 100
    assert not held & (rl | expert) and not rl & expert and not held & {r["prompt"] for r in read_json_rows(test).rows}


def test_cards_val_is_an_evaluation_set_only(tmp_path):
    with pytest.raises(ConfigError) as e:
        builtin_source(_cfg(tmp_path), "builtin:cards_val", "rl")
    msg = str(e.value)
    assert "\n" not in msg and "builtin:cards_val" in msg and "no rl data" in msg and "eval.benchmarks" in msg


def test_other_sources_pass_through(tmp_path):
    assert builtin_source(_cfg(tmp_path), "data/openr1/rl.jsonl", "rl") == "data/openr1/rl.jsonl"
    assert not any(tmp_path.iterdir())


def test_tiny_sources_still_resolve(tmp_path):
    cfg = _cfg(tmp_path)
    for name, needle in (("tiny", "Answer:"), ("tiny_math", "\\boxed")):
        paths = {k: Path(builtin_source(cfg, f"builtin:{name}", k)) for k in ("rl", "expert", "eval")}
        assert all(p.parent == tmp_path / "tiny_task" for p in paths.values())
        assert needle in paths["expert"].read_text()


@pytest.fixture(scope="module")
def tiny_tokenizer():
    from chord.models.tiny import tiny_tokenizer

    return tiny_tokenizer(seed=0, vocab_size=512)  # the tiny model's tokenizer (chord.models.tiny)


def test_points24_tiny_recipe_lengths_keep_every_row(tmp_path, tiny_tokenizer):
    """The tiny tokenizer knows digits and sums; 24-point text goes byte by byte (~226 prompt tokens),
    so the twin's length limits are checked against every generated row, not guessed."""
    cfg = load_config(RECIPES / "points24_tiny.yaml", [f"model.cache_dir={tmp_path}"])
    p, x = cfg.data.prompts, cfg.data.expert
    items, report = build_prompt_examples(
        load_rows(builtin_source(cfg, p.source, "rl")),
        tiny_tokenizer,
        max_prompt_length=p.max_prompt_length,
        max_bad_fraction=0.0,
    )
    assert len(items) == 1000, report.summary()
    experts, report = build_expert_examples(
        load_rows(builtin_source(cfg, x.source, "expert")),
        tiny_tokenizer,
        max_length=x.max_length,
        max_bad_fraction=0.0,
    )
    assert len(experts) == 1000, report.summary()
    longest_demo = max(sum(e.loss_mask) for e in experts)  # response tokens, end-of-turn included
    assert longest_demo <= cfg.rollout.max_new_tokens  # an expert-length answer fits a rollout
    for b in cfg.eval.benchmarks:
        rows = load_rows(builtin_source(cfg, b.source, "eval"))
        items, report = build_prompt_examples(
            rows,
            tiny_tokenizer,
            max_prompt_length=cfg.eval.max_prompt_length or p.max_prompt_length,
            max_bad_fraction=0.0,
        )
        assert len(items) == 234, report.summary()

"""Weighted mixtures of data sources (exact shares, exact resume), hub subset/revision pins, and prompt
columns reaching rewards as extra_info (docs/usage.md#mixtures-of-sources, docs/usage.md#rewards)."""

import json
import math

import pytest

from chord.build import build_data, steps_from_epochs
from chord.checkpoint.store import config_differences
from chord.config import ConfigError, to_yaml
from chord.config.recipe import load_config
from chord.data.loading import DataError, build_prompt_examples, load_rows
from chord.data.streams import MixedStream, ShuffledStream, mixture_seed
from chord.evaluation.evaluate import load_benchmark
from chord.rewards import score_all

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from chord.models.load import load_tokenizer
    from chord.models.tiny import build_tiny_model

    return load_tokenizer(str(build_tiny_model(tmp_path_factory.mktemp("m"), warmup_steps=0)))


def _mixed(sizes=(7, 13, 4), weights=(0.5, 0.3, 0.2), seed=3) -> MixedStream:
    streams = [ShuffledStream([(i, j) for j in range(n)], seed=mixture_seed(seed, i), name=f"s{i}")
               for i, n in enumerate(sizes)]
    return MixedStream(streams, list(weights), [f"s{i}" for i in range(len(sizes))], name="t")


# ---- MixedStream: shares, epochs within a source, exact resume, refusals

@pytest.mark.parametrize("weights", [(0.5, 0.3, 0.2), (0.7, 0.3), (1.0, 1.0, 1.0, 5.0, 0.01), (3.0,)])
def test_every_source_stays_within_one_item_of_its_share(weights):
    s = _mixed(sizes=tuple(5 + i for i in range(len(weights))), weights=weights)
    shares = [w / sum(weights) for w in weights]
    k = len(weights)
    bound = 1 - 1 / (2 * k - 2) if k > 1 else 0.0  # Tijdeman's bound
    counts = [0] * k
    for n in range(1, 2001):
        (src, _), = s.next_batch(1)
        counts[src] += 1
        assert max(abs(n * p - c) for p, c in zip(shares, counts)) <= bound + 1e-9, (n, counts)
    assert counts == s.drawn


def test_a_batch_holds_each_source_in_proportion_and_reports_it():
    s = _mixed(weights=(0.5, 0.3, 0.2))
    for _ in range(50):
        batch = s.next_batch(16)
        per = [sum(1 for src, _ in batch if src == i) for i in range(3)]
        assert all(abs(c - 16 * w) < 2 for c, w in zip(per, (0.5, 0.3, 0.2))), per
        assert s.batch_metrics() == {f"data/t/s{i}_frac": per[i] / 16 for i in range(3)}
    assert ShuffledStream([1, 2], seed=0, name="p").batch_metrics() == {}


def test_each_source_is_a_permutation_per_epoch_and_an_epoch_is_all_rows():
    s = _mixed(sizes=(7, 13, 4))
    assert len(s) == len(s.items) == 24
    drawn = s.next_batch(400)
    for i, n in enumerate((7, 13, 4)):
        rows = [j for src, j in drawn if src == i]
        for e in range(len(rows) // n):  # every full pass over a source holds each of its rows once
            assert sorted(rows[e * n:(e + 1) * n]) == list(range(n))


@pytest.mark.parametrize("cut", [0, 1, 5, 17, 40])
def test_a_resumed_mixture_yields_exactly_the_uninterrupted_batches(cut):
    sizes = [3, 1, 2, 5, 8, 3, 16, 7, 1, 4] * 6  # odd batch sizes: batches span source epochs
    ref = _mixed()
    expected = [ref.next_batch(n) for n in sizes]
    s = _mixed()
    got = [s.next_batch(n) for n in sizes[:cut]]
    state = json.loads(json.dumps(s.state_dict()))  # what a checkpoint stores
    r = _mixed()
    r.load_state_dict(state)
    got += [r.next_batch(n) for n in sizes[cut:]]
    assert got == expected


def test_a_changed_mixture_or_stream_kind_is_refused_in_one_line():
    state = json.loads(json.dumps(_mixed().state_dict()))
    for other, needle in [(_mixed(weights=(0.5, 0.2, 0.3)), "mixture is s0=0.5, s1=0.3, s2=0.2, this run's is "
                                                            "s0=0.5, s1=0.2, s2=0.3"),
                          (_mixed(sizes=(7, 12, 4)), "checkpoint stream has 13 rows, data has 12"),
                          (_mixed(sizes=(7, 13), weights=(0.5, 0.3)), "mixture is s0=0.5, s1=0.3, s2=0.2, this")]:
        with pytest.raises(DataError, match=needle) as e:
            other.load_state_dict(state)
        assert "\n" not in str(e.value)
    plain = ShuffledStream(list(range(5)), seed=0, name="prompts")
    with pytest.raises(DataError, match="the checkpoint's stream mixes 3 sources"):
        plain.load_state_dict(state)
    with pytest.raises(DataError, match="the checkpoint's stream reads one source, this run mixes 3"):
        _mixed().load_state_dict(plain.state_dict())


def test_a_plain_stream_checkpoint_keeps_its_format():
    s = ShuffledStream(list(range(10)), seed=5, name="prompts")
    s.next_batch(13)
    assert s.state_dict() == {"name": "prompts", "seed": 5, "epoch": 1, "position": 3, "num_items": 10}
    r = ShuffledStream(list(range(10)), seed=5, name="prompts")
    r.load_state_dict({"name": "prompts", "seed": 5, "epoch": 1, "position": 3, "num_items": 10})
    assert r.next_batch(9) == s.next_batch(9)


# ---- recipes: mixtures and hub pins

def _rows(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_build_data_reads_each_source_with_its_columns_and_mixes_them(tok, tmp_path, capsys):
    a = _rows(tmp_path / "a.jsonl", [{"prompt": f"What is {i} + 1?", "answer": i + 1, "tolerance": 0}
                                     for i in range(6)])
    b = _rows(tmp_path / "b.jsonl", [{"question": f"What is {i} + 2?", "gold": i + 2, "tolerance": 0.5,
                                      "id": f"b{i}"} for i in range(3)])
    mixture = (f"[{{source: {a}, weight: 0.75}}, "
               f"{{source: {b}, weight: 0.25, prompt_column: question, answer_column: gold}}]")
    cfg = load_config(None, [f"run.output_dir={tmp_path / 'run'}", "data.prompts.source=null",
                             f"data.prompts.mixture={mixture}", "data.expert.source=null", "algorithm.mu.peak=0",
                             "algorithm.mu.valley=0", "trainer.prompts_per_step=4", "trainer.epochs=2"])
    prompts, experts = build_data(cfg, tok)
    assert experts is None and isinstance(prompts, MixedStream) and prompts.labels == ["a", "b"]
    out = capsys.readouterr().err
    assert "prompt data [a]: kept 6/6" in out and "prompt data [b]: kept 3/3" in out  # a report line per source
    batch = prompts.next_batch(4)
    assert [p.source for p in batch].count("b") == 1
    b_item = next(p for p in batch if p.source == "b")
    assert b_item.answer == str(int(b_item.prompt_text.split()[2]) + 2)  # the entry's own columns were read
    assert b_item.extra == {"tolerance": 0.5, "id": f"b{b_item.index}"}  # the other columns, nothing else
    assert next(p for p in batch if p.source == "a").extra == {"tolerance": 0}
    assert steps_from_epochs(cfg, prompts, None) == math.ceil(2 * 9 / 4)  # an epoch: all rows of all sources
    # the same recipe without a mixture is a plain stream, seeded as before
    cfg1 = load_config(None, [f"data.prompts.source={a}", "data.expert.source=null", "algorithm.mu.peak=0",
                              "algorithm.mu.valley=0"])
    single, _ = build_data(cfg1, tok)
    assert isinstance(single, ShuffledStream) and single.seed == cfg1.run.seed and single.items[0].source == ""


def test_a_changed_mixture_is_a_meaningful_config_change(tmp_path):
    a = _rows(tmp_path / "a.jsonl", [{"prompt": "x", "answer": 1}])
    base = ["data.prompts.source=null", "data.expert.source=null", "algorithm.mu.peak=0", "algorithm.mu.valley=0"]
    old = load_config(None, [*base, f"data.prompts.mixture=[{{source: {a}, weight: 1}}, {{source: {a}, weight: 2}}]"])
    new = load_config(None, [*base, f"data.prompts.mixture=[{{source: {a}, weight: 1}}, {{source: {a}, weight: 3}}]"])
    assert config_differences(to_yaml(old), new)[0] == ["data.prompts.mixture"]


def test_expert_entries_take_their_own_prompt_response_columns(tok, tmp_path):
    msgs = [{"messages": [{"role": "user", "content": f"What is {i} + 1?"},
                          {"role": "assistant", "content": f"Answer: {i + 1}"}]} for i in range(4)]
    pairs = [{"p": f"What is {i} + 2?", "c": f"Answer: {i + 2}"} for i in range(4)]
    m, pc = _rows(tmp_path / "m.jsonl", msgs), _rows(tmp_path / "pc.jsonl", pairs)
    cfg = load_config(None, ["trainer.prompts_per_step=0", "algorithm.mu.peak=1", "algorithm.mu.valley=1",
                             "data.expert.source=null", "data.expert.max_length=64",
                             f"data.expert.mixture=[{{source: {m}}}, {{source: {pc}, prompt_column: p, "
                             "response_column: c, weight: 1.0}]"])
    prompts, experts = build_data(cfg, tok)
    assert prompts is None and isinstance(experts, MixedStream) and len(experts) == 8
    answers = {tok.decode([t for t, k in zip(e.input_ids, e.loss_mask) if k]) for e in experts.next_batch(8)}
    assert answers == {f"Answer: {i}<|im_end|>" for i in range(1, 6)}  # both forms were read (2..5 from pc)


@pytest.mark.parametrize("overrides,needle", [
    (["data.prompts.source=x.jsonl", "data.prompts.mixture=[{source: a.jsonl}]"],
     "'data.prompts.source' = x.jsonl and data.prompts.mixture are both set"),
    (["data.prompts.mixture=[{source: a.jsonl, wieght: 1}]"], "did you mean 'data.prompts.mixture.0.weight'"),
    (["data.expert.mixture=[{source: a.jsonl, weight: 0}]"], "'data.expert.mixture.0.weight' must be a finite"),
    (["data.expert.mixture=[{source: a.jsonl, weight: .nan}]"], "'data.expert.mixture.0.weight' must be a finite"),
    (["data.prompts.mixture=[{source: a.jsonl}]", "data.prompts.subset=main"], "'data.prompts.subset' pins"),
    (["data.expert.mixture=[{source: a.jsonl, prompt_column: p}]"], "'data.expert.mixture.0' needs prompt_column"),
    (["data.prompts.source=null"], "'data.prompts.source' is null"),
    (["data.prompts.subset=main"], "'data.prompts.subset' = main names a config of a hub dataset"),
    (["data.expert.source=a.parquet", "data.expert.revision=v1"], "'data.expert.revision' = v1 pins a hub dataset"),
    (["data.prompts.mixture=[{source: ./folder, revision: abc}]"], "'data.prompts.mixture.0.revision' = abc"),
    (["eval.benchmarks=[{name: a, source: builtin:tiny, subset: main}]"], "'eval.benchmarks.0.subset' = main"),
])
def test_bad_mixtures_and_pins_are_one_line_config_errors(overrides, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")) as e:
        load_config(None, overrides)
    assert "\n" not in str(e.value)


# ---- hub subset and revision reach datasets.load_dataset

@pytest.fixture
def hub_layout(tmp_path):
    """A folder laid out like a hub dataset repository: README.md `configs:` naming each config's files."""
    repo = tmp_path / "repo"
    for config, split, rows in [("main", "train", [{"question": "What is 1 + 1?", "answer": "2"}]),
                                ("main", "test", [{"question": "What is 2 + 2?", "answer": "4"},
                                                  {"question": "What is 3 + 3?", "answer": "6"}]),
                                ("socratic", "test", [{"question": "Why is 5 + 5?", "answer": "10"}])]:
        (repo / config).mkdir(parents=True, exist_ok=True)
        _rows(repo / config / f"{split}.jsonl", rows)
    (repo / "README.md").write_text(
        "---\nconfigs:\n"
        "- config_name: main\n  data_files:\n  - {split: train, path: main/train.jsonl}\n"
        "  - {split: test, path: main/test.jsonl}\n"
        "- config_name: socratic\n  data_files:\n  - {split: test, path: socratic/test.jsonl}\n---\n# repo\n")
    return repo


def test_subset_selects_a_config_of_a_hub_layout_folder(hub_layout, tok):
    assert [r["answer"] for r in load_rows(str(hub_layout), "test", subset="main")] == ["4", "6"]
    assert [r["answer"] for r in load_rows(str(hub_layout), "test", subset="socratic")] == ["10"]
    with pytest.raises(DataError, match="BuilderConfig 'nope' not found") as e:
        load_rows(str(hub_layout), "test", subset="nope")
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="Config name is missing"):  # two configs: datasets asks which
        load_rows(str(hub_layout), "test")
    cfg = load_config(None, [f"eval.benchmarks=[{{name: gsm, source: {hub_layout}, subset: socratic}}]"])
    bench = load_benchmark(cfg.eval.benchmarks[0], tok, k=1, system_prompt=None, max_prompt_length=64,
                           max_bad_fraction=0.0)
    assert [p.answer for p in bench.problems] == ["10"]
    with pytest.raises(DataError, match="is local: revision 'v1' pins hub datasets only"):
        load_rows(str(hub_layout), "test", subset="main", revision="v1")
    with pytest.raises(DataError, match="subset 'main' names a config of a hub dataset"):
        load_rows(str(hub_layout / "main" / "test.jsonl"), subset="main")


def test_subset_and_revision_reach_load_dataset_for_a_hub_id(monkeypatch):
    """Offline, a hub id cannot load; a recording wrapper around the real load_dataset shows what it was asked."""
    import datasets

    calls, real = [], datasets.load_dataset

    def recording(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets, "load_dataset", recording)
    with pytest.raises(DataError, match="cannot load dataset 'openai/gsm8k' subset 'main' revision 'e53f048' "
                                        "split 'test'") as e:
        load_rows("openai/gsm8k", "test", subset="main", revision="e53f048")
    assert "\n" not in str(e.value)
    assert calls == [(("openai/gsm8k", "main"), {"split": "test", "revision": "e53f048"})]


# ---- extra columns reach rewards as extra_info

def _close(response: str, answer: str, *, extra_info: dict) -> tuple[float, dict[str, float]]:
    assert set(extra_info) == {"tolerance", "unit"}, extra_info
    ok = abs(float(response) - float(answer)) <= extra_info["tolerance"]
    return float(ok), {"correct": float(ok)}


def test_extra_info_reaches_rewards_that_take_it(tok, tmp_path):
    f = _rows(tmp_path / "p.jsonl", [{"prompt": "What is 1/3?", "answer": "0.333", "tolerance": 0.01, "unit": "x"},
                                     {"prompt": "What is 2/3?", "answer": "0.667", "tolerance": 0.0, "unit": "x"}])
    items, _ = build_prompt_examples(load_rows(f), tok, max_prompt_length=64)
    assert [p.extra for p in items] == [{"tolerance": 0.01, "unit": "x"}, {"tolerance": 0.0, "unit": "x"}]
    responses, answers, extras = ["0.34", "0.67"], [p.answer for p in items], [p.extra for p in items]
    assert score_all(_close, responses, answers, extra_info=extras).rewards == [1.0, 0.0]  # per-row tolerance
    s = score_all(_close, responses, answers)  # not given: the reward's required keyword is missing, counted
    assert s.errors == 2 and "extra_info" in s.error_examples[0]

    def plain(response, answer):  # no keyword: called exactly as before
        return float(response == answer), {}

    assert score_all(plain, ["0.333", "1"], answers, [False, True], extras).rewards == [1.0, 0.0]
    seen = []

    def verl_style(response, answer, **kwargs):
        seen.append(kwargs)
        return 0.0, {}

    score_all(verl_style, responses, answers, [False, True], extras)
    assert seen == [{"truncated": False, "extra_info": extras[0]}, {"truncated": True, "extra_info": extras[1]}]


def test_score_batch_gets_extra_info_when_it_accepts_it():
    class Batch:
        def score_batch(self, responses, answers, extra_info):
            return [(float(e["w"]), {}) for e in extra_info]

        def __call__(self, response, answer):
            raise AssertionError("score_batch scores the batch")

    class Old:
        def score_batch(self, responses, answers):
            return [(1.0, {}) for _ in responses]

    assert score_all(Batch(), ["a", "b"], ["1", "2"], extra_info=[{"w": 2}, {"w": 3}]).rewards == [2.0, 3.0]
    assert score_all(Old(), ["a", "b"], ["1", "2"], extra_info=[{"w": 2}, {"w": 3}]).rewards == [1.0, 1.0]


def test_extra_keeps_json_values_and_honours_extra_columns(tok):
    rows = [{"prompt": "What is 1 + 1?", "answer": 2, "meta": {"level": 3, "tags": ["a"]}, "blob": b"\x00",
             "big": "x" * 100}]
    (item,), _ = build_prompt_examples(rows, tok, max_prompt_length=64)
    assert item.extra == {"meta": {"level": 3, "tags": ["a"]}, "big": "x" * 100}  # bytes are left out
    (item,), _ = build_prompt_examples(rows, tok, max_prompt_length=64, extra_columns=["meta", "absent", "answer"])
    assert item.extra == {"meta": {"level": 3, "tags": ["a"]}}

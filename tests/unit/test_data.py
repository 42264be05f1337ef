"""Tiny task, reward, dataset loading with counted skips, and resumable streams."""

import json

import pytest

from chord.data.loading import DataError, build_expert_examples, build_prompt_examples, load_rows
from chord.data.streams import ShuffledStream
from chord.rewards import RewardError, resolve_reward, score_all
from chord.tasks.tiny import expert_solution, generate_tiny_task, tiny_reward

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from chord.models.load import load_tokenizer
    from chord.models.tiny import build_tiny_model

    return load_tokenizer(str(build_tiny_model(tmp_path_factory.mktemp("m"), warmup_steps=0)))


def test_reward_exact_and_last_answer_wins():
    assert tiny_reward("Answer: 12", "12") == (1.0, {"format_ok": 1.0})
    assert tiny_reward("Answer: 11\nAnswer: 12", "12")[0] == 1.0
    assert tiny_reward("Answer: 12\nAnswer: 11", "12")[0] == 0.0
    assert tiny_reward("twelve", "12") == (0.0, {"format_ok": 0.0})
    assert tiny_reward("Answer: 99999999999999999999", "12")[0] == 0.0
    assert tiny_reward("x" * 1_000_000 + "Answer: 7", "7")[0] == 1.0  # bounded scan of the tail
    assert tiny_reward("__import__('os').system('true')", "0")[0] == 0.0
    assert tiny_reward(expert_solution(17, 8), "25")[0] == 1.0


def test_reward_registry_and_counted_errors():
    assert resolve_reward("tiny")("Answer: 3", "3")[0] == 1.0
    assert resolve_reward("chord.tasks.tiny:tiny_reward")("Answer: 3", "3")[0] == 1.0
    for bad in ("nope", "no_such_module_xyz:f", "chord.tasks.tiny:missing"):
        with pytest.raises(RewardError):
            resolve_reward(bad)

    def boom(text, answer):
        raise ZeroDivisionError("model output broke the verifier")

    s = score_all(boom, ["a", "b"], ["1", "2"])
    assert s.rewards == [0.0, 0.0] and s.errors == 2 and "ZeroDivisionError" in s.error_examples[0]


def test_task_is_deterministic_and_eval_disjoint(tmp_path):
    a = generate_tiny_task(tmp_path / "a", seed=3)
    b = generate_tiny_task(tmp_path / "b", seed=3)
    for k in a:
        assert a[k].read_text() == b[k].read_text()
    rl = {json.loads(x)["prompt"] for x in a["rl"].read_text().splitlines()}
    ev = {json.loads(x)["prompt"] for x in a["eval"].read_text().splitlines()}
    assert rl and ev and not rl & ev


def test_expert_mask_is_exactly_the_response(tok, tmp_path):
    paths = generate_tiny_task(tmp_path, seed=0)
    items, report = build_expert_examples(load_rows(str(paths["expert"])), tok, max_length=160)
    assert report.kept == report.total == len(items) > 0
    e = items[0]
    masked = [t for t, m in zip(e.input_ids, e.loss_mask) if m]
    row = json.loads(paths["expert"].read_text().splitlines()[0])
    assert tok.decode(masked) == row["messages"][-1]["content"] + "<|im_end|>"
    assert e.loss_mask[0] == 0 and sum(e.loss_mask) == len(masked)


def test_bad_rows_are_counted_per_reason(tok, tmp_path):
    good = {"messages": [{"role": "user", "content": "What is 1 + 2?"}, {"role": "assistant", "content": "Answer: 3"}]}
    rows = [good] * 6 + [
        {"other": 1},
        {"messages": [{"role": "user", "content": "hi"}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "   "}]},
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x " * 400}]},
    ]
    f = tmp_path / "e.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_rows(str(f))
    items, report = build_expert_examples(ds, tok, max_length=64, max_bad_fraction=0.5)
    assert len(items) == 6
    assert dict(report.skipped) == {"missing_field": 1, "bad_messages": 1, "empty_response": 1, "too_long": 1}
    assert report.summary().startswith("expert data: kept 6/10, skipped 4")
    with pytest.raises(DataError, match="bad fraction 40.0% > max_bad_fraction 5.0%"):
        build_expert_examples(ds, tok, max_length=64, max_bad_fraction=0.05)
    items, report = build_expert_examples(ds, tok, max_length=64, truncation="truncate", max_bad_fraction=0.5)
    assert len(items) == 7 and max(len(e.input_ids) for e in items) == 64


def test_prompt_rows(tok, tmp_path):
    rows = [{"prompt": "What is 1 + 2?", "answer": 3}, {"prompt": "What is 2 + 2?", "answer": "4"},
            {"prompt": 5, "answer": "1"}, {"prompt": "x", "answer": None}, {"prompt": "long " * 200, "answer": "1"}]
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in rows))
    items, report = build_prompt_examples(load_rows(str(f)), tok, max_prompt_length=64, max_bad_fraction=1.0)
    assert [i.answer for i in items] == ["3", "4"]
    assert dict(report.skipped) == {"not_a_string": 1, "missing_field": 1, "too_long": 1}
    with pytest.raises(DataError, match="does not exist"):
        load_rows(str(tmp_path / "missing.jsonl"))


def test_parquet_source(tok, tmp_path):
    import datasets

    datasets.Dataset.from_list([{"prompt": "What is 1 + 2?", "answer": "3"}]).to_parquet(str(tmp_path / "p.parquet"))
    items, _ = build_prompt_examples(load_rows(str(tmp_path / "p.parquet")), tok, max_prompt_length=64)
    assert items[0].answer == "3"


def test_stream_epochs_and_exact_resume():
    s = ShuffledStream(list(range(10)), seed=5, name="t")
    first = s.next_batch(10)
    assert sorted(first) == list(range(10))
    s.next_batch(3)
    state = s.state_dict()
    rest = [s.next_batch(4) for _ in range(5)]
    r = ShuffledStream(list(range(10)), seed=5, name="t")
    r.load_state_dict(state)
    assert [r.next_batch(4) for _ in range(5)] == rest
    with pytest.raises(ValueError, match="checkpoint stream has 10 rows"):
        ShuffledStream(list(range(9)), seed=5, name="t").load_state_dict(state)


def test_one_bad_json_line_is_a_counted_skip(tok, tmp_path):
    good = [{"prompt": f"What is {i} + 1?", "answer": i + 1} for i in range(9)]
    lines = [json.dumps(r) for r in good]
    lines.insert(4, '{"prompt": "What is 2 + 2?", "answer": 4')  # cut short
    lines.insert(6, "[1, 2]")  # JSON, but not a row
    f = tmp_path / "p.jsonl"
    f.write_text("\n".join(lines) + "\n\n")
    items, report = build_prompt_examples(load_rows(str(f)), tok, max_prompt_length=64, max_bad_fraction=0.5)
    assert [i.answer for i in items] == [str(r["answer"]) for r in good]
    assert dict(report.skipped) == {"bad_json": 1, "not_an_object": 1} and report.total == 11
    with pytest.raises(DataError, match=r"kept 9/11, skipped 2 \(bad_json: 1, not_an_object: 1\)"):
        build_prompt_examples(load_rows(str(f)), tok, max_prompt_length=64, max_bad_fraction=0.05)


@pytest.mark.parametrize("name,text,needle", [
    ("e.jsonl", "", "is empty"),
    ("e.json", " \n\t\n", "is empty (only whitespace)"),
    ("t.json", '[{"prompt": "a", "answer": 1}, {"prompt": "b", "ans', "malformed JSON"),
    ("b.jsonl", "not json\n{also not\n", "no usable rows (bad_json: 2; first at line 1"),
    ("s.json", '"just a string"', "no usable rows"),
    ("w.jsonl", "\n  \n", "is empty (only whitespace)"),
    ("l.json", "[]", "holds no rows"),
    ("bom.jsonl", "\ufeff[1]\n", "no usable rows (not_an_object: 1; first at line 1"),
    ("t.parquet", "PAR1 truncated", "cannot read data file"),
])
def test_unusable_data_files_are_one_line_errors(tmp_path, name, text, needle):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(DataError) as e:
        load_rows(str(f))
    assert needle in str(e.value) and str(f) in str(e.value) and "\n" not in str(e.value)


def test_json_list_columns_and_jsonl_in_json(tok, tmp_path):
    rows = [{"prompt": "What is 1 + 2?", "answer": 3}, {"prompt": "What is 2 + 2?", "answer": "4"}]
    for text in (json.dumps(rows), json.dumps({"prompt": [r["prompt"] for r in rows], "answer": [3, "4"]}),
                 "\n".join(json.dumps(r) for r in rows)):
        (tmp_path / "p.json").write_text(text)
        ds = load_rows(str(tmp_path / "p.json"))
        assert ds.column_names == ["prompt", "answer"] and len(ds) == 2 and ds.select(range(1))[0] == rows[0]
        items, _ = build_prompt_examples(ds, tok, max_prompt_length=64)
        assert [i.answer for i in items] == ["3", "4"]


@pytest.mark.parametrize("body,needle", [
    ("def f(:\n    pass\n", "does not compile: invalid syntax"),
    ("raise RuntimeError('no GPU here\\nsecond line')\n",
     "importing 'broken_reward_mod' raised RuntimeError: no GPU here"),
])
def test_reward_module_that_fails_at_import_is_one_line(tmp_path, monkeypatch, body, needle):
    (tmp_path / "broken_reward_mod.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(RewardError) as e:
        resolve_reward("broken_reward_mod:f")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_cli_reward_module_with_syntax_error_exits_2(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    (tmp_path / "typo_reward.py").write_text("def score(response, answer)\n    return 1.0, {}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(tmp_path)])}
    p = subprocess.run([sys.executable, str(root / "chord/train.py"), str(root / "recipes/tiny.yaml"),
                        "reward.name=typo_reward:score", f"run.output_dir={tmp_path / 'run'}"],
                       capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    last = [ln for ln in p.stderr.splitlines() if ln.strip()][-1]
    assert last.startswith("chord: RewardError: reward 'typo_reward:score': module 'typo_reward' does not compile")
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_trl_conversational_prompt_completion_equals_the_same_messages(tok, tmp_path):
    """TRL's prompt/completion datasets (strings, or conversational message lists) train on exactly the tokens
    the same conversation gives as a messages column; a tool call is refused with its own counted reason."""
    conv = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2 + 3?"}]
    answer = [{"role": "assistant", "content": "5"}]
    f = tmp_path / "trl.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in [
        {"prompt": conv, "completion": answer},
        {"prompt": "What is 2 + 3?", "completion": "5"},  # TRL's standard (string) prompt/completion
        {"prompt": conv, "completion": [{"role": "assistant", "content": None,
                                         "tool_calls": [{"function": {"name": "add", "arguments": "{}"}}]}]},
        {"prompt": conv, "completion": 5}]))
    items, report = build_expert_examples(load_rows(str(f)), tok, messages_column=None, prompt_column="prompt",
                                          response_column="completion", max_length=64, max_bad_fraction=1.0)
    assert dict(report.skipped) == {"tool_calls": 1, "bad_messages": 1} and len(items) == 2
    g = tmp_path / "messages.jsonl"
    g.write_text("\n".join(json.dumps({"messages": m}) for m in (conv + answer, [conv[1], *answer])))
    same, _ = build_expert_examples(load_rows(str(g)), tok, max_length=64)
    assert [(e.input_ids, e.loss_mask) for e in items] == [(e.input_ids, e.loss_mask) for e in same]


def test_verl_parquet_with_a_nested_answer(tok, tmp_path):
    """verl's RL parquet: a message-list prompt and the answer at reward_model.ground_truth (a dotted column)."""
    import datasets

    rows = [{"data_source": "gsm8k", "prompt": [{"role": "user", "content": "What is 1 + 2?"}],
             "reward_model": {"style": "rule", "ground_truth": "3"}},
            {"data_source": "gsm8k", "prompt": [{"role": "user", "content": "What is 2 + 2?"}],
             "reward_model": {"style": "rule", "ground_truth": None}}]
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "train.parquet"))
    items, report = build_prompt_examples(load_rows(str(tmp_path / "train.parquet")), tok, max_prompt_length=64,
                                          answer_column="reward_model.ground_truth", max_bad_fraction=1.0)
    assert [i.answer for i in items] == ["3"] and dict(report.skipped) == {"missing_field": 1}
    assert items[0].prompt_text == "What is 1 + 2?"


def test_chat_template_override_kwargs_and_a_tokenizer_without_one(tmp_path):
    """model.chat_template (text or file) replaces the tokenizer's; model.chat_template_kwargs reach every
    prompt chord builds (Qwen3's enable_thinking); no template at all is one ModelError line, not a traceback."""
    from chord.models.load import ModelError, load_tokenizer
    from chord.models.tiny import build_tiny_model

    folder = build_tiny_model(tmp_path / "m", warmup_steps=0)
    plain = tmp_path / "plain"  # the same tokenizer without a chat template
    tok = load_tokenizer(str(folder))
    tok.chat_template = None
    tok.save_pretrained(str(plain))
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    with pytest.raises(ModelError, match="has no chat template: set model.chat_template"):
        load_tokenizer(str(plain), chat=True)
    load_tokenizer(str(plain))  # chord.export needs none

    template = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
                "{% if add_generation_prompt %}<|im_start|>assistant\n{% if not enable_thinking %}Answer:"
                "{% endif %}{% endif %}")
    (tmp_path / "t.jinja").write_text(template)
    rows = [{"prompt": "What is 1 + 2?", "answer": "3"}]
    got = {}
    for name, src, kwargs in (("text", template, {}), ("file", str(tmp_path / "t.jinja"), {}),
                              ("thinking", template, {"enable_thinking": True})):
        tok = load_tokenizer(str(plain), src, kwargs, chat=True)
        items, _ = build_prompt_examples(rows, tok, max_prompt_length=64)
        got[name] = tok.decode(items[0].prompt_ids)
    assert got["text"] == got["file"] and got["text"].endswith("<|im_start|>assistant\nAnswer:")
    assert got["thinking"].endswith("<|im_start|>assistant\n")  # the kwarg reached the template
    with pytest.raises(ModelError, match="neither a Jinja template nor an existing file"):
        load_tokenizer(str(plain), str(tmp_path / "missing.jinja"), chat=True)
    with pytest.raises(ModelError, match="does not render"):
        load_tokenizer(str(plain), "{{ raise_exception('no') }}", chat=True)

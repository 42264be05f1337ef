"""benchmarks/compare.py and its reader chord.analysis.runs on hand-made run folders: stage offsets,
start/best/final, formatting, the JSON twin, PNG files, malformed lines, the missing-metrics error, EMA
smoothing and the phases table."""

import json
from pathlib import Path

import pytest

from benchmarks import compare
from chord.analysis.runs import Run, eval_stats, load_run, read_jsonl, series

pytestmark = pytest.mark.unit

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_jsonl(path: Path, rows: list[dict], extra: tuple[str, ...] = ()) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "".join(line + "\n" for line in extra))


def make_chord(root: Path) -> Path:
    """Unstaged: 20 steps, evals at 0/5/10 on b1 (avg@4) and b2 (avg@8), a step-0 eval-only row, 2 bad lines."""
    d = root / "chord"
    rows = [{"step": 0, "eval/b1/avg@4": 0.1, "eval/overall/avg": 0.15}]
    rows += [{"step": s, "reward/mean": s / 20, "entropy/rollout": 1.0 - s / 50, "mu": 0.1, "tokens/rollout": 50,
              "response/length_mean": 10.0 + s} for s in range(1, 21)]
    write_jsonl(d / "metrics.jsonl", rows, extra=('{"step": 3, "reward/mean": ', '{"no_step": 1}'))
    ev = [(0, 0.1, 0.2), (5, 0.5, 0.2), (10, 0.3, 0.6)]
    write_jsonl(d / "eval.jsonl", [{"step": s, "b1/avg@4": a, "b2/avg@8": b, "overall/avg": (a + b) / 2,
                                    "overall/truncated_frac": 0.25} for s, a, b in ev])
    return d


def make_staged(root: Path) -> Path:
    """stage1-sft: steps 1..4 (no rollouts: entropy/rollout logged as 0); stage2-rl: steps 1..3, evals at 0 and 3."""
    d = root / "sft_rl"
    s1, s2 = d / "stage1-sft", d / "stage2-rl"
    write_jsonl(s1 / "metrics.jsonl", [{"step": 0, "eval/b1/avg@4": 0.0}] + [
        {"step": s, "loss/sft": 5.0 - s, "mu": 1.0, "entropy/rollout": 0.0, "tokens/rollout": 0,
         "entropy/expert": 0.5, "tokens/expert": 100} for s in range(1, 5)])
    write_jsonl(s1 / "eval.jsonl", [{"step": s, "b1/avg@4": v, "overall/avg": v}
                                    for s, v in [(0, 0.0), (2, 0.2), (4, 0.4)]])
    (s1 / "stage_done.json").write_text('{"steps": 4}')
    write_jsonl(s2 / "metrics.jsonl", [{"step": 0, "eval/b1/avg@4": 0.4}] + [
        {"step": s, "reward/mean": r, "mu": 0.0, "entropy/rollout": e, "tokens/rollout": 30,
         "response/length_mean": 7.0} for s, r, e in [(1, 0.5, 0.9), (2, 0.6, 0.8), (3, 0.7, 0.6)]])
    write_jsonl(s2 / "eval.jsonl", [{"step": s, "b1/avg@4": v, "overall/avg": v} for s, v in [(0, 0.4), (3, 0.7)]])
    return d


def test_stage_offsets(tmp_path):
    run = load_run(make_staged(tmp_path))
    assert run.label == "sft_rl" and run.steps == 7
    assert [(s.name, s.start, s.end) for s in run.stages] == [("sft", 0, 4), ("rl", 4, 7)]
    assert run.boundaries == [(4, "rl")]
    train = [(int(r["step"]), r.get("reward/mean")) for r in run.rows if "mu" in r]
    assert train == [(1, None), (2, None), (3, None), (4, None), (5, 0.5), (6, 0.6), (7, 0.7)]
    assert [(int(r["step"]), r["b1/avg@4"]) for r in run.evals] == [(0, 0.0), (2, 0.2), (4, 0.4), (4, 0.4), (7, 0.7)]
    assert series(run.rows, "entropy/rollout") == ([5, 6, 7], [0.9, 0.8, 0.6])  # SFT zeros left out
    assert series(run.rows, "entropy/expert") == ([1, 2, 3, 4], [0.5] * 4)


def test_summaries_match_hand_values(tmp_path):
    runs = [load_run(make_chord(tmp_path)), load_run(make_staged(tmp_path))]
    benches = compare.benchmarks(runs)
    assert benches == ["b1/avg@4", "b2/avg@8"]
    a, b = (compare.summarize(r, "overall/avg", benches) for r in runs)
    assert a["benchmarks"]["b1/avg@4"] == {"start": 0.1, "best": 0.5, "best_step": 5, "final": 0.3}
    assert a["benchmarks"]["b2/avg@8"] == {"start": 0.2, "best": 0.6, "best_step": 10, "final": 0.6}
    assert a["metric"]["best"] == pytest.approx(0.45) and a["metric"]["best_step"] == 10
    assert a["reward_final"] == pytest.approx((19 / 20 + 20 / 20) / 2)  # last 10% of 20 steps
    assert a["entropy_final"] == pytest.approx(((1 - 19 / 50) + (1 - 20 / 50)) / 2)
    assert a["steps"] == 20 and a["stages"] == [] and a["skipped_lines"] == 2
    assert b["benchmarks"]["b1/avg@4"] == {"start": 0.0, "best": 0.7, "best_step": 7, "final": 0.7}
    assert b["benchmarks"]["b2/avg@8"] == {"start": None, "best": None, "best_step": None, "final": None}
    assert b["reward_final"] == pytest.approx(0.7) and b["entropy_final"] == pytest.approx(0.6)
    assert b["stages"] == [{"name": "sft", "start": 0, "end": 4}, {"name": "rl", "start": 4, "end": 7}]


def test_best_ties_take_earliest_and_length_is_lower_better():
    run = Run("r", Path("."), evals=[{"step": s, "b/avg@4": v, "b/length_mean": n}
                                     for s, v, n in [(0, 0.2, 9.0), (3, 0.5, 4.0), (6, 0.5, 4.0), (9, 0.1, 5.0)]])
    assert eval_stats(run, "b/avg@4") == {"start": 0.2, "best": 0.5, "best_step": 3, "final": 0.1}
    assert eval_stats(run, "b/length_mean") == {"start": 9.0, "best": 4.0, "best_step": 3, "final": 5.0}


def test_malformed_lines_skipped_and_duplicates_last_wins(tmp_path):
    p = tmp_path / "m.jsonl"
    write_jsonl(p, [{"step": 1, "x": 1.0}, {"step": 2, "x": 2.0}, {"step": 1, "x": 3.0, "s": "text"}],
                extra=("not json", "[1, 2]", '{"step": "3"}', '{"step": true}', "", '{"step": 4, "x": NaN}'))
    rows, bad = read_jsonl(p)
    assert bad == 4
    assert rows == [{"step": 1, "x": 3.0}, {"step": 2, "x": 2.0}, {"step": 4}]


def test_formatting():
    assert compare.fmt(0.4567, "b1/avg@4") == "45.7%"
    assert compare.fmt(0.25, "overall/pass") == "25.0%"
    assert compare.fmt(1.0, "aime/pass@32") == "100.0%"
    assert compare.fmt(0.05, "overall/truncated_frac") == "5.0%"
    assert compare.fmt(0.3, "overall/avg") == "30.0%"
    assert compare.fmt(12.3456, "overall/length_mean") == "12.346"
    assert compare.fmt(-0.1) == "-0.100"
    assert compare.fmt(None, "b1/avg@4") == compare.fmt(None) == "—"


def test_ema_matches_hand_computation():
    assert compare.ema([1.0, 0.0, 0.0, 4.0], 0.5) == pytest.approx([1.0, 0.5, 0.25, 2.125])
    assert compare.ema([2.0, 6.0], 0.75) == pytest.approx([2.0, 0.75 * 2.0 + 0.25 * 6.0])
    assert compare.ema([3.0, 1.0, 2.0], 0.0) == [3.0, 1.0, 2.0]
    assert compare.ema([], 0.6) == []


def test_main_writes_table_json_and_pngs(tmp_path, capsys):
    out = tmp_path / "out"
    a, b = make_chord(tmp_path), make_staged(tmp_path)
    assert compare.main([f"{a}=CHORD", str(b), "--out", str(out)]) == 0
    md = (out / "comparison.md").read_text()
    row_a = next(line for line in md.splitlines() if line.startswith("| CHORD |"))
    cells_a = [c.strip() for c in row_a.strip("|").split("|")]
    assert cells_a == ["CHORD", "20", "—", "10.0%", "50.0% (step 5)", "30.0%", "20.0%", "60.0% (step 10)", "60.0%",
                       "45.0% (step 10)", "45.0%", "0.975", "0.610"]
    row_b = next(line for line in md.splitlines() if line.startswith("| sft_rl |"))
    cells_b = [c.strip() for c in row_b.strip("|").split("|")]
    assert cells_b == ["sft_rl", "7", "sft 0–4; rl 4–7", "0.0%", "70.0% (step 7)", "70.0%", "—", "—", "—",
                       "70.0% (step 7)", "70.0%", "0.700", "0.600"]
    assert "Malformed lines skipped: CHORD: 2" in md and "How to read" in md
    data = json.loads((out / "comparison.json").read_text())
    assert data["metric"] == "overall/avg" and [r["label"] for r in data["runs"]] == ["CHORD", "sft_rl"]
    runs = [load_run(a, "CHORD"), load_run(b)]
    assert data["runs"] == [compare.summarize(r, "overall/avg", ["b1/avg@4", "b2/avg@8"]) for r in runs]
    pngs = ["eval_overall_avg.png", "eval_b1_avg@4.png", "eval_b2_avg@8.png", "train_reward.png",
            "train_entropy.png", "train_length.png", "train_mu.png"]
    assert sorted(p.name for p in out.glob("*.png")) == sorted(pngs)
    for name in pngs:
        blob = (out / name).read_bytes()
        assert blob[:8] == PNG_MAGIC and len(blob) > 5000, name
        assert f"`{name}`" in md
    assert "- skipped:" not in md
    assert "comparison.md" in capsys.readouterr().out


def test_missing_metrics_skip_plots(tmp_path):
    d = tmp_path / "sft_only"  # no reward, entropy, length; --metric named as TensorBoard names it (eval/...)
    write_jsonl(d / "metrics.jsonl",
                [{"step": s, "mu": 1.0, "loss/sft": 1.0} for s in (1, 2)] + [{"step": 3, "mu": 1.0}])
    write_jsonl(d / "eval.jsonl", [{"step": 0, "b1/avg@4": 0.25, "overall/avg": 0.25}, {"step": 3, "overall/avg": 0.5}])
    out = tmp_path / "out"
    assert compare.main([str(d), "--out", str(out), "--metric", "eval/overall/avg"]) == 0
    data = json.loads((out / "comparison.json").read_text())["runs"][0]
    assert data["metric"] == {"name": "overall/avg", "start": 0.25, "best": 0.5, "best_step": 3, "final": 0.5}
    assert data["reward_final"] is None and data["entropy_final"] is None
    md = (out / "comparison.md").read_text()
    assert "skipped: train_reward.png: no run logs `reward/mean`" in md
    assert "skipped: train_entropy.png" in md and "skipped: train_length.png" in md
    assert not (out / "train_reward.png").exists() and (out / "train_mu.png").exists()
    assert (out / "eval_overall_avg.png").exists() and (out / "eval_b1_avg@4.png").exists()
    assert "| — | — |" in md  # reward and entropy columns


def test_folder_without_metrics_exits_2(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("x")
    out = tmp_path / "out"
    assert compare.main([str(empty), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"compare: {empty}: no metrics.jsonl and no stage folders\n"
    assert not out.exists()
    assert compare.main([str(tmp_path / "nope"), "--out", str(out)]) == 2


def test_phases_table(tmp_path):
    """CHORD: shift, readapt, overfit; SFT-then-RL: the RL stage's fall is no overfit (no expert loss); GRPO: none."""
    def ev(pts):
        return [{"step": s, "id/avg@4": a, "id/problems": 500.0} for s, a in pts]

    curve = [0.30, 0.20, 0.18, 0.22, 0.35, 0.40, 0.42, 0.41, 0.33, 0.30]  # SE ~ 0.01 at 500 x 4 samples
    chord = tmp_path / "chord"
    write_jsonl(chord / "eval.jsonl", ev(zip(range(0, 100, 10), curve)))
    write_jsonl(chord / "metrics.jsonl", [{"step": s, "mu": 0.5, "tokens/expert": 64, "sft/expert_logp": -3 + s / 100}
                                          for s in range(1, 91)])
    staged = tmp_path / "sft_rl"
    write_jsonl(staged / "stage1-sft" / "eval.jsonl", ev(zip(range(0, 50, 10), curve[:5])))
    write_jsonl(staged / "stage1-sft" / "metrics.jsonl", [{"step": s, "mu": 1.0, "tokens/expert": 64,
                                                           "loss/sft": 3 - s / 100} for s in range(1, 41)])
    write_jsonl(staged / "stage2-rl" / "eval.jsonl", ev(zip(range(0, 60, 10), [0.35] + curve[5:])))
    write_jsonl(staged / "stage2-rl" / "metrics.jsonl", [{"step": s, "mu": 0.0, "tokens/expert": 0, "loss/sft": 0.0,
                                                          "reward/mean": 0.5} for s in range(1, 51)])
    grpo = tmp_path / "grpo"
    write_jsonl(grpo / "eval.jsonl", ev(zip(range(0, 100, 10), curve)))
    write_jsonl(grpo / "metrics.jsonl", [{"step": s, "mu": 0.0, "reward/mean": 0.5} for s in range(1, 91)])
    out = tmp_path / "out"
    assert compare.main([f"{chord}=CHORD", str(staged), str(grpo), "--out", str(out)]) == 0
    md = (out / "comparison.md").read_text()
    table = md[md.index("## Phases"):md.index("## Plots")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[4:] if line.startswith("|")]
    assert rows == [["CHORD", "id", "10", "40", "80"], ["sft_rl", "id", "10", "40", "—"],
                    ["grpo", "—", "—", "—", "—"]]


def _tiny_model(path: Path, seed: int) -> Path:
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    Qwen2ForCausalLM(cfg).save_pretrained(path)
    return path


def test_spectrum_section_diagnoses_each_final_model_against_the_start(tmp_path, capsys):
    start = _tiny_model(tmp_path / "start", 0)
    run = make_chord(tmp_path)
    _tiny_model(run / "final", 1)  # a different model: angles well above zero
    same = make_staged(tmp_path)
    import shutil

    shutil.copytree(start, same / "stage2-rl" / "final")  # the last stage's final equals the start: zero change
    out = tmp_path / "cmp"
    assert compare.main([f"{run}=CHORD", f"{same}=SAME", "--out", str(out), "--spectrum", str(start)]) == 0
    text = (out / "comparison.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines()
            if line.startswith(("| CHORD", "| SAME"))}
    chord_row = rows["CHORD"].split(" | ")
    same_row = rows["SAME"].split(" | ")
    assert float(same_row[1]) == 0.0 and float(same_row[2]) == 0.0  # identical weights: no drift, no rotation
    assert float(chord_row[2]) > 10.0  # independent random inits: far from zero
    assert (out / "spectrum" / "CHORD" / "summary.md").exists()
    assert compare.main([str(run), "--out", str(out), "--spectrum", str(tmp_path / "nope")]) == 2
    assert "--spectrum" in capsys.readouterr().err

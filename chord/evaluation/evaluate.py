"""Evaluation with the rollout engine: avg@k, pass@k, response length and truncation per benchmark.

Used during training (`eval.every`: rank 0's engine, holding the current weights) and by
`python -m chord.eval`. Each problem gets k samples (seeded per evaluation step and problem, so
a re-run evaluation samples the same tokens); the recipe's reward grades them and a sample counts
as solved when the reward's `correct` component is 1 (else when the reward is >= 1), so format and
over-length penalties never change accuracy. Per benchmark:
    avg@k           mean accuracy over all n x k samples (the paper's metric, docs/algorithm.md#paper-math-setting)
    pass@k          unbiased estimator (chord.evaluation.metrics), mean over problems; also pass@1, 2, 4, ... < k
                    from the same k samples (chord.evaluation.exploration.pass_at_k_curve): a policy that
                    explores keeps pass@j rising with j
    distinct_2      distinct bigrams / all bigrams of a problem's k responses (token ids), mean over problems
    length_mean     mean response length in tokens;  truncated_frac: share cut at max_new_tokens
and `overall/*`: the unweighted mean over benchmarks (each benchmark counts once, like a paper's
"Avg." column). Results go to eval.jsonl, eval.md (a markdown table of every evaluation so far)
and, with eval.save_samples, every response to eval/samples_step_N.jsonl.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chord import faults
from chord.config import EVAL_STATS, BenchmarkConfig, ChordConfig, EvalConfig, pass_ks
from chord.data.loading import DataError, build_prompt_examples, load_rows
from chord.distributed.exchange import gather_floats, gather_objects, shard
from chord.evaluation.exploration import distinct_n, pass_at_k_curve
from chord.evaluation.metrics import summarize
from chord.logger import atomic_write_text, say
from chord.rewards import RewardFn, is_correct, score_all
from chord.rollout.placement import EngineSlot
from chord.tasks import builtin_source
from chord.types import PromptExample, Sampling

PROMPT_COLUMNS = ("problem", "Problem", "question", "Question", "prompt", "query")
ANSWER_COLUMNS = ("answer", "Answer", "final_answer", "expected_answer")


@dataclass
class Benchmark:
    name: str
    problems: list[PromptExample]
    k: int
    summary: str  # rows kept / skipped, for the log


def _column(columns: Sequence[str], given: str | None, candidates: tuple[str, ...], what: str, name: str) -> str:
    if given is not None:
        if given not in columns:
            raise DataError(f"benchmark '{name}': no column '{given}' (columns: {', '.join(columns)})")
        return given
    for c in candidates:
        if c in columns:
            return c
    raise DataError(f"benchmark '{name}': no {what} column among {', '.join(columns)}; set "
                    f"eval.benchmarks[].{what}_column")


def load_benchmark(b: BenchmarkConfig, tokenizer: Any, *, k: int, system_prompt: str | None,
                   max_prompt_length: int, max_bad_fraction: float,
                   resolve: Callable[[str], str] = lambda s: s) -> Benchmark:
    """Read a benchmark (local file or hub id, columns detected) as chat-templated prompts."""
    ds = load_rows(resolve(b.source), b.split, b.subset, b.revision)
    cols = list(ds.column_names)
    prompt_col = _column(cols, b.prompt_column, PROMPT_COLUMNS, "prompt", b.name)
    answer_col = _column(cols, b.answer_column, ANSWER_COLUMNS, "answer", b.name)
    if b.max_problems is not None:
        ds = ds.select(range(min(b.max_problems, len(ds))))
    items, report = build_prompt_examples(ds, tokenizer, prompt_column=prompt_col, answer_column=answer_col,
                                          system_prompt=system_prompt, max_prompt_length=max_prompt_length,
                                          max_bad_fraction=max_bad_fraction, name=f"benchmark {b.name}")
    return Benchmark(b.name, items, b.k or k, report.summary())


def _distinct_2(rollouts: Sequence[Any]) -> list[float]:
    """distinct-2 of each problem's responses (token ids), one float per problem in rollout order."""
    groups: dict[int, list[list[int]]] = {}
    for r in rollouts:
        groups.setdefault(r.group, []).append(r.response_ids)
    return [distinct_n(g, 2) for g in groups.values()]


def evaluate(engine: Any, benchmarks: Sequence[Benchmark], reward_fn: RewardFn, *, step: int,
             sampling: Sampling, engine_slot: EngineSlot | None = None,
             keep_samples: bool = True) -> tuple[dict[str, float], list[dict]]:
    """Generate k samples per problem, grade them; returns (metrics, per-sample rows).

    engine_slot = this rank's EngineSlot (chord.rollout.placement): collective; each engine generates and grades a
    contiguous share of every benchmark's problems (seeded by the problem's index, as one engine would) and the
    graded results are gathered, so every rank returns what a single engine would have measured."""
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    for b in benchmarks:
        slots = range(len(b.problems)) if engine_slot is None else shard(len(b.problems), engine_slot.count,
                                                                             engine_slot.index)
        # negative step: evaluation seeds never coincide with a training step's rollout seeds
        rollouts = engine.generate([b.problems[i] for i in slots], b.k, -1 - step, sampling=sampling,
                                   slots=slots) if slots else []  # more engines than problems: some get none
        answers = [b.problems[r.group].answer for r in rollouts]
        scores = score_all(reward_fn, [r.response_text for r in rollouts], answers, [r.truncated for r in rollouts],
                           [b.problems[r.group].extra for r in rollouts])
        correct = [float(is_correct(s, i)) for s, i in zip(scores.rewards, scores.info, strict=True)]
        lengths = [float(len(r.response_ids)) for r in rollouts]
        truncated = [float(r.truncated) for r in rollouts]
        distinct = _distinct_2(rollouts)
        errors = float(scores.errors)
        mine = [{"benchmark": b.name, "problem": b.problems[r.group].index, "sample": j % b.k,
                 "prompt": b.problems[r.group].prompt_text, "answer": a, "response": r.response_text,
                 "correct": bool(c), "reward": s, "truncated": r.truncated, "length": len(r.response_ids)}
                for j, (r, a, c, s) in enumerate(zip(rollouts, answers, correct, scores.rewards, strict=True))
                ] if keep_samples else []
        if engine_slot is not None:  # graded numbers as tensors, in problem order (shards are contiguous, rank-ordered)
            reports = engine_slot.reports
            correct, lengths, truncated, distinct = (gather_floats(x if reports else [])
                                                     for x in (correct, lengths, truncated, distinct))
            errors = sum(gather_floats([errors] if reports else []))
            mine = gather_objects(mine if reports else []) if keep_samples else []
        per_problem = [[bool(c) for c in correct[i * b.k:(i + 1) * b.k]] for i in range(len(b.problems))]
        acc = summarize(per_problem, b.k)
        metrics.update({f"{b.name}/{key}": v for key, v in acc.items()})
        curve = pass_at_k_curve(per_problem, b.k)
        metrics.update({f"{b.name}/pass@{j}": curve[j - 1] for j in pass_ks(b.k)[:-1]})  # pass@k: above
        metrics[f"{b.name}/distinct_2"] = sum(distinct) / len(distinct)
        metrics[f"{b.name}/length_mean"] = sum(lengths) / len(lengths)
        metrics[f"{b.name}/truncated_frac"] = sum(truncated) / len(truncated)
        metrics[f"{b.name}/problems"] = float(len(b.problems))
        metrics[f"{b.name}/reward_errors"] = errors
        rows += mine
    if benchmarks:
        n = len(benchmarks)
        metrics["overall/avg"] = sum(metrics[f"{b.name}/avg@{b.k}"] for b in benchmarks) / n
        metrics["overall/pass"] = sum(metrics[f"{b.name}/pass@{b.k}"] for b in benchmarks) / n
        for stat in EVAL_STATS:
            metrics[f"overall/{stat}"] = sum(metrics[f"{b.name}/{stat}"] for b in benchmarks) / n
    return metrics, rows


def sampling_for(ev: EvalConfig, rollout_max_new_tokens: int) -> Sampling:
    return Sampling(ev.temperature, ev.top_p, ev.max_new_tokens or rollout_max_new_tokens)


def _cell(record: dict, key: str) -> str:
    if key not in record:
        return ""
    percent = key.split("/")[-1].startswith(("avg", "pass", "truncated"))
    return f"{100 * record[key]:.1f}" if percent else f"{record[key]:.1f}"


def markdown_table(records: Sequence[dict]) -> str:
    """One row per evaluation: each benchmark's avg@k and pass@k, then the overall columns."""
    if not records:
        return ""
    avg = [k for k in records[-1] if k != "step" and "avg@" in k]
    keys = [x for k in avg for x in (k, k.replace("/avg@", "/pass@"))]  # not the pass@j < k curve
    keys += [k for k in ("overall/avg", "overall/pass", "overall/length_mean", "overall/truncated_frac")
             if k in records[-1]]
    lines = ["| step | " + " | ".join(keys) + " |", "|---:|" + "---:|" * len(keys)]
    for r in records:
        lines.append(f"| {r['step']} | " + " | ".join(_cell(r, k) for k in keys) + " |")
    return "\n".join(lines) + ("\n\n(avg@k, pass@k and truncated_frac in %; length in tokens; "
                               "overall = mean over benchmarks)\n")


def write_results(out_dir: Path, step: int, metrics: dict[str, float], samples: list[dict] | None) -> None:
    """Append to eval.jsonl, rewrite eval.md from it, and optionally dump the samples."""
    out_dir.mkdir(parents=True, exist_ok=True)
    log = out_dir / "eval.jsonl"
    faults.fs_fault("eval", step, log)  # tests only
    with open(log, "a") as f:
        f.write(json.dumps({"step": step, **metrics}, sort_keys=True) + "\n")
    records = [json.loads(line) for line in log.read_text().splitlines() if line]
    atomic_write_text(out_dir / "eval.md", markdown_table(records))
    if samples is not None:
        (out_dir / "eval").mkdir(exist_ok=True)
        atomic_write_text(out_dir / "eval" / f"samples_step_{step}.jsonl",
                      "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in samples))


def better(value: float, best: float | None, mode: str) -> bool:
    return best is None or (value > best if mode == "max" else value < best)


def new_best(step: int, value: float, best: float | None, mode: str, includes_start: bool) -> bool:
    """Does this evaluation replace best/? Never at step 0 with eval.best_includes_start = false."""
    return (step > 0 or includes_start) and better(value, best, mode)


def build_benchmarks(cfg: ChordConfig, tokenizer: Any, quiet: bool = False) -> list:
    e, p = cfg.eval, cfg.data.prompts
    out = []
    for b in e.benchmarks:
        bench = load_benchmark(b, tokenizer, k=e.k, system_prompt=e.system_prompt or p.system_prompt,
                               max_prompt_length=e.max_prompt_length or p.max_prompt_length,
                               max_bad_fraction=e.max_bad_fraction,
                               resolve=lambda s: builtin_source(cfg, s, "eval"))
        if not quiet:
            say(f"{bench.summary}, k={bench.k}", main_only=False)
        out.append(bench)
    return out

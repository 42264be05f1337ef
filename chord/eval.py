"""Evaluate a model or a chord checkpoint on math benchmarks with vLLM: avg@k, pass@k, length, truncation.

    python -m chord.eval MODEL_OR_CHECKPOINT --data aime24=data/aime24.jsonl --data math500=HuggingFaceH4/MATH-500 \\
        --k 32 --max-new-tokens 10240 --out evals/my-model
    python -m chord.eval runs/tiny-chord-phi --recipe recipes/tiny_math.yaml        # the recipe's eval section

MODEL_OR_CHECKPOINT is a save_pretrained folder or hub id, a run folder (its latest checkpoint), or a
checkpoints/step_N folder (exported first, like `python -m chord.export`). Benchmarks are local
jsonl/json/parquet files or hub dataset ids; the prompt and answer columns are detected
(problem/Problem/question/prompt, answer/Answer/final_answer) or given. Outputs in --out:
eval.jsonl, eval.md (markdown table), tensorboard/, eval/samples_step_0.jsonl (every response).
Metric definitions: chord/evaluation/evaluate.py.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):  # launched as a script path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# vLLM is imported only when the engine is built (chord.rollout.vllm_engine, in main)
from chord.build import quiet_libraries, set_numerics
from chord.checkpoint import STATE
from chord.checkpoint.lock import RunFolderInUse, RunLock, holder
from chord.config import ChordConfig, ConfigError, load_config
from chord.config.versions import check_versions
from chord.data.loading import DataError
from chord.evaluation import build_benchmarks, evaluate, markdown_table, sampling_for, write_results
from chord.export import checkpoint_folder, export
from chord.logger import RunLogger, quiet_third_party
from chord.models.load import ModelError, load_tokenizer, resolve_model_path
from chord.rewards import RewardError, build_reward
from chord.rollout.placement import engine_mode
from chord.trackers import TensorBoard


def _benchmark(spec: str, a: argparse.Namespace) -> dict:
    name, sep, source = spec.partition("=")
    if not sep:  # a name from the file stem or the hub id's last part
        source = spec
        name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(spec).stem if Path(spec).suffix else spec.rsplit("/", 1)[-1])
    extra = {k: getattr(a, k) for k in ("prompt_column", "answer_column", "max_problems") if getattr(a, k) is not None}
    return {"name": name, "source": source, "split": a.split, **extra}


def build_config(a: argparse.Namespace) -> ChordConfig:
    """The recipe (if any) <- flags, through the same typed schema and checks as training."""
    flags = {"k": "eval.k", "temperature": "eval.temperature", "top_p": "eval.top_p",
             "max_new_tokens": "eval.max_new_tokens", "max_prompt_length": "eval.max_prompt_length",
             "system_prompt": "eval.system_prompt", "reward": "reward.name", "seed": "run.seed",
             "dtype": "model.dtype", "tensor_parallel_size": "rollout.tensor_parallel_size",
             "gpu_memory_utilization": "rollout.gpu_memory_utilization"}
    overrides = [f"{key}={json.dumps(getattr(a, flag))}" for flag, key in flags.items() if getattr(a, flag) is not None]
    if a.data:  # replaces the recipe's benchmark list
        overrides.append("eval.benchmarks=" + json.dumps([_benchmark(spec, a) for spec in a.data]))
    cfg = load_config(a.recipe, overrides + (a.set or []))
    if a.k is not None:  # --k applies to every benchmark, also those whose recipe entry names a k
        for b in cfg.eval.benchmarks:
            b.k = None
    if not cfg.eval.benchmarks:
        raise ConfigError("no benchmarks: give --data NAME=FILE_OR_HUB_ID or a --recipe with eval.benchmarks")
    return cfg


def resolve_model(target: str, out: Path, cfg: ChordConfig) -> str:
    """A model folder or hub id as is; a chord run or checkpoint folder is exported into out/model."""

    p = Path(target)
    if p.is_dir() and ((p / STATE).is_file() or (p / "checkpoints").is_dir()):

        ckpt = checkpoint_folder(p)
        print(f"chord.eval: exporting {ckpt} -> {out / 'model'}", file=sys.stderr)
        return str(export(ckpt, out / "model"))
    return resolve_model_path(target, cfg.model.cache_dir)


RUN_MARKERS = ("checkpoints", "config.yaml", "stage_done.json")  # what a training run (or stage) folder holds


def check_out_dir(out: Path) -> None:
    """--out replaces the folder's eval.jsonl and metrics.jsonl: never a training run's (or stage's) own."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file, not a folder")
    folders = [out, *(p for p in out.glob("stage*") if p.is_dir())] if out.is_dir() else []
    for folder in folders:
        if (who := holder(folder)) is not None:  # a live trainer (or evaluation) writes there
            raise RunFolderInUse(f"--out {folder} is in use by {who}; choose another folder")
        marker = next((m for m in RUN_MARKERS if (folder / m).exists()), None)
        if marker is not None:
            raise ConfigError(f"--out {out} is a training run's folder ({folder / marker} exists): its eval.jsonl "
                              f"and metrics.jsonl would be replaced; choose another folder, e.g. --out {out / 'evals'}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chord.eval", description=__doc__.splitlines()[0])
    p.add_argument("model", help="model folder / hub id, chord run folder, or checkpoints/step_N folder")
    p.add_argument("--data", action="append", help="[NAME=]FILE_OR_HUB_ID, repeatable")
    p.add_argument("--recipe", help="take eval.*, reward.* and rollout.* settings from a recipe")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any dotted recipe override")
    p.add_argument("--split", default="test")
    p.add_argument("--prompt-column")
    p.add_argument("--answer-column")
    p.add_argument("--max-problems", type=int)
    p.add_argument("--k", type=int)
    p.add_argument("--temperature", type=float)
    p.add_argument("--top-p", type=float)
    p.add_argument("--max-new-tokens", type=int)
    p.add_argument("--max-prompt-length", type=int)
    p.add_argument("--system-prompt")
    p.add_argument("--reward", help="built-in name or package.module:function (default: the recipe's, else math)")
    p.add_argument("--seed", type=int)
    p.add_argument("--dtype", choices=("float32", "bfloat16"))
    p.add_argument("--tensor-parallel-size", type=int)
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--out", type=Path, default=Path("evals/latest"))
    p.add_argument("--no-samples", action="store_true", help="do not write every response")
    a = p.parse_args(argv)
    if a.reward is None and a.recipe is None:
        a.reward = "math"

    try:
        check_out_dir(a.out)
        cfg = build_config(a)
        return run(cfg, a.model, a.out, samples=not a.no_samples)
    except (ConfigError, DataError, ModelError, RewardError) as e:
        print(f"chord.eval: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


def run(cfg: ChordConfig, target: str, out: Path, samples: bool = True) -> int:
    from chord.rollout.vllm_engine import VLLMEngine

    if warning := check_versions(["vllm"], cfg.run.allow_untested_versions):
        print(f"chord.eval: {warning}", file=sys.stderr)
    # tensor parallel needs vLLM's multiprocess executor: an in-process one would wait for its peers
    _, multiprocess = engine_mode(cfg, world=1)
    quiet_third_party(cfg.logging.verbose)
    set_numerics(cfg)
    quiet_libraries()
    reward_fn = build_reward(cfg.reward)
    lock = RunLock(out, "chord.eval")  # one writer per --out folder (a trainer holds its run folder so too)
    for name in ("eval.jsonl", "metrics.jsonl"):  # one evaluation per output folder (check_out_dir)
        (out / name).unlink(missing_ok=True)
    model_path = resolve_model(target, out, cfg)
    m = cfg.model
    benchmarks = build_benchmarks(cfg, load_tokenizer(model_path, m.chat_template, m.chat_template_kwargs, chat=True))
    e = cfg.eval
    sampling = sampling_for(e, cfg.rollout.max_new_tokens)
    max_len = max(len(x.prompt_ids) for b in benchmarks for x in b.problems) + sampling.max_new_tokens
    engine = VLLMEngine(model_path, cfg.rollout, seed=cfg.run.seed, dtype=cfg.model.dtype, max_model_len=max_len,
                        multiprocess=multiprocess)
    try:
        metrics, rows = evaluate(engine, benchmarks, reward_fn, step=0, sampling=sampling)
    finally:
        engine.close()
        if callable(getattr(reward_fn, "close", None)):
            reward_fn.close()
    write_results(out, 0, metrics, rows if samples else None)
    logger = RunLogger(out, enabled=True, trackers=[TensorBoard(out)])
    logger.log(0, {f"eval/{k}": v for k, v in metrics.items()})
    logger.close()
    print(f"model: {target}\n\n" + markdown_table([{"step": 0, **metrics}]))
    print(f"chord.eval: results in {out} (eval.jsonl, eval.md, tensorboard/)", file=sys.stderr)
    lock.release()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Typed recipe schema and its validation (recipes are read by chord.config.recipe.load_config: YAML + overrides).

Defaults live here and only here. Unknown keys, wrong types and impossible values fail before any
work with a one-line `ConfigError` naming the dotted key (train.py turns it into exit status 2).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf


class ConfigError(ValueError):
    """A bad recipe or override; the message is one line and names the dotted key."""


@dataclass
class RunConfig:
    name: str = "chord"  # the progress bar's label and run.output_dir's default folder name
    output_dir: str = "runs/${run.name}"  # checkpoints, metrics.jsonl, TensorBoard events
    seed: int = 0  # seeds torch, data order and vLLM sampling
    # process-group timeout (every init_process_group, the re-created one too). NCCL's own default is 10 min;
    # ranks wait that long on rank 0 while it alone evaluates or exports best/ (rollout.placement: rank0).
    dist_timeout_minutes: float = 120.0
    # vLLM and DeepSpeed outside the versions chord is tested with stop the run at start-up (exit 2);
    # true runs anyway, with a warning (docs/usage.md#gpu-clusters)
    allow_untested_versions: bool = False


@dataclass
class ModelConfig:
    path: str = "tiny"  # "tiny" | "cards" = a built-in Qwen2 built offline; else a hub id or local folder
    cache_dir: str = ".cache/chord"  # built-in models and task data are built here once (then read-only is fine)
    # a hub model's branch, tag or commit hash: its snapshot is what the learner, vLLM and the tokenizer load (a
    # moving hub id otherwise changes under a resume); null: the default branch. Hub ids only
    revision: str | None = None
    dtype: str = "float32"  # float32 | bfloat16 (log-probs are always computed in fp32)
    gradient_checkpointing: bool = False  # recompute layer activations in backward (long responses)
    # a Jinja chat template (text holding "{{" or "{%"), or a file holding one, for a tokenizer without one or
    # to replace its own; saved with final/ and best/. null: the tokenizer's template
    chat_template: str | None = None
    # extra variables for the chat template, e.g. {enable_thinking: false} for Qwen3
    chat_template_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PromptSourceConfig:
    """One source of data.prompts.mixture; a key left null takes data.prompts' value."""

    source: str = "???"  # a local json/jsonl/parquet/csv file or folder, builtin:<task>, or a hub id
    weight: float = 1.0  # its share of every batch: weight / the sum of the mixture's weights
    split: str | None = None  # null: data.prompts.split
    subset: str | None = None  # the hub dataset's config name (load_dataset's `name`), e.g. main
    revision: str | None = None  # pins the hub dataset: a commit sha, tag or branch
    prompt_column: str | None = None  # null: data.prompts.prompt_column
    answer_column: str | None = None  # null: data.prompts.answer_column


@dataclass
class ExpertSourceConfig:
    """One source of data.expert.mixture; columns left null take data.expert's (prompt_column and
    response_column set here replace an inherited messages_column)."""

    source: str = "???"  # a local json/jsonl/parquet/csv file or folder, builtin:<task>, or a hub id
    weight: float = 1.0  # its share of every batch: weight / the sum of the mixture's weights
    split: str | None = None  # null: data.expert.split
    subset: str | None = None  # the hub dataset's config name (load_dataset's `name`), e.g. main
    revision: str | None = None  # pins the hub dataset: a commit sha, tag or branch
    messages_column: str | None = None  # null: data.expert.messages_column (unless prompt/response are set here)
    prompt_column: str | None = None  # with response_column: TRL's prompt/completion form for this source
    response_column: str | None = None  # null: data.expert.response_column


@dataclass
class PromptDataConfig:
    # builtin:tiny|tiny_math|points24|cards, a local json/jsonl/parquet/csv file or folder, or a hub id;
    # null (or left at its default) with a mixture
    source: str | None = "builtin:tiny"
    split: str = "train"  # the split of a hub dataset or hub-layout folder (a local file is read whole)
    subset: str | None = None  # a hub dataset's config name (load_dataset's `name`, e.g. main for openai/gsm8k)
    revision: str | None = None  # pins a hub dataset: a commit sha, tag or branch; null: the newest
    # weighted sources instead of `source`, e.g. [{source: a.jsonl, weight: 0.7}, {source: b, weight: 0.3}]
    # (docs/usage.md#mixtures-of-sources); entries take this section's split and columns unless they set theirs
    mixture: list[PromptSourceConfig] = field(default_factory=list)
    prompt_column: str = "prompt"  # a string (one user message) or a list of chat messages
    # the ground truth; a dotted name reaches into nested objects (verl's parquet: reward_model.ground_truth)
    answer_column: str = "answer"
    system_prompt: str | None = None  # prepended as a system message (unless the row has one); null: none
    max_prompt_length: int = 128  # longer prompts are skipped and counted
    max_bad_fraction: float = 0.05  # abort if more rows than this are malformed (each mixture source on its own)
    # the row's columns a reward accepting `extra_info` receives (docs/usage.md#rewards); null: all but the
    # prompt and answer columns (a long unused column costs host memory on every rank: name the ones you need)
    extra_columns: list[str] | None = None


@dataclass
class ExpertDataConfig:
    source: str | None = "builtin:tiny"  # null: no expert data (pure GRPO), or a mixture's sources
    split: str = "train"  # the split of a hub dataset or hub-layout folder (a local file is read whole)
    subset: str | None = None  # a hub dataset's config name (load_dataset's `name`); null: its default
    revision: str | None = None  # pins a hub dataset: a commit sha, tag or branch; null: the newest
    # weighted sources instead of `source` (docs/usage.md#mixtures-of-sources); entries take this section's
    # split and columns unless they set theirs
    mixture: list[ExpertSourceConfig] = field(default_factory=list)
    messages_column: str | None = "messages"  # chat messages, last one from the assistant
    # alternative to messages: prompt + response columns, strings or message lists (TRL's prompt/completion)
    prompt_column: str | None = None
    response_column: str | None = None  # the expert response, with prompt_column (e.g. completion)
    system_prompt: str | None = None  # prepended as a system message (unless the row has one); null: none
    max_length: int = 256  # prompt + response tokens
    truncation: str = "drop"  # drop | truncate (keep the prompt, cut the response)
    max_bad_fraction: float = 0.05  # abort if more rows than this are malformed (each mixture source on its own)


@dataclass
class DataConfig:
    prompts: PromptDataConfig = field(default_factory=PromptDataConfig)
    expert: ExpertDataConfig = field(default_factory=ExpertDataConfig)


@dataclass
class RewardConfig:
    name: str = "tiny"  # a built-in name (see chord.rewards) or "package.module:function"
    # Options of the built-in `math` reward (chord.rewards.math_verifier.MathReward); other rewards warn if set.
    format_penalty: float = 0.0  # added when there is no \boxed{} answer or a malformed <think> block (e.g. -0.1)
    overlong_penalty: float = 0.0  # added to responses cut at rollout.max_new_tokens (e.g. -0.1)
    timeout_s: float = 2.0  # wall-clock budget per sample; a timeout scores 0 and is counted
    fallback: str = "none"  # none | last_number (when there is no \boxed{})
    # DAPO's soft overlong punishment (arXiv 2503.14476), any reward: a response longer than
    # rollout.max_new_tokens - overlong_buffer tokens loses up to overlong_buffer_penalty, linearly in the
    # tokens past that point (the whole penalty at the cap); 0: off
    overlong_buffer: int = 0
    overlong_buffer_penalty: float = 1.0  # the penalty at rollout.max_new_tokens (verl's penalty_factor)
    workers: int = 0  # verifier processes per rank; 0 = min(4, CPU cores / ranks on this node)


@dataclass
class MuConfig:
    """mu schedule, docs/algorithm.md#mu-schedule (W = D = 0 gives a constant = valley)."""

    peak: float = 0.1  # mu after warm-up, in [0, 1] (mu weighs the SFT loss, 1 - mu the RL loss)
    valley: float = 0.1  # mu after the decay, to the end of the run
    warmup_steps: int = 0  # W: mu rises linearly from 0 to peak over the first W steps
    decay_steps: int = 0  # D: then falls from peak to valley over D steps (cosine)


@dataclass
class AlgorithmConfig:
    mu: MuConfig = field(default_factory=MuConfig)
    # the SFT token weight w_t (docs/algorithm.md#sft-term): none | phi = p(1-p) (CHORD-phi) | is = p |
    # one_minus_p = 1-p (more weight on unlikely tokens: the CHORD authors' advice for base models) | power
    sft_weight: str = "phi"
    sft_weight_exponents: list[float] = field(default_factory=lambda: [1.0, 1.0])  # (a, b) of power: p^a (1-p)^b
    sft_cutoff_prob: float | None = None  # expert tokens the policy gives p above this get weight 0; null: none
    clip_eps_low: float = 0.2  # PPO clip: the ratio is clipped to [1 - clip_eps_low, 1 + clip_eps_high]
    clip_eps_high: float = 0.2  # set above clip_eps_low for DAPO's "clip-higher"
    dual_clip: float | None = None  # e.g. 3.0; applies to A < 0 only
    kl_coef: float = 0.0  # k3 KL to the frozen initial policy; 0 = off (paper default)
    entropy_coef: float = 0.0  # entropy bonus; entropy is always logged
    advantage_eps: float = 1e-6  # A = (R - group mean) / (group std + advantage_eps)
    # what divides R - group mean: group (its std: GRPO, the paper) | batch (the step's reward std, TRL's
    # scale_rewards=batch) | none (no division: Dr. GRPO, arXiv 2503.20783)
    scale_rewards: str = "group"
    # how each term's token losses become one number (docs/algorithm.md#loss-aggregation), over the whole step:
    # token-mean (every token alike) | seq-mean-token-mean (each response's mean, then the mean over responses) |
    # seq-mean-token-sum (each response's sum, then the mean); verl's loss_agg_mode
    loss_agg_mode: str = "token-mean"
    sft_loss_agg_mode: str | None = None  # the SFT term's; null: loss_agg_mode
    # DAPO's dynamic sampling, filter part (arXiv 2503.14476): drop prompt groups whose K rewards are all equal
    # (no GRPO signal) before advantages and token counts, as if never sampled
    filter_groups: bool = False
    # truncated importance sampling for the engine/learner mismatch (docs/algorithm.md#truncated-importance-sampling):
    # the GRPO token loss is weighted by min(p_learner / p_engine, tis_cap); null: off (PPO against the engine)
    tis_cap: float | None = None


@dataclass
class RolloutConfig:
    backend: str = "vllm"  # vllm (default) | hf (transformers generate, for comparison)
    max_new_tokens: int = 48  # response length cap in tokens; a response cut here counts as truncated
    temperature: float = 1.0  # sampling temperature (the learner's log-probs use the same one)
    top_p: float = 1.0  # nucleus sampling; below 1 the learner vs vLLM log-prob gap check is off
    # training rollouts run on past an EOS to max_new_tokens (vLLM's and verl's ignore_eos), so every response is
    # that long and marked truncated: fixed-length runs for speed measurements. Evaluation still stops at EOS
    ignore_eos: bool = False
    multiprocess: bool | None = None  # None (auto): an in-process engine at world size 1, its own process above
    enforce_eager: bool = True  # vLLM without CUDA graphs: faster start-up, slower decoding
    kv_cache_gib: float = 1.0  # VLLM_CPU_KVCACHE_SPACE on CPU
    gpu_memory_utilization: float = 0.4  # GPU: share the device with the learner
    tensor_parallel_size: int = 1  # GPUs per vLLM engine (tensor parallel)
    # rank0: one engine on rank 0 generates everything; per_rank: an engine in every rank (vLLM's
    # external_launcher) generates that rank's share of the prompt groups. auto: per_rank on CUDA with
    # several ranks, else rank0. What is sampled does not depend on it (seeds per global prompt slot).
    placement: str = "auto"
    # weights reach the engine in buckets of this size (ZeRO-3 gathers a bucket at once)
    weight_bucket_mb: float = 512.0
    # release the engine's weights and KV cache while the learner trains (vLLM sleep level 2), wake and
    # reload before generating. None (auto) = on exactly with per_rank on CUDA; a no-op on CPU.
    sleep_mode: bool | None = None
    # vLLM's batch-invariant kernels (VLLM_BATCH_INVARIANT=1; NVIDIA GPUs of compute capability >= 9.0):
    # what is sampled then does not depend on how requests are batched, as it never does on CPU in fp32
    batch_invariant: bool = False


@dataclass
class TrainerConfig:
    steps: int = 60  # optimizer steps; each takes B x K rollouts and E expert rows
    epochs: float | None = None  # if set, overrides steps: passes over the expert rows (pure SFT) or prompts
    prompts_per_step: int = 16  # B
    samples_per_prompt: int = 8  # K
    expert_per_step: int = 16  # E
    micro_batch_size: int = 32  # rows per micro-batch per rank (right-padded), when no token budget is set
    # Token budget per micro-batch per rank (null: micro_batch_size rows). Rows are balanced across ranks
    # by length and packed first-fit-decreasing into micro-batches of at most this many tokens; must hold
    # the longest possible row (prompt + max_new_tokens, or data.expert.max_length).
    max_tokens_per_micro_batch: int | None = None
    packing: bool = True  # with a token budget: rows concatenated padding-free (false: right-padded bins)
    lr: float = 1e-3  # AdamW learning rate: the peak, reached after lr_warmup_steps (see lr_schedule)
    weight_decay: float = 0.01  # AdamW (decoupled) weight decay
    adam_beta1: float = 0.9  # AdamW first-moment decay
    adam_beta2: float = 0.999  # AdamW second-moment decay
    adam_eps: float = 1e-8  # AdamW denominator epsilon
    lr_warmup_steps: int = 0  # the learning rate rises linearly to lr over this many steps
    lr_schedule: str = "constant"  # constant | cosine
    grad_clip: float = 1.0  # maximum global gradient norm (DeepSpeed's gradient_clipping)
    max_logprob_gap: float = 1e-3  # fp32 only: stop if learner and vLLM disagree (stale weights)
    save_at_end: bool = True  # a checkpoint and the final/ export after the last step
    save_every: int = 0  # checkpoint every N steps (0: only at the end and on SIGTERM/SIGINT)
    keep_last: int = 3  # complete checkpoints kept; older ones are deleted
    resume: str = "auto"  # auto (latest complete checkpoint in run.output_dir, if any) | none | PATH
    max_nonfinite_steps: int = 3  # NaN/Inf loss or grad norm skips the step; this many in a row abort


@dataclass
class LossImplConfig:
    impl: str = "torch"  # torch (full fp32 logits) | chunked | triton | auto (triton on CUDA): same loss, other speed
    chunk_size: int = 1024  # tokens per chunk of the chunked and triton losses


@dataclass
class BenchmarkConfig:
    """One evaluation set: problems with ground-truth answers (AIME, AMC, MATH-500 layouts)."""

    name: str = "???"  # metric prefix: eval/<name>/avg@k ...
    # builtin:tiny|tiny_math|points24|points24_ood|cards|cards_ood | local jsonl/json/parquet | hub id
    source: str = "???"
    split: str = "test"  # the split of a hub dataset or hub-layout folder (a local file is read whole)
    subset: str | None = None  # the hub dataset's config name (load_dataset's `name`), e.g. main for openai/gsm8k
    revision: str | None = None  # pins the hub dataset: a commit sha, tag or branch; null: the newest
    prompt_column: str | None = None  # null: the first of problem, Problem, question, Question, prompt, query
    answer_column: str | None = None  # null: the first of answer, Answer, final_answer, expected_answer
    k: int | None = None  # samples per problem; null: eval.k
    max_problems: int | None = None  # the first N problems only (quick periodic evaluation)


@dataclass
class EvalConfig:
    """Evaluation with the rollout engine: avg@k, pass@k (unbiased), length, truncation rate."""

    benchmarks: list[BenchmarkConfig] = field(default_factory=list)  # evaluation sets; empty: no evaluation
    every: int = 0  # evaluate every N training steps (0: not during training)
    # and at these steps too (e.g. [5, 10, 20, 40]: dense early, where SFT's shift happens; docs/benchmark.md)
    at_steps: list[int] = field(default_factory=list)
    at_start: bool = False  # also evaluate the initial weights (logged as step 0)
    at_end: bool = True  # evaluate after the last step (when benchmarks are set)
    k: int = 4  # samples per problem (paper: avg@32 AIME, avg@8 AMC)
    temperature: float = 1.0  # paper: temperature 1.0
    top_p: float = 1.0  # nucleus sampling for evaluation
    max_new_tokens: int | None = None  # null: rollout.max_new_tokens
    max_prompt_length: int | None = None  # null: data.prompts.max_prompt_length
    system_prompt: str | None = None  # null: data.prompts.system_prompt
    max_bad_fraction: float = 0.0  # skipped problems change the benchmark: fail by default
    # selects checkpoints/best: overall/avg|pass|length_mean|... or <bench>/avg@k|pass@j|distinct_2
    best_metric: str = "overall/avg"
    best_mode: str = "max"  # max | min
    # false: the step-0 evaluation (the starting weights) never becomes best/, so an SFT stage's best/ is an
    # SFT checkpoint even when SFT never beats its start (the paper's "SFT-best", not the base model)
    best_includes_start: bool = True
    save_samples: bool = False  # every response with its score in eval/samples_step_N.jsonl


@dataclass
class DeepSpeedConfig:
    zero_stage: int = 0  # 0 | 1 | 2 | 3 (3 partitions the parameters across ranks)
    bf16: bool = False  # DeepSpeed bf16 mixed precision (the fp32 log-prob gap check is then off)
    config_path: str | None = None  # a DeepSpeed JSON; overrides zero_stage and bf16


@dataclass
class LoggingConfig:
    # Where step metrics go besides metrics.jsonl (always written): any of tensorboard (run.output_dir/tensorboard),
    # wandb, mlflow; [] for none. wandb and mlflow need `pip install -e '.[trackers]'`; the entity, mode (offline)
    # and API key come from WANDB_ENTITY / WANDB_MODE / WANDB_API_KEY (docs/usage.md#trackers)
    trackers: list[str] = field(default_factory=lambda: ["tensorboard"])
    project: str = "chord"  # the wandb project and the mlflow experiment the run is logged to (its name: run.name)
    # mlflow's tracking server (http://host:5000) or a folder (file:///abs/path); null: MLFLOW_TRACKING_URI, else
    # mlflow's default (sqlite:///mlflow.db, which needs the full `mlflow` package rather than mlflow-skinny)
    tracking_uri: str | None = None
    progress_bar: bool = True  # a tqdm bar on rank 0
    save_rollouts: bool = False  # every step's scored rollouts to rollouts/step_N.jsonl (rank 0), wandb/mlflow tables
    verbose: bool = False  # also vLLM's, DeepSpeed's and torch's info and warning lines (off: chord's own only)


@dataclass
class HubConfig:
    """An export pushed to the Hugging Face Hub after a finished run (docs/usage.md#pushing-to-the-hub)."""

    # none | final | best: the export pushed after a finished run (a staged recipe: its last stage's); a failed
    # push is one warning line, the run still exits 0. Cards go into final/ and best/ either way
    push: str = "none"
    repo_id: str | None = None  # owner/name, or name (under the token's user); created if missing
    private: bool = True  # a repo that chord creates is private (an existing repo keeps its visibility)
    revision: str | None = None  # the branch to push to, created from main if missing; null: main


@dataclass
class ChordConfig:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    loss: LossImplConfig = field(default_factory=LossImplConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    hub: HubConfig = field(default_factory=HubConfig)
    # A staged recipe (e.g. SFT then RL): each entry is {name, method: sft|grpo|chord, init: final|best}
    # plus recipe sections that change for that stage; see chord/config/stages.py. Empty: one stage.
    stages: list[Any] = field(default_factory=list)


def check_keys(node: Any, schema: type, prefix: str) -> None:
    """Reject unknown keys with their dotted path and the nearest valid name."""
    if not isinstance(node, (dict, DictConfig)):
        return
    fields = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        path = f"{prefix}{key}"
        if key not in fields and path in RENAMED:
            raise ConfigError(f"'{path}' was replaced by {RENAMED[path]}")
        if key not in fields:
            near = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f" (did you mean '{prefix}{near[0]}'?)" if near else f" (valid: {', '.join(fields)})"
            raise ConfigError(f"unknown key '{path}'{hint}")
        sub = fields[key].default_factory if fields[key].default_factory is not dataclasses.MISSING else None
        if sub is not None and dataclasses.is_dataclass(sub):
            check_keys(node[key], sub, f"{path}.")
        item = LIST_ITEMS.get((schema, key))
        if item is not None and isinstance(node[key], (list, ListConfig)):
            for i, entry in enumerate(node[key]):
                check_keys(entry, item, f"{path}.{i}.")


LIST_ITEMS: dict[tuple[type, str], type] = {  # typed list entries
    (EvalConfig, "benchmarks"): BenchmarkConfig,
    (PromptDataConfig, "mixture"): PromptSourceConfig,
    (ExpertDataConfig, "mixture"): ExpertSourceConfig,
}


def _require(ok: bool, key: str, msg: str) -> None:
    if not ok:
        raise ConfigError(f"'{key}' {msg}")


def _one_of(value: Any, key: str, choices: tuple) -> None:
    _require(value in choices, key, f"must be one of {', '.join(map(str, choices))}, got {value!r}")


RENAMED = {  # keys of older recipes: the one line says what replaced them
    "logging.tensorboard": "logging.trackers: [tensorboard] (the default), or [] for no TensorBoard",
}
# logging.trackers' choices and the module each needs: checked here, imported only by the run (chord/trackers.py)
TRACKER_MODULES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}


def validate_logging(cfg: ChordConfig) -> None:
    """A tracker that is misspelt or not installed fails now, not after the model is built."""
    from importlib.util import find_spec

    lg = cfg.logging
    for name in lg.trackers:
        if name not in TRACKER_MODULES:
            near = difflib.get_close_matches(str(name), list(TRACKER_MODULES), n=1)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            raise ConfigError(f"'logging.trackers' has {name!r}: must be among {', '.join(TRACKER_MODULES)}{hint}")
        _require(lg.trackers.count(name) == 1, "logging.trackers", f"lists {name!r} twice")
        extra = "pip install tensorboard" if name == "tensorboard" else f"pip install -e '.[trackers]' (or {name})"
        _require(find_spec(TRACKER_MODULES[name]) is not None, "logging.trackers",
                 f"has {name!r} but the {name} package is not installed: {extra}")
    _require(bool(lg.project.strip()), "logging.project", "must not be empty")
    _require(lg.tracking_uri is None or bool(lg.tracking_uri.strip()), "logging.tracking_uri",
             "must not be empty (null: MLFLOW_TRACKING_URI or mlflow's default)")
    if "mlflow" in lg.trackers:
        import os

        uri = lg.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        # mlflow-skinny (the trackers extra) stores runs on a server or in a folder; a database store
        # (mlflow's default sqlite:///mlflow.db) needs SQLAlchemy, which the full mlflow package brings
        database = uri is None or uri.split(":", 1)[0].split("+", 1)[0] in ("sqlite", "postgresql", "mysql", "mssql")
        _require(not database or find_spec("sqlalchemy") is not None, "logging.tracking_uri",
                 f"is {uri or 'null (mlflow default: sqlite:///mlflow.db)'}: a database store needs the full mlflow "
                 "package (pip install mlflow); or a server http://HOST:PORT or a folder file:///ABS/PATH")


def validate(cfg: ChordConfig) -> None:
    """Impossible values fail here, before any model or engine is built."""
    validate_logging(cfg)
    validate_eval(cfg)
    validate_hub(cfg)
    validate_ranges(cfg)
    validate_paths(cfg)
    validate_data(cfg)
    rw = cfg.reward
    _one_of(rw.fallback, "reward.fallback", ("none", "last_number"))
    _require(rw.timeout_s > 0, "reward.timeout_s", f"must be > 0, got {rw.timeout_s}")
    _require(rw.workers >= 0, "reward.workers", "must be >= 0")
    _require(cfg.trainer.epochs is None or cfg.trainer.epochs > 0, "trainer.epochs", "must be > 0 or null")
    a, t, r, m = cfg.algorithm, cfg.trainer, cfg.rollout, cfg.algorithm.mu
    for name in ("peak", "valley"):
        v = getattr(m, name)
        _require(0.0 <= v <= 1.0, f"algorithm.mu.{name}", f"must be in [0, 1], got {v}")
    _require(m.warmup_steps >= 0, "algorithm.mu.warmup_steps", "must be >= 0")
    _require(m.decay_steps >= 0, "algorithm.mu.decay_steps", "must be >= 0")
    _one_of(a.scale_rewards, "algorithm.scale_rewards", ("group", "batch", "none"))
    validate_knobs(cfg)
    _require(cfg.model.revision is None or not (cfg.model.path in ("tiny", "cards") or Path(cfg.model.path).exists()),
             "model.revision", f"pins a hub model; model.path = {cfg.model.path} is built in or a local folder")
    _require(0 <= a.clip_eps_low < 1, "algorithm.clip_eps_low", f"must be in [0, 1), got {a.clip_eps_low}")
    _require(a.clip_eps_high >= 0, "algorithm.clip_eps_high", f"must be >= 0, got {a.clip_eps_high}")
    _require(a.dual_clip is None or a.dual_clip > 1, "algorithm.dual_clip", "must be > 1 or null")
    _require(a.kl_coef >= 0, "algorithm.kl_coef", "must be >= 0")
    _require(t.steps >= 1, "trainer.steps", f"must be >= 1, got {t.steps}")
    _require(t.samples_per_prompt >= 1, "trainer.samples_per_prompt", f"must be >= 1, got {t.samples_per_prompt}")
    _require(t.prompts_per_step >= 0, "trainer.prompts_per_step", "must be >= 0")
    _require(t.expert_per_step >= 0, "trainer.expert_per_step", "must be >= 0")
    _require(t.prompts_per_step + t.expert_per_step > 0, "trainer.prompts_per_step",
             "and trainer.expert_per_step are both 0: nothing to train on")
    _require(t.micro_batch_size >= 1, "trainer.micro_batch_size", "must be >= 1")
    validate_token_budget(cfg)
    _require(t.lr > 0, "trainer.lr", f"must be > 0, got {t.lr}")
    _one_of(t.lr_schedule, "trainer.lr_schedule", ("constant", "cosine"))
    _require(t.max_logprob_gap > 0, "trainer.max_logprob_gap", "must be > 0")
    _require(t.save_every >= 0, "trainer.save_every", "must be >= 0")
    _require(t.keep_last >= 1, "trainer.keep_last", "must be >= 1")
    _require(t.max_nonfinite_steps >= 1, "trainer.max_nonfinite_steps", "must be >= 1")
    _one_of(r.backend, "rollout.backend", ("vllm", "hf"))
    _one_of(r.placement, "rollout.placement", ("auto", "rank0", "per_rank"))
    _require(cfg.run.dist_timeout_minutes > 0, "run.dist_timeout_minutes", "must be > 0")
    _require(r.weight_bucket_mb > 0, "rollout.weight_bucket_mb", f"must be > 0, got {r.weight_bucket_mb}")
    _require(r.max_new_tokens >= 1, "rollout.max_new_tokens", "must be >= 1")
    _require(r.temperature > 0, "rollout.temperature", "must be > 0 (on-policy sampling)")
    _require(0 < r.top_p <= 1, "rollout.top_p", "must be in (0, 1]")
    _require(isinstance(r.ignore_eos, bool), "rollout.ignore_eos", f"must be true or false, got {r.ignore_eos!r}")
    _one_of(cfg.model.dtype, "model.dtype", ("float32", "bfloat16"))
    _one_of(cfg.loss.impl, "loss.impl", ("torch", "auto", "chunked", "triton"))
    _one_of(cfg.deepspeed.zero_stage, "deepspeed.zero_stage", (0, 1, 2, 3))
    _one_of(cfg.data.expert.truncation, "data.expert.truncation", ("drop", "truncate"))
    e = cfg.data.expert
    _require(e.messages_column is not None or (e.prompt_column and e.response_column),
             "data.expert.messages_column", "is null: set data.expert.prompt_column and response_column")
    _require(not uses_expert(cfg) or e.source is not None or bool(e.mixture), "data.expert.source",
             "is null but trainer.expert_per_step > 0 and mu > 0")
    _require(not (t.prompts_per_step > 0 and not uses_rl(cfg)), "trainer.prompts_per_step",
             "must be 0 when mu is 1 throughout (pure SFT does no rollouts)")
    _require(uses_rl(cfg) or uses_expert(cfg), "trainer", "has neither an RL nor an SFT term to train")


AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")  # verl's loss_agg_mode names


def validate_knobs(cfg: ChordConfig) -> None:
    """The GRPO / SFT options of docs/algorithm.md beyond the paper's defaults."""
    a, rw = cfg.algorithm, cfg.reward
    _one_of(a.sft_weight, "algorithm.sft_weight", ("none", "phi", "is", "one_minus_p", "power"))
    ex = list(a.sft_weight_exponents)
    _require(len(ex) == 2 and all(v >= 0 for v in ex), "algorithm.sft_weight_exponents",
             f"must be two numbers >= 0 (a, b of p^a (1-p)^b), got {ex}")
    _require(a.sft_cutoff_prob is None or 0 < a.sft_cutoff_prob < 1, "algorithm.sft_cutoff_prob",
             f"must be in (0, 1) or null, got {a.sft_cutoff_prob}")
    _one_of(a.loss_agg_mode, "algorithm.loss_agg_mode", AGG_MODES)
    if a.sft_loss_agg_mode is not None:
        _one_of(a.sft_loss_agg_mode, "algorithm.sft_loss_agg_mode", AGG_MODES)
    _require(a.tis_cap is None or a.tis_cap >= 1, "algorithm.tis_cap",
             f"must be >= 1 or null (a cap below 1 would shrink on-policy tokens), got {a.tis_cap}")
    _require(not a.filter_groups or cfg.trainer.samples_per_prompt >= 2, "algorithm.filter_groups",
             "needs trainer.samples_per_prompt >= 2: a group of one always has equal rewards")
    _require(rw.overlong_buffer >= 0, "reward.overlong_buffer", f"must be >= 0, got {rw.overlong_buffer}")
    _require(rw.overlong_buffer < cfg.rollout.max_new_tokens, "reward.overlong_buffer",
             f"= {rw.overlong_buffer} must be smaller than rollout.max_new_tokens = {cfg.rollout.max_new_tokens}")
    _require(rw.overlong_buffer_penalty >= 0, "reward.overlong_buffer_penalty", "must be >= 0 (it is subtracted)")


LOCAL_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")  # chord.data.loading's local file formats


def _hub_pins(source: str | None, subset: str | None, revision: str | None, key: str) -> None:
    """subset and revision name a hub dataset's config and version: refused where they would do nothing."""
    if source is None:
        return
    p = Path(source).expanduser()
    file = source.startswith("builtin:") or p.is_file() or (not p.is_dir() and p.suffix in LOCAL_SUFFIXES)
    local = file or p.exists() or source.startswith((".", "/", "~"))
    _require(revision is None or not local, f"{key}.revision",
             f"= {revision} pins a hub dataset, but {key}.source = {source} is local")
    _require(subset is None or not file, f"{key}.subset", f"= {subset} names a config of a hub dataset (or of a "
             f"folder with a README.md configs: section), but {key}.source = {source} is a local file")


def validate_data(cfg: ChordConfig) -> None:
    """Data sources: hub pins where they mean something, and mixtures (docs/usage.md#mixtures-of-sources)."""
    d = cfg.data
    for key, sec in (("data.prompts", d.prompts), ("data.expert", d.expert)):
        if not sec.mixture:
            _hub_pins(sec.source, sec.subset, sec.revision, key)
            continue
        default = type(sec)().source
        _require(sec.source in (None, default), f"{key}.source",
                 f"= {sec.source} and {key}.mixture are both set: set {key}.source=null (each entry names a source)")
        for k in ("subset", "revision"):
            _require(getattr(sec, k) is None, f"{key}.{k}", f"pins {key}.source; with {key}.mixture set it per entry")
        for i, m in enumerate(sec.mixture):
            _require(math.isfinite(m.weight) and m.weight > 0, f"{key}.mixture.{i}.weight",
                     f"must be a finite number > 0, got {m.weight}")
            _hub_pins(m.source, m.subset, m.revision, f"{key}.mixture.{i}")
    _require(not uses_rl(cfg) or d.prompts.source is not None or bool(d.prompts.mixture), "data.prompts.source",
             "is null: set a source or data.prompts.mixture")
    e = d.expert
    for i, m in enumerate(e.mixture):
        if m.messages_column is None and (m.prompt_column or m.response_column):  # this source's prompt/response
            _require(bool((m.prompt_column or e.prompt_column) and (m.response_column or e.response_column)),
                     f"data.expert.mixture.{i}", "needs prompt_column and response_column (set here or in data.expert)")
    for i, b in enumerate(cfg.eval.benchmarks):
        _hub_pins(b.source, b.subset, b.revision, f"eval.benchmarks.{i}")


def uses_rl(cfg: ChordConfig) -> bool:
    """The run has an RL term: rollouts are generated (prompts per step > 0 and mu < 1 at some step)."""
    m = cfg.algorithm.mu
    return cfg.trainer.prompts_per_step > 0 and min(m.peak, m.valley) < 1.0


def uses_expert(cfg: ChordConfig) -> bool:
    """The run has an SFT term: expert rows are read (expert rows per step > 0 and mu > 0 at some step)."""
    m = cfg.algorithm.mu
    return cfg.trainer.expert_per_step > 0 and max(m.peak, m.valley) > 0.0


def evaluates(cfg: ChordConfig) -> bool:
    e = cfg.eval
    return bool(e.benchmarks) and (e.every > 0 or e.at_end or e.at_start or bool(e.at_steps))


def needs_engine(cfg: ChordConfig) -> bool:
    """Rank 0 holds a rollout engine for RL rollouts and for evaluation (SFT runs too)."""
    return uses_rl(cfg) or evaluates(cfg)


def rows_per_step(cfg: ChordConfig) -> tuple[int, int]:
    t = cfg.trainer
    n_roll = t.prompts_per_step * t.samples_per_prompt if uses_rl(cfg) else 0
    n_exp = t.expert_per_step if uses_expert(cfg) else 0
    return n_roll, n_exp


def validate_token_budget(cfg: ChordConfig) -> None:
    """A budget below the longest possible row would fail at some step hours in: refuse it now."""
    budget = cfg.trainer.max_tokens_per_micro_batch
    if budget is None:
        return
    longest = []
    if uses_rl(cfg):
        longest.append((cfg.data.prompts.max_prompt_length + cfg.rollout.max_new_tokens,
                        "data.prompts.max_prompt_length + rollout.max_new_tokens"))
    if uses_expert(cfg):
        longest.append((cfg.data.expert.max_length, "data.expert.max_length"))
    n, what = max(longest, default=(1, "one token"))
    _require(budget >= n, "trainer.max_tokens_per_micro_batch",
             f"= {budget} is smaller than the longest possible row: {what} = {n} tokens")


EVAL_STATS = ("length_mean", "truncated_frac")


def pass_ks(k: int) -> list[int]:
    """The pass@j an evaluation with k samples per problem reports: 1, 2, 4, ... below k, and k."""
    return [1 << i for i in range(k.bit_length()) if 1 << i < k] + [k]


def validate_eval(cfg: ChordConfig) -> None:
    ev = cfg.eval
    _require(ev.every >= 0, "eval.every", "must be >= 0")
    _require(all(isinstance(x, int) and x >= 1 for x in ev.at_steps), "eval.at_steps",
             f"must be steps >= 1, got {list(ev.at_steps)}")
    _require(ev.k >= 1, "eval.k", f"must be >= 1, got {ev.k}")
    _require(ev.temperature > 0, "eval.temperature", "must be > 0")
    _require(0 < ev.top_p <= 1, "eval.top_p", "must be in (0, 1]")
    _require(ev.max_new_tokens is None or ev.max_new_tokens >= 1, "eval.max_new_tokens", "must be >= 1 or null")
    _require(0 <= ev.max_bad_fraction < 1, "eval.max_bad_fraction", "must be in [0, 1)")
    _one_of(ev.best_mode, "eval.best_mode", ("max", "min"))
    _require(ev.best_includes_start or not ev.benchmarks or ev.at_end or ev.every > 0 or bool(ev.at_steps),
             "eval.best_includes_start", "is false, so best/ needs an evaluation after step 0: set eval.at_end, "
             "eval.every or eval.at_steps")
    names = [b.name for b in ev.benchmarks]
    for i, b in enumerate(ev.benchmarks):
        _require(b.name.replace("_", "").replace("-", "").isalnum(), f"eval.benchmarks.{i}.name",
                 f"must be letters, digits, '-' or '_', got {b.name!r}")
        _require(b.k is None or b.k >= 1, f"eval.benchmarks.{i}.k", "must be >= 1 or null")
        _require(b.max_problems is None or b.max_problems >= 1, f"eval.benchmarks.{i}.max_problems", "must be >= 1")
    _require(len(set(names)) == len(names), "eval.benchmarks", f"names must be unique, got {names}")
    if ev.benchmarks:
        valid = [f"overall/{s}" for s in ("avg", "pass", *EVAL_STATS)] + [
            f"{b.name}/{s}" for b in ev.benchmarks
            for s in (f"avg@{b.k or ev.k}", *(f"pass@{j}" for j in pass_ks(b.k or ev.k)), *EVAL_STATS,
                      "distinct_2")]
        _require(ev.best_metric in valid, "eval.best_metric",
                 f"must be one of {', '.join(valid)}; got {ev.best_metric!r}")


# the Hub's repo names: letters, digits, '-', '_', '.'; at most 96 characters; no '--' or '..'; no '-'/'.' at an end
HUB_NAME = re.compile(r"(?!.*(--|\.\.))[A-Za-z0-9_](?:[\w.-]{0,94}[A-Za-z0-9_])?")


def is_hub_id(name: str) -> bool:
    """`owner/name` or `name` in the Hub's spelling (a model, dataset or repo id; not a local path)."""
    return name.count("/") <= 1 and all(HUB_NAME.fullmatch(part) for part in name.split("/"))


def validate_hub(cfg: ChordConfig) -> None:
    h = cfg.hub
    _one_of(h.push, "hub.push", ("none", "final", "best"))
    _require(h.push == "none" or h.repo_id is not None, "hub.repo_id", f"is null but hub.push is {h.push}: name "
             "the repo to push to (owner/name, or name under the token's user)")
    if h.repo_id is not None:
        _require(is_hub_id(h.repo_id), "hub.repo_id", f"must be owner/name or name (letters, digits, '-', '_', "
                 f"'.'; no '--' or '..'; at most 96 characters each), got {h.repo_id!r}")
    _require(h.revision is None or (h.revision != "" and not any(c.isspace() for c in h.revision)),
             "hub.revision", f"must be a branch name or null, got {h.revision!r}")
    _require(h.push != "best" or bool(cfg.eval.benchmarks), "hub.push",
             "is best but eval.benchmarks is empty: best/ is chosen by evaluation (push final instead)")
    _require(h.push != "final" or cfg.trainer.save_at_end, "hub.push",
             "is final but trainer.save_at_end is false: no final/ export is written")


def _finite(cfg: Any, prefix: str = "") -> None:
    """NaN passes every `>`/`<` range check as False but `not (x < y)` as True: refuse it (and inf) outright."""
    for f in dataclasses.fields(cfg):
        v, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(v):
            _finite(v, f"{key}.")
        elif isinstance(v, float):
            _require(math.isfinite(v), key, f"must be a finite number, got {v}")


def validate_ranges(cfg: ChordConfig) -> None:
    """Numeric settings that torch, DeepSpeed or vLLM would reject only minutes later (or never)."""
    _finite(cfg)
    t, r, d, a = cfg.trainer, cfg.rollout, cfg.data, cfg.algorithm
    _require(0 <= cfg.run.seed < 2**32 - 1, "run.seed", f"must be in [0, 2^32 - 1) (numpy seeds), got {cfg.run.seed}")
    for name in ("adam_beta1", "adam_beta2"):
        v = getattr(t, name)
        _require(0 <= v < 1, f"trainer.{name}", f"must be in [0, 1), got {v}")
    _require(t.adam_eps > 0, "trainer.adam_eps", f"must be > 0, got {t.adam_eps}")
    _require(t.weight_decay >= 0, "trainer.weight_decay", f"must be >= 0, got {t.weight_decay}")
    _require(t.grad_clip > 0, "trainer.grad_clip", f"must be > 0 (the max gradient norm), got {t.grad_clip}")
    _require(t.lr_warmup_steps >= 0, "trainer.lr_warmup_steps", f"must be >= 0, got {t.lr_warmup_steps}")
    _require(a.advantage_eps > 0, "algorithm.advantage_eps",
             f"must be > 0 (divides by the group std), got {a.advantage_eps}")
    _require(cfg.loss.chunk_size >= 1, "loss.chunk_size", f"must be >= 1, got {cfg.loss.chunk_size}")
    _require(r.tensor_parallel_size >= 1, "rollout.tensor_parallel_size", f"must be >= 1, got {r.tensor_parallel_size}")
    _require(0 < r.gpu_memory_utilization <= 1, "rollout.gpu_memory_utilization",
             f"must be in (0, 1], got {r.gpu_memory_utilization}")
    _require(r.kv_cache_gib > 0, "rollout.kv_cache_gib", f"must be > 0, got {r.kv_cache_gib}")
    for name, sub in (("prompts", d.prompts), ("expert", d.expert)):
        _require(0 <= sub.max_bad_fraction <= 1, f"data.{name}.max_bad_fraction",
                 f"must be in [0, 1], got {sub.max_bad_fraction}")
    _require(d.prompts.max_prompt_length >= 1, "data.prompts.max_prompt_length",
             f"must be >= 1, got {d.prompts.max_prompt_length}")
    _require(d.expert.max_length >= 1, "data.expert.max_length", f"must be >= 1, got {d.expert.max_length}")
    ev = cfg.eval
    _require(ev.max_prompt_length is None or ev.max_prompt_length >= 1, "eval.max_prompt_length",
             "must be >= 1 or null")


def _not_a_file(path: str, key: str) -> None:
    """`path` must be usable as a folder: neither it nor a parent may be an existing file."""
    for p in (Path(path), *Path(path).parents):
        _require(not (p.exists() and not p.is_dir()), key, f"= {path}: {p} is a file, not a folder")


def validate_paths(cfg: ChordConfig) -> None:
    """Folders and files named by the recipe, checked before anything is built."""
    _not_a_file(cfg.run.output_dir, "run.output_dir")
    sources = (cfg.data.prompts.source, cfg.data.expert.source, *(b.source for b in cfg.eval.benchmarks),
               *(m.source for m in (*cfg.data.prompts.mixture, *cfg.data.expert.mixture)))
    if cfg.model.path in ("tiny", "cards") or any(str(s).startswith("builtin:") for s in sources):
        _not_a_file(cfg.model.cache_dir, "model.cache_dir")  # the tiny model and task files are built there
    ds = cfg.deepspeed.config_path
    if ds:
        try:
            parsed = json.loads(Path(ds).read_text())
        except OSError as e:
            raise ConfigError(f"'deepspeed.config_path' = {ds}: cannot read "
                              f"({e.strerror or type(e).__name__})") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise ConfigError(f"'deepspeed.config_path' = {ds}: not valid JSON ({str(e).splitlines()[0]})") from None
        _require(isinstance(parsed, dict), "deepspeed.config_path", f"= {ds}: must hold a JSON object")


def to_yaml(cfg: ChordConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))

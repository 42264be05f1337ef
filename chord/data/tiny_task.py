"""A tiny verifiable task for CPU runs: adding two numbers below 20, with an exact answer check.

RL prompts ("What is 17 + 8?") carry the ground truth; expert demonstrations solve the sum column by
column in a step-by-step style and end with a fixed final line `Answer: N`. The reward parses the
*last* `Answer: N` (regex on a bounded tail of the text, never eval) and compares integers.

Operands stay below 20 (400 problems) so a ~0.5M-parameter model learns within minutes on 2 CPU
cores. Which problems are held out for evaluation is a fixed rule on the operands, not a seeded
draw, so the tiny model's "pretraining" (chord/models/tiny.py) can avoid them whatever the task seed.

    python -c "from chord.data.tiny_task import generate_tiny_task as g; print(g('/tmp/tiny_task'))"
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path

TASK_VERSION = 3
MAX_OPERAND = 19  # small enough for a ~0.5M-parameter model to learn within minutes on a CPU
_ANSWER = re.compile(r"Answer:\s*(-?\d{1,12})")
_MAX_SCAN = 4096  # only the tail of a response is scanned: bounded time on hostile output


def all_pairs() -> list[tuple[int, int]]:
    """Every problem of the task, in a fixed order."""
    return [(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]


def is_eval_pair(a: int, b: int) -> bool:
    """The fixed held-out fifth of the problems (80 of 400), spread over all operand values."""
    return (7 * a + 3 * b) % 5 == 0


def train_pairs() -> list[tuple[int, int]]:
    return [p for p in all_pairs() if not is_eval_pair(*p)]


def eval_pairs() -> list[tuple[int, int]]:
    return [p for p in all_pairs() if is_eval_pair(*p)]


def prompt_text(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def expert_solution(a: int, b: int) -> str:
    """Step-by-step: units column, then tens with the carry, then the answer line."""
    u = a % 10 + b % 10
    carry = u // 10
    t = a // 10 + b // 10 + carry
    return f"Units: {a % 10} + {b % 10} = {u}. Tens: {a // 10} + {b // 10} + {carry} = {t}.\nAnswer: {a + b}"


def direct_answer(a: int, b: int) -> str:
    """The terse style the base model is warmed up on (differs from the expert style)."""
    return f"Answer: {a + b}"


def digit_facts(rng: random.Random, n: int) -> str:
    """Plain-text one-digit sums ("7 + 8 = 15", "1 + 0 + 1 = 2"): the facts the expert steps use.

    They stand for what a real pretrained model already knows; the step-by-step *format* that
    combines them appears only in the expert data.
    """
    lines = []
    for _ in range(n):
        x, y = rng.randint(0, 9), rng.randint(0, 9)
        if rng.random() < 0.5:
            lines.append(f"{x} + {y} = {x + y}")
        else:
            c = rng.randint(0, 1)
            lines.append(f"{x} + {y} + {c} = {x + y + c}")
    return "\n".join(lines)


def tiny_reward(response: str, answer: str) -> tuple[float, dict[str, float]]:
    """1.0 if the last `Answer: N` equals the ground truth, else 0.0; info["format_ok"] = 1 if one was found."""
    if not isinstance(response, str):
        return 0.0, {"format_ok": 0.0}
    found = _ANSWER.findall(response[-_MAX_SCAN:])
    if not found:
        return 0.0, {"format_ok": 0.0}
    try:
        ok = int(found[-1]) == int(str(answer).strip())
    except ValueError:  # a ground truth that is not an integer can never be matched
        ok = False
    return (1.0 if ok else 0.0), {"format_ok": 1.0}


def tiny_task_corpus(seed: int, n: int) -> list[str]:
    """n documents covering every string the task uses (both answer styles and digit facts).

    Used to train the tiny tokenizer; deterministic for a seed.
    """
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = rng.choice(all_pairs())
        out.append(f"{prompt_text(a, b)}\n{expert_solution(a, b)}\n{direct_answer(a, b)}\n{digit_facts(rng, 2)}")
    return out


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write to a private temp name, then rename: readers never see a half-written file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _sample(rng: random.Random, pairs: list[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """n pairs: whole shuffled passes over `pairs` (so no pair repeats before all were used)."""
    out: list[tuple[int, int]] = []
    while len(out) < n:
        block = list(pairs)
        rng.shuffle(block)
        out.extend(block[: n - len(out)])
    return out


def generate_tiny_task(out_dir: str | Path, seed: int = 0, n_rl: int = 320, n_expert: int = 320,
                       n_eval: int = 80) -> dict[str, Path]:
    """Write rl.jsonl (prompt, answer), expert.jsonl (messages) and eval.jsonl (prompt, answer).

    Returns {"rl", "expert", "eval"} -> path. Files are named by a hash of the arguments, with a
    manifest written last, so a second call with equal arguments reuses them and different
    arguments never overwrite each other. RL and expert rows come from the 320 training problems
    (repeating only once all were used), eval rows from the 80 held-out ones (n_eval <= 80).
    """
    if min(n_rl, n_expert, n_eval) < 0:
        raise ValueError(f"generate_tiny_task: counts must be >= 0, got {n_rl=}, {n_expert=}, {n_eval=}")
    held_out = eval_pairs()
    if n_eval > len(held_out):
        raise ValueError(f"generate_tiny_task: n_eval={n_eval} but the task holds out only {len(held_out)} problems")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"seed": seed, "n_rl": n_rl, "n_expert": n_expert, "n_eval": n_eval, "version": TASK_VERSION}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    paths = {k: out / f"{k}-{key}.jsonl" for k in ("rl", "expert", "eval")}
    manifest = out / f"manifest-{key}.json"
    if manifest.exists() and all(p.exists() for p in paths.values()):
        return paths
    rng = random.Random(seed)
    rl = [{"prompt": prompt_text(a, b), "answer": str(a + b)} for a, b in _sample(rng, train_pairs(), n_rl)]
    expert = [{"messages": [{"role": "user", "content": prompt_text(a, b)},
                            {"role": "assistant", "content": expert_solution(a, b)}]}
              for a, b in _sample(rng, train_pairs(), n_expert)]
    ev = [{"prompt": prompt_text(a, b), "answer": str(a + b)} for a, b in _sample(rng, held_out, n_eval)]
    for name, rows in (("rl", rl), ("expert", expert), ("eval", ev)):
        _write_jsonl(paths[name], rows)
    tmp = manifest.with_name(f".{manifest.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps({**params, "files": {k: p.name for k, p in paths.items()}}))
    os.replace(tmp, manifest)
    return paths

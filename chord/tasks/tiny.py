"""A tiny verifiable task for CPU runs: adding two numbers below 20, with an exact answer check.

Holds the generator (`generate_tiny_task`: RL prompts, expert demonstrations, eval problems), the
expert demonstrations (`expert_solution`; `boxed_solution` for the math-style twin) and the reward
(`tiny_reward`, the built-in rewards `tiny` and `cards`).

RL prompts carry the ground truth; expert demonstrations solve the sum column by column in a
step-by-step style and end with a fixed final line `Answer: N`. The reward parses the *last*
`Answer:` line (regex on a bounded tail of the text, never eval) and compares integers.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

from chord.logger import write_jsonl

TASK_VERSION = 2
_ANSWER = re.compile(r"Answer:\s*(-?\d{1,12})")
_MAX_SCAN = 4096  # only the tail of a response is scanned: bounded time on hostile output


MAX_OPERAND = 19  # small enough for a ~1M-parameter model to learn within minutes on a CPU


def all_pairs() -> list[tuple[int, int]]:
    return [(a, b) for a in range(MAX_OPERAND + 1) for b in range(MAX_OPERAND + 1)]


def sum_pair(rng: random.Random) -> tuple[int, int]:
    """A random problem: two operands in 0..MAX_OPERAND."""
    return rng.randint(0, MAX_OPERAND), rng.randint(0, MAX_OPERAND)


def prompt_text(a: int, b: int) -> str:
    return f"What is {a} + {b}?"


def expert_solution(a: int, b: int) -> str:
    """Step-by-step: units column, then tens with the carry, then the answer line."""
    u = a % 10 + b % 10
    carry = u // 10
    t = a // 10 + b // 10 + carry
    steps = f"Units: {a % 10} + {b % 10} = {u}. Tens: {a // 10} + {b // 10} + {carry} = {t}."
    return f"{steps}\nAnswer: {a + b}"


def boxed_prompt_text(a: int, b: int) -> str:
    """The math-style twin of the task (recipes/tiny_math*.yaml): graded by the `math` reward."""
    return f"{prompt_text(a, b)} Put the final answer in \\boxed{{}}."


def boxed_solution(a: int, b: int) -> str:
    """The expert style of the math twin: the same column steps, then a \\boxed{} answer."""
    return expert_solution(a, b).replace(f"Answer: {a + b}", f"The answer is \\boxed{{{a + b}}}.")


def direct_answer(a: int, b: int) -> str:
    """The terse style the base model is warmed up on (differs from the expert style)."""
    return f"Answer: {a + b}"


def tiny_reward(response: str, answer: str) -> tuple[float, dict[str, float]]:
    """1.0 if the last `Answer: N` equals the ground truth, else 0.0; info has format_ok."""
    if not isinstance(response, str):
        return 0.0, {"format_ok": 0.0}
    found = _ANSWER.findall(response[-_MAX_SCAN:])
    if not found:
        return 0.0, {"format_ok": 0.0}
    try:
        ok = int(found[-1]) == int(str(answer).strip())
    except ValueError:
        ok = False
    return (1.0 if ok else 0.0), {"format_ok": 1.0}


def tiny_task_corpus(seed: int, n: int) -> list[str]:
    """Text in both styles, for tokenizer training."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b = sum_pair(rng)
        out.append(f"{prompt_text(a, b)}\n{expert_solution(a, b)}\n{direct_answer(a, b)}")
    return out


def generate_tiny_task(out_dir: str | Path, seed: int = 0, n_rl: int = 320, n_expert: int = 320,
                       n_eval: int = 80, style: str = "answer") -> dict[str, Path]:
    """Write rl.jsonl (prompt, answer), expert.jsonl (messages), eval.jsonl; reuse if present.

    Eval problems are disjoint from the RL and expert problems. style="boxed" writes the math twin
    (prompts ask for \\boxed{}, expert solutions end in one).
    """
    if style not in ("answer", "boxed"):
        raise ValueError(f"style must be 'answer' or 'boxed', got {style!r}")
    ask, solution = (boxed_prompt_text, boxed_solution) if style == "boxed" else (prompt_text, expert_solution)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"seed": seed, "n_rl": n_rl, "n_expert": n_expert, "n_eval": n_eval, "version": TASK_VERSION}
    if style != "answer":  # the original task keeps its file names (and caches)
        params["style"] = style
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    paths = {k: out / f"{k}-{key}.jsonl" for k in ("rl", "expert", "eval")}
    manifest = out / f"manifest-{key}.json"
    if manifest.exists() and all(p.exists() for p in paths.values()):
        return paths
    rng = random.Random(seed)
    pairs = all_pairs()
    rng.shuffle(pairs)
    eval_pairs, train_pairs = pairs[:n_eval], pairs[n_eval:]
    rl = [{"prompt": ask(a, b), "answer": str(a + b)} for a, b in train_pairs[:n_rl]]
    expert = [{"messages": [{"role": "user", "content": ask(a, b)},
                            {"role": "assistant", "content": solution(a, b)}]}
              for a, b in rng.sample(train_pairs, min(n_expert, len(train_pairs)))]
    ev = [{"prompt": ask(a, b), "answer": str(a + b)} for a, b in eval_pairs]
    for name, rows in (("rl", rl), ("expert", expert), ("eval", ev)):
        write_jsonl(paths[name], rows)
    manifest.write_text(json.dumps({**params, "counts": {"rl": len(rl), "expert": len(expert), "eval": len(ev)}}))
    return paths

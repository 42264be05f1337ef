"""The card-sum task: the CPU-scale learning benchmark (benchmarks/method_comparison.py).

Holds the generator (`generate_cards_task`: RL prompts, expert demonstrations, ID and OOD eval
hands), the expert demonstrations (`expert_solution`), the pretraining text of the base model
(`corpus`, `noisy_answer`, `value_fact`, `worked_sum`, used by chord.models.cards), and the cards and
rules (`CARDS`, `ID_RULE`, `OOD_RULE`, `card_value`) that chord.tasks.points24 shares. It has no
reward of its own (see the end).

A hand of three playing cards; the answer is the sum of their values. The rule is stated in the
prompt, in the spirit of GeneralPoints (arXiv 2501.17161):

* in-distribution (ID), rule `face=10`: J, Q and K count as 10 (hands uniform over A..K);
* out-of-distribution (OOD), rule `face=faces`: J, Q, K count as 11, 12, 13, and every hand holds
  at least one face card, so the ID rule gives a wrong answer on every OOD problem.

Three styles of text:

* the base model's **terse** style, `Answer: 21`, which the built-in base model is pretrained on
  (both rules, and with noisy answers, like web text: a weak but real starting policy);
* the **expert** style, step by step, used only by the expert demonstrations (ID rule only):

      Values: 7, 10, 4. 7 + 10 = 17. 17 + 4 = 21.
      Answer: 21

* plain text in the pretraining corpus: arithmetic facts (`17 + 4 = 21.`) and what cards are worth
  under a rule (`If J, Q and K count as 11, 12 and 13: 7, K, 4 are worth 7, 13, 4.`). The base knows
  the pieces, but has never answered a hand step by step: the expert style composes them.

The reward is chord.tasks.tiny.tiny_reward (the last `Answer: N` line, parsed by a regex): the
built-in reward `cards` (chord.rewards) is that function.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable
from pathlib import Path

from chord.logger import write_jsonl

CARDS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
ID_RULE, OOD_RULE = "face=10", "face=faces"
RULE_TEXT = {ID_RULE: "J, Q and K count as 10.", OOD_RULE: "J, Q and K count as 11, 12 and 13."}
HAND = 3
TASK_VERSION = 1  # bump when the files written for the same arguments change (cache key)

Hand = tuple[str, ...]


def card_value(card: str, rule: str) -> int:
    if rule not in RULE_TEXT:
        raise ValueError(f"unknown rule {rule!r}: use {ID_RULE!r} or {OOD_RULE!r}")
    rank = CARDS.index(card) + 1
    return min(rank, 10) if rule == ID_RULE else rank


def hand_sum(hand: Hand, rule: str) -> int:
    return sum(card_value(c, rule) for c in hand)


def prompt_text(hand: Hand, rule: str) -> str:
    return f"Add the cards {', '.join(hand)}. {RULE_TEXT[rule]}"


def terse_answer(hand: Hand, rule: str) -> str:
    return f"Answer: {hand_sum(hand, rule)}"


def expert_solution(hand: Hand, rule: str) -> str:
    """Values first (where the rule is applied), then running sums, then the answer line."""
    return worked(card_value(c, rule) for c in hand)


def worked(values: Iterable[int]) -> str:
    """The expert's procedure on given values: the values, the running sums, the answer line."""
    values = list(values)
    steps, total = [], values[0]
    for v in values[1:]:
        steps.append(f"{total} + {v} = {total + v}.")
        total += v
    return f"Values: {', '.join(map(str, values))}. {' '.join(steps)}\nAnswer: {total}"


def all_hands() -> list[Hand]:
    return [(a, b, c) for a in CARDS for b in CARDS for c in CARDS]


def is_face(card: str) -> bool:
    return card in ("J", "Q", "K")


def ood_hands() -> list[Hand]:
    """Hands where the OOD rule changes the answer: at least one face card."""
    return [h for h in all_hands() if any(map(is_face, h))]


def noisy_answer(hand: Hand, rule: str, rng: random.Random, correct: float) -> str:
    """The base corpus's terse answer: right with probability `correct`, else off by 1 or 2."""
    total = hand_sum(hand, rule)
    if rng.random() >= correct:
        total += rng.choice((-2, -1, 1, 2))
    return f"Answer: {total}"


def arithmetic_fact(rng: random.Random) -> str:
    a, b = rng.randint(1, 30), rng.randint(1, 13)
    return f"{a} + {b} = {a + b}."


def value_fact(hand: Hand, rule: str) -> str:
    """Plain text the base is pretrained on: what a hand's cards are worth under a rule (not the answer)."""
    return (f"If {RULE_TEXT[rule][:-1]}: {', '.join(hand)} are worth "
            f"{', '.join(str(card_value(c, rule)) for c in hand)}.")


def worked_sum(rng: random.Random) -> tuple[str, str]:
    """Plain text of another task in the expert's procedure: (question, worked answer) for 2-4 plain numbers,
    no cards and no rule. A base pretrained on it has seen the step-by-step format, never on a hand."""
    nums = [rng.randint(1, 13) for _ in range(rng.randint(2, 4))]
    return f"Add the numbers {', '.join(map(str, nums))}.", worked(nums)


def corpus(seed: int, n: int) -> list[str]:
    """Text in every style, for tokenizer training."""
    rng = random.Random(seed)
    hands = all_hands()
    out = []
    for _ in range(n):
        h, rule = rng.choice(hands), rng.choice((ID_RULE, OOD_RULE))
        out.append(f"{prompt_text(h, rule)}\n{expert_solution(h, rule)}\n{terse_answer(h, rule)}\n"
                   f"{arithmetic_fact(rng)}\n{value_fact(h, rule)}")
    return out


def split(seed: int, n_eval: int, n_val: int = 0) -> dict[str, list[Hand]]:
    """Disjoint hands: eval_id (ID rule), eval_ood (OOD rule), eval_val (ID rule, n_val of them) and train (the
    rest of the ID hands).

    An OOD evaluation hand is never a training hand either, so OOD accuracy is neither memorised
    numbers nor memorised hands. The validation hands are drawn after the test hands, so eval_id and
    eval_ood are the same for every n_val (results with and without a validation split share their test sets)."""
    rng = random.Random(seed)
    hands = all_hands()
    rng.shuffle(hands)
    eval_id = hands[:n_eval]
    taken = set(eval_id)
    ood = [h for h in ood_hands() if h not in taken]
    rng.shuffle(ood)
    eval_ood = ood[:n_eval]
    taken |= set(eval_ood)
    rest = [h for h in hands if h not in taken]
    return {"eval_id": eval_id, "eval_ood": eval_ood, "eval_val": rest[:n_val], "train": rest[n_val:]}


N_EXPERT = 300  # expert demonstrations of builtin:cards / cards_train


def generate_cards_task(out_dir: str | Path, seed: int = 0, n_rl: int = 1000, n_expert: int = N_EXPERT,
                        n_eval: int = 100, n_val: int = 0) -> dict[str, Path]:
    """Write rl.jsonl (prompt, answer), expert.jsonl (messages), eval.jsonl and eval_ood.jsonl (and eval_val.jsonl
    with n_val > 0); reuse if present.

    RL prompts and expert demonstrations are ID hands drawn from the training hands; the expert set is
    small on purpose (long SFT on it overfits). With n_val > 0 (`builtin:cards_train` / `cards_val`, the
    benchmark's protocol, docs/benchmark.md#splits) there is also a validation set of ID hands, and the RL and
    expert hands are disjoint, as the paper's RL and SFT sets are (arXiv 2508.11408 section 4.1); without it
    (`builtin:cards`) they are drawn independently and may share hands, as they always have."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    params = {"seed": seed, "n_rl": n_rl, "n_expert": n_expert, "n_eval": n_eval, "version": TASK_VERSION}
    if n_val:  # absent at 0: builtin:cards keeps its files and cache key
        params["n_val"] = n_val
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    kinds = ("rl", "expert", "eval", "eval_ood") + (("eval_val",) if n_val else ())
    paths = {k: out / f"{k}-{key}.jsonl" for k in kinds}
    manifest = out / f"manifest-{key}.json"
    if manifest.exists() and all(p.exists() for p in paths.values()):
        return paths
    parts = split(seed, n_eval, n_val)
    rng = random.Random(seed + 1)
    train = parts["train"]
    if n_val:
        if n_rl + n_expert > len(train):
            raise ValueError(f"n_rl + n_expert = {n_rl + n_expert} disjoint hands, but only {len(train)} are left")
        drawn = rng.sample(train, n_rl + n_expert)
        rl_hands, expert_hands = drawn[:n_rl], drawn[n_rl:]
    else:
        rl_hands = rng.sample(train, min(n_rl, len(train)))
        expert_hands = rng.sample(train, min(n_expert, len(train)))

    def ask(h: Hand, rule: str) -> dict:
        return {"prompt": prompt_text(h, rule), "answer": str(hand_sum(h, rule))}

    rows = {
        "rl": [ask(h, ID_RULE) for h in rl_hands],
        "expert": [{"messages": [{"role": "user", "content": prompt_text(h, ID_RULE)},
                                 {"role": "assistant", "content": expert_solution(h, ID_RULE)}]}
                   for h in expert_hands],
        "eval": [ask(h, ID_RULE) for h in parts["eval_id"]],
        "eval_ood": [ask(h, OOD_RULE) for h in parts["eval_ood"]],
    }
    if n_val:
        rows["eval_val"] = [ask(h, ID_RULE) for h in parts["eval_val"]]
    for name, r in rows.items():
        write_jsonl(paths[name], r)
    manifest.write_text(json.dumps({**params, "counts": {k: len(v) for k, v in rows.items()}}))
    return paths

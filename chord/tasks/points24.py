"""The 24-point task (GeneralPoints; arXiv 2501.17161, 2508.16546): solvable hands, solver, expert demos.

Holds the generator (`build_points24`, `write_points24`, `cached_points24` and the CLI `main`), the
solver (`solve`) and the expert demonstrations (`expert_solution`). The reward, `points24`, is in
chord.tasks.points24_verifier; the cards, the rules and `card_value` are chord.tasks.cards'.

Hands follow the official env (LeslieTrue/SFTvsRL). Rule `face=10` (in-distribution):
four ranks i.i.d. uniform on A..K, J/Q/K count as 10. Rule `face=faces` (OOD): three uniform ranks plus
one of J/Q/K, shuffled, J=11, Q=12, K=13. Hands are redrawn until solvable. A is 1 under both rules.

Expert demonstration (the answer format the `points24` reward grades):

    Cards 4, 10, 3, A are worth 4, 10, 3, 1.
    Step 1: 3 - 1 = 2
    Step 2: 10 * 2 = 20
    Step 3: 4 + 20 = 24
    Answer: 4+10*(3-1)

Steps follow the answer's own evaluation order; a non-integer operand is shown in parentheses,
e.g. `Step 3: 8 / (1/3) = 24` for `Answer: 8/(3-8/3)`.

Files: `python -m chord.tasks.points24 --out DIR --n-train N --n-eval M --seed S` writes
train.jsonl (prompt, answer, messages: usable as RL prompts and as expert rows), eval_id.jsonl and
eval_ood.jsonl (prompt, answer) and manifest.json. ID eval hands are distinct card-value multisets
that never occur in train, so ID accuracy is not memorization of the very same numbers.
Recipes name them `builtin:points24` (train; eval_id) and `builtin:points24_ood` (eval_ood):
chord.tasks.builtin_source writes them once into model.cache_dir/points24/ with `cached_points24`.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import random
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

from chord.logger import atomic_write_text, write_jsonl
from chord.tasks.cards import CARDS, ID_RULE, OOD_RULE, card_value
from chord.tasks.points24_verifier import Node, ground_truth, parse

RULE_TEXT = {
    ID_RULE: "'J', 'Q', and 'K' count as '10'.",  # the official prompt's rule sentences
    OOD_RULE: "'J', 'Q', and 'K' count as '11', '12', and '13' respectively.",
}
TARGET = 24
TASK_VERSION = 1  # bump when the hands or demos written for the same arguments change (cache key)


# ------------------------------------------------------------------------------------------ solver

_Item = tuple[Fraction, str, int]  # value, expression, precedence of its top operator (3 number, 2 */, 1 +-)


def _wrap(expr: str, needed: bool) -> str:
    return f"({expr})" if needed else expr


def _combine(a: _Item, b: _Item, op: str) -> _Item | None:
    """a op b with only the parentheses precedence needs; exact because rationals associate."""
    (x, ex, px), (y, ey, py) = a, b
    if op == "+":
        return x + y, f"{ex}+{ey}", 1
    if op == "-":
        return x - y, f"{ex}-{_wrap(ey, py == 1)}", 1
    if op == "*":
        return x * y, f"{_wrap(ex, px == 1)}*{_wrap(ey, py == 1)}", 2
    if y == 0:
        return None
    return x / y, f"{_wrap(ex, px == 1)}/{_wrap(ey, py <= 2)}", 2


def _pairs(a: _Item, b: _Item) -> list[_Item]:
    """Everything one operator makes of a and b, in a fixed order (simple operators first)."""
    made = (
        _combine(a, b, "+"),
        _combine(a, b, "*"),
        _combine(a, b, "-"),
        _combine(b, a, "-"),
        _combine(a, b, "/"),
        _combine(b, a, "/"),
    )
    return [c for c in made if c is not None]


def _splits(values: tuple[int, ...]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Each cut of a sorted multiset into two non-empty parts, once (every expression's top operator
    sits on one such cut)."""
    seen: set = set()
    for mask in range(1, 2 ** len(values) - 1):
        left = tuple(v for i, v in enumerate(values) if mask >> i & 1)
        right = tuple(v for i, v in enumerate(values) if not mask >> i & 1)
        if (right, left) not in seen:
            seen.add((left, right))
    return sorted(seen, key=lambda lr: (len(lr[0]), lr))


@functools.cache
def _reach(values: tuple[int, ...]) -> dict[Fraction, _Item]:
    """Every value the multiset makes, with the first expression found for it; cached, as hands share parts."""
    if len(values) == 1:
        return {Fraction(values[0]): (Fraction(values[0]), str(values[0]), 3)}
    out: dict[Fraction, _Item] = {}
    for left, right in _splits(values):
        for a in _reach(left).values():
            for b in _reach(right).values():
                for c in _pairs(a, b):
                    out.setdefault(c[0], c)
    return out


@functools.cache
def _solve_sorted(values: tuple[int, ...], target: int) -> str | None:
    # The top operator is solved for, not enumerated: for each value x of the smaller part, the y with
    # x op y = target is looked up in the larger part. All 1,820 rank multisets: 1.4 s here, 21 s for
    # the plain depth-first search over pairs (which must exhaust every unsolvable hand).
    if len(values) == 1:
        return str(values[0]) if values[0] == target else None
    t = Fraction(target)
    for small, big in _splits(values):
        if len(small) > len(big):
            small, big = big, small
        ys = _reach(big)
        for x, a in _reach(small).items():
            wants = [(t - x, False), (x - t, False), (t + x, True), (t * x, True)]
            wants += [(t / x, False)] if x else []
            wants += [(x / t, False)] if t else []
            for y, y_first in wants:
                if (b := ys.get(y)) is not None:
                    for c in _pairs(b, a) if y_first else _pairs(a, b):
                        if c[0] == t:
                            return c[1]
    return None


def solve(values: Sequence[int], target: int = TARGET) -> str | None:
    """One expression using each value exactly once that equals target (exact), or None if unsolvable."""
    return _solve_sorted(tuple(sorted(values, reverse=True)), target)


# ------------------------------------------------------------------------------------ hands, rows


def draw_hand(rng: random.Random, rule: str) -> list[str]:
    """One hand (solvable or not) from the rule's distribution: OOD hands always hold a face card."""
    if rule not in RULE_TEXT:
        raise ValueError(f"unknown rule {rule!r}: use {ID_RULE!r} or {OOD_RULE!r}")
    if rule == ID_RULE:
        return [rng.choice(CARDS) for _ in range(4)]
    hand = [rng.choice(CARDS) for _ in range(3)] + [rng.choice(CARDS[10:])]
    rng.shuffle(hand)
    return hand


def _hands(
    rng: random.Random,
    n: int,
    rule: str,
    target: int,
    *,
    distinct: bool = False,
    exclude: frozenset = frozenset(),
) -> list[list[str]]:
    """n solvable hands; `distinct`/`exclude` act on sorted value tuples (what the solution depends on)."""
    out: list[list[str]] = []
    seen = set(exclude)
    tries = 1000 * n + 10_000  # a bound, so an impossible request fails instead of spinning
    while len(out) < n and tries > 0:
        tries -= 1
        hand = draw_hand(rng, rule)
        key = tuple(sorted(card_value(c, rule) for c in hand))
        if key in seen or solve(key, target) is None:
            continue
        if distinct:
            seen.add(key)
        out.append(hand)
    if len(out) == n:
        return out
    raise ValueError(
        f"drew only {len(out)} of {n} solvable {rule} hands for target {target}"
        + (" (distinct: there are not that many)" if distinct else "")
    )


def _value_text(v: Fraction) -> str:
    return str(v) if v.denominator == 1 else f"({v})"


def _steps(node: Node, out: list[str]) -> Fraction:
    """Post-order: one 'a op b = c' line per operator, in the order a reader evaluates them."""
    if isinstance(node, int):
        return Fraction(node)
    op, a, b = node
    x, y = _steps(a, out), _steps(b, out)
    r = x + y if op == "+" else x - y if op == "-" else x * y if op == "*" else x / y
    out.append(f"Step {len(out) + 1}: {_value_text(x)} {op} {_value_text(y)} = {r}")
    return r


def prompt_text(cards: Sequence[str], rule: str, target: int = TARGET) -> str:
    shown = ", ".join(f"'{c}'" for c in cards)
    return (
        f"Make {target} from the cards below using +, -, *, / and parentheses, each card exactly once. "
        f"'A' counts as '1'. {RULE_TEXT[rule]}\nCards: [{shown}]\n"
        "Finish with one line: Answer: <expression written with the card values>"
    )


def expert_solution(cards: Sequence[str], rule: str, target: int = TARGET) -> str:
    """The fixed demo style: card values, numbered steps, then `Answer: <expression>`."""
    values = [card_value(c, rule) for c in cards]
    expr = solve(values, target)
    if expr is None:
        raise ValueError(f"hand {list(cards)} has no solution under {rule} for target {target}")
    steps: list[str] = []
    _steps(parse(expr), steps)
    head = f"Cards {', '.join(cards)} are worth {', '.join(map(str, values))}."
    return "\n".join([head, *steps, f"Answer: {expr}"])


def prompt_row(cards: Sequence[str], rule: str, target: int = TARGET) -> dict:
    values = [card_value(c, rule) for c in cards]
    return {"prompt": prompt_text(cards, rule, target), "answer": ground_truth(cards, rule, values, target)}


def train_row(cards: Sequence[str], rule: str = ID_RULE, target: int = TARGET) -> dict:
    """A prompt row that is also an expert row (`messages`: the prompt and the expert demonstration)."""
    row = prompt_row(cards, rule, target)
    return {
        **row,
        "messages": [
            {"role": "user", "content": row["prompt"]},
            {"role": "assistant", "content": expert_solution(cards, rule, target)},
        ],
    }


def build_points24(seed: int, n_train: int, n_eval: int, target: int = TARGET) -> dict[str, list[dict]]:
    """Rows of the three splits; each split has its own seeded stream, so changing n_train leaves eval alone."""
    eval_id = _hands(random.Random(f"points24/eval_id/{seed}"), n_eval, ID_RULE, target, distinct=True)
    held_out = frozenset(tuple(sorted(card_value(c, ID_RULE) for c in h)) for h in eval_id)
    train = _hands(random.Random(f"points24/train/{seed}"), n_train, ID_RULE, target, exclude=held_out)
    eval_ood = _hands(random.Random(f"points24/eval_ood/{seed}"), n_eval, OOD_RULE, target, distinct=True)
    return {
        "train": [train_row(h, ID_RULE, target) for h in train],
        "eval_id": [prompt_row(h, ID_RULE, target) for h in eval_id],
        "eval_ood": [prompt_row(h, OOD_RULE, target) for h in eval_ood],
    }


def write_points24(
    out_dir: str | Path,
    seed: int = 0,
    n_train: int = 1000,
    n_eval: int = 234,
    target: int = TARGET,
    **manifest_extra: object,
) -> dict[str, Path]:
    """Write <split>.jsonl for train, eval_id, eval_ood plus manifest.json; returns the split paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, rows in build_points24(seed, n_train, n_eval, target).items():
        paths[name] = out / f"{name}.jsonl"
        write_jsonl(paths[name], rows)  # atomic: a reader never sees half a file
    params = {"seed": seed, "n_train": n_train, "n_eval": n_eval, "target": target, "reward": "points24"}
    files = {k: p.name for k, p in paths.items()}
    manifest = out / "manifest.json"
    atomic_write_text(manifest, json.dumps({**params, **manifest_extra, "files": files}, indent=1) + "\n")
    return paths


def cached_points24(
    root: str | Path, seed: int = 0, n_train: int = 1000, n_eval: int = 234, target: int = TARGET
) -> dict[str, Path]:
    """The split paths in root/<key>/, written on first use; the key hashes the arguments and TASK_VERSION.

    Reused only when manifest.json reads back with the same arguments and every split file is there, so an
    interrupted write is redone (every file is written atomically, the manifest last; output is deterministic,
    so two processes writing at once write the same bytes)."""
    params = {"seed": seed, "n_train": n_train, "n_eval": n_eval, "target": target, "version": TASK_VERSION}
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    out = Path(root) / key
    paths = {name: out / f"{name}.jsonl" for name in ("train", "eval_id", "eval_ood")}
    try:
        manifest = json.loads((out / "manifest.json").read_text())
        if all(manifest.get(k) == v for k, v in params.items()) and all(p.exists() for p in paths.values()):
            return paths
    except (OSError, ValueError):
        pass
    return write_points24(out, seed, n_train, n_eval, target, version=TASK_VERSION)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m chord.tasks.points24", description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n-train", type=int, default=1000)
    ap.add_argument("--n-eval", type=int, default=234, help="hands per eval split (official: 234 episodes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--target", type=int, default=TARGET)
    a = ap.parse_args(argv)
    for name, path in write_points24(a.out, a.seed, a.n_train, a.n_eval, a.target).items():
        print(f"{name}: {path}")


if __name__ == "__main__":
    main()

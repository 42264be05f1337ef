"""Shared model-output cases for the math reward: adversarial strings (tests and benchmarks/bench_math_reward.py)
and a generator of realistic R1-style responses."""

from __future__ import annotations

import random

# (response, ground truth): none may score as correct, each must finish within the reward's deadline
ADVERSARIAL: list[tuple[str, str]] = [
    (r"\boxed{10^{10^{10^{10}}}}", "42"),
    (r"\boxed{9^{9^{9^{9}}}}", "42"),
    (r"\boxed{2^{2^{40}}}", "1"),
    (r"\boxed{100000!}", "42"),
    (r"\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}", "1"),  # fits in the tail: reaches sympy
    ("{" * 10_000 + "1" + "}" * 10_000, "1"),
    ("y" * 1_000_000, "42"),
    (r"\boxed{" * 150_000, "42"),
    (r"\boxed{４２}", "42"),  # fullwidth digits
    (r"\boxed{х+1}", "x+1"),  # Cyrillic х
    (r"\boxed{\sum_{n=1}^{10^{12}} n}", "42"),
]

def _answer(rng: random.Random) -> tuple[str, str]:
    """A fresh (prediction, ground truth) pair that agree: distinct values, so no parse is cached."""
    a, b = rng.randint(2, 10_000), rng.randint(2, 97)
    kind = rng.randrange(5)
    if kind == 0:
        return str(a), str(a)
    if kind == 1:
        return rf"\frac{{{a}}}{{{b}}}", f"{a}/{b}"
    if kind == 2:
        return rf"{b}\sqrt{{{a}}}", rf"{b}\sqrt{{{a}}}"
    if kind == 3:
        return f"{a}.5", rf"\frac{{{2 * a + 1}}}{{2}}"
    return rf"x^2+{a}", rf"{a}+x^2"


def realistic_responses(n: int, seed: int = 0, correct_fraction: float = 0.5) -> list[tuple[str, str]]:
    """R1-style responses (~2 KB of reasoning, then a boxed answer), about half of them correct."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pred, gold = _answer(rng)
        if rng.random() >= correct_fraction:
            pred = f"{pred}+1"
        steps = " ".join(f"Step {j}: we simplify the expression and check the case {rng.randint(1, 99)}."
                         for j in range(25))
        out.append((f"<think>{steps}</think>\nTherefore the answer is $\\boxed{{{pred}}}$.", gold))
    return out

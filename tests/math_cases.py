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

_ANSWERS = [("42", "42"), (r"\frac{3}{4}", "3/4"), (r"2\sqrt{3}", r"2\sqrt{3}"), ("-7", "-7"),
            (r"\frac{\pi}{6}", r"\pi/6"), ("0.25", r"\frac{1}{4}"), (r"x^2+1", r"1+x^2"), ("1000", "1000")]


def realistic_responses(n: int, seed: int = 0, correct_fraction: float = 0.5) -> list[tuple[str, str]]:
    """R1-style responses (~2 KB of reasoning, then a boxed answer), about half of them correct."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        pred, gold = _ANSWERS[i % len(_ANSWERS)]
        if rng.random() >= correct_fraction:
            pred = f"{pred}+1"
        steps = " ".join(f"Step {j}: we simplify the expression and check the case {rng.randint(1, 99)}."
                         for j in range(25))
        out.append((f"<think>{steps}</think>\nTherefore the answer is $\\boxed{{{pred}}}$.", gold))
    return out

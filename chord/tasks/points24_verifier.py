"""24-point (GeneralPoints) verifier: a safe parser and exact arithmetic, never eval.

Holds the reward of chord.tasks.points24 (`points24_reward`) and the ground truth it reads
(`ground_truth`); the generator and the expert demonstrations are in chord.tasks.points24.

The response's last `Answer: <expression>` line is graded (anything after a `=` on that line, e.g.
`= 24`, is ignored, as the official harness keeps what precedes `=`). The expression is digits,
`+ - * /`, parentheses and spaces only; there is no unary minus (the cards are positive and the
official verifier rejects an operator after `(` as well). It is parsed by recursive descent into a
small tree and evaluated in `Fraction`s: float evaluation scores the correct `8/(3-8/3)` as
23.99999999999999, a bug of the official env (LeslieTrue/SFTvsRL). Division by zero is a wrong answer.

Correct = well-formed, the numbers used are exactly the card values (as a multiset) and the value
equals the target. The ground truth is JSON written by `ground_truth()`: cards, rule, values, target.
`points24_reward` (reward `points24` in chord.rewards): score 1/0, info `format` (an answer line
that parses), `cards` (exactly the card values used) and `correct`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from typing import TypeAlias

MAX_EXPR_CHARS = 64  # a 4-card answer needs ~20 chars; the cap bounds parse depth and Fraction sizes
TAIL_CHARS = 4096  # only the tail of a response is scanned: bounded time on hostile output
ANSWER_PREFIX = "Answer:"

Node: TypeAlias = "int | tuple[str, Node, Node]"  # a card number, or (operator, left, right)


class ExprError(ValueError):
    """Not a well-formed expression (or longer than MAX_EXPR_CHARS)."""


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c in " \t":
            i += 1
        elif "0" <= c <= "9":  # ASCII only: str.isdigit() also accepts '²' and other digits
            j = i
            while j < len(text) and "0" <= text[j] <= "9":
                j += 1
            out.append(text[i:j])
            i = j
        elif c in "+-*/()":
            out.append(c)
            i += 1
        else:
            raise ExprError(f"unexpected character {c!r}")
    return out


class _Parser:
    """expr := term (('+'|'-') term)*; term := factor (('*'|'/') factor)*; factor := NUMBER | '(' expr ')'."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def expr(self) -> Node:
        node = self.term()
        while (op := self.peek()) in ("+", "-"):
            self.i += 1
            node = (op, node, self.term())
        return node

    def term(self) -> Node:
        node = self.factor()
        while (op := self.peek()) in ("*", "/"):
            self.i += 1
            node = (op, node, self.factor())
        return node

    def factor(self) -> Node:
        tok = self.peek()
        self.i += 1
        if tok == "(":
            node = self.expr()
            if self.peek() != ")":
                raise ExprError("missing ')'")
            self.i += 1
            return node
        if tok is not None and tok.isdigit():
            return int(tok)
        raise ExprError(f"expected a number or '(', got {tok!r}")


def parse(text: str) -> Node:
    """The expression tree of `text`; ExprError if malformed, empty or over MAX_EXPR_CHARS."""
    if not isinstance(text, str) or len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"not a string of at most {MAX_EXPR_CHARS} characters")
    p = _Parser(_tokens(text))
    node = p.expr()
    if p.peek() is not None:
        raise ExprError(f"unexpected {p.peek()!r} after the expression")
    return node


def evaluate(node: Node) -> Fraction:
    """Exact value; raises ZeroDivisionError on a division by zero."""
    if isinstance(node, int):
        return Fraction(node)
    op, a, b = node
    x, y = evaluate(a), evaluate(b)
    return x + y if op == "+" else x - y if op == "-" else x * y if op == "*" else x / y


def numbers(node: Node) -> list[int]:
    """The numbers the expression uses, left to right."""
    return [node] if isinstance(node, int) else numbers(node[1]) + numbers(node[2])


def check(expr: str, values: Sequence[int], target: int = 24) -> tuple[bool, bool, bool]:
    """(parses, uses exactly `values`, correct) for one expression."""
    try:
        node = parse(expr)
    except ExprError:
        return False, False, False
    cards = Counter(numbers(node)) == Counter(values)
    try:
        hit = evaluate(node) == target
    except ZeroDivisionError:
        hit = False
    return True, cards, cards and hit


def extract_answer(response: str) -> str | None:
    """The expression on the last `Answer:` line (before any `=`), stripped; None if there is none."""
    tail = response[-TAIL_CHARS:]
    at = tail.rfind(ANSWER_PREFIX)
    if at < 0:
        return None
    line = tail[at + len(ANSWER_PREFIX) :].partition("\n")[0]
    return line.partition("=")[0].strip()


def ground_truth(cards: Sequence[str], rule: str, values: Sequence[int], target: int = 24) -> str:
    """The ground-truth string of a hand: compact JSON the verifier reads back with read_ground_truth."""
    return json.dumps(
        {"cards": list(cards), "rule": rule, "values": list(values), "target": target}, separators=(",", ":")
    )


def read_ground_truth(answer: str) -> tuple[list[int], int]:
    """(card values, target); a malformed ground truth is a data bug: ValueError (counted by score_all)."""
    gt = json.loads(answer)
    values, target = gt.get("values"), gt.get("target", 24)
    if not (
        isinstance(values, list) and values and all(type(v) is int for v in values) and type(target) is int
    ):
        raise ValueError(f"points24 ground truth needs int 'values' and 'target', got {answer[:200]!r}")
    return values, target


def points24_reward(response: str, answer: str) -> tuple[float, dict[str, float]]:
    """1.0 if the last `Answer:` expression uses each card value once and equals the target, else 0.0."""
    values, target = read_ground_truth(answer)
    expr = extract_answer(response) if isinstance(response, str) else None
    ok_format, ok_cards, ok = check(expr, values, target) if expr is not None else (False, False, False)
    return float(ok), {"format": float(ok_format), "cards": float(ok_cards), "correct": float(ok)}

"""Build the CHORD paper's expert (SFT) and RL prompt splits from OpenR1-Math-220k.

Holds the generator of the paper's math task (`prepare` and the CLI `main`); its expert
demonstrations are DeepSeek-R1 generations taken from the source, not written here. No reward of
its own: recipes/math*.yaml grade it with the built-in reward `math` (chord.rewards.math_verifier).

    python -m chord.tasks.openr1 --out data/openr1 \\
        [--source open-r1/OpenR1-Math-220k | LOCAL_FILE_OR_FOLDER] [--split train] [--seed 42] \\
        [--sft-problems 5000] [--rl-problems 20000] [--max-tokens 8192] \\
        [--tokenizer Qwen/Qwen2.5-1.5B-Instruct] [--system-prompt TEXT]

Writes three files into --out:

* ``sft.jsonl``: ``{"messages": [system?, user, assistant], "answer", "uuid"}`` per problem, the
  assistant turn being the problem's FIRST good DeepSeek-R1 generation (no extra randomness). Loads
  with ``data.expert`` ``messages_column: messages``.
* ``rl.jsonl``: ``{"prompt", "answer", "uuid"}`` with an integer answer, from problems disjoint from
  the SFT ones; the system prompt is not stored per row: set ``data.prompts.system_prompt`` to the
  manifest's ``system_prompt``.
* ``manifest.json``: arguments, per-reason counts, sha256 of both files, the length measure.

A generation is *good* when ``correctness_math_verify`` marks it correct and it is at most
--max-tokens long, measured with --tokenizer if given (the paper used Qwen2.5's), else approximated
as ceil(characters / 4) (recorded as ``"length_measure": "chars/4"``). Problems containing CJK text
are dropped. SFT takes --sft-problems problems with >= 1 good generation; RL takes --rl-problems of
the remaining problems with an integer answer and >= 2 good generations; both drawn with
``random.Random(seed)``, written in the drawn order. Fewer eligible than asked: all are taken and
the shortfall is reported, not fatal. Malformed rows are skipped and counted per reason.

The source goes through ``chord.data.loading.load_rows`` (a hub id loads its default config; pass a
local file or folder for another). Nothing is downloaded at import time. Same input and seed give
byte-identical ``sft.jsonl`` and ``rl.jsonl``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from chord.data.loading import DataError, load_rows
from chord.logger import atomic_write_text

DEFAULT_SOURCE = "open-r1/OpenR1-Math-220k"
SYSTEM_PROMPT = (
    "You are a helpful assistant that solves math problems. First think through the problem step by "
    "step inside <think> </think> tags, then give a concise solution and put the final answer in "
    "\\boxed{}."
)
REQUIRED_COLUMNS = ("problem", "answer", "generations", "correctness_math_verify")
_CHUNK_ROWS = 512  # rows per tokenizer batch: large enough for the fast tokenizer's parallelism

# CJK ideographs (URO, ext. A, ext. B-F, compatibility), CJK symbols/punctuation, kana, Hangul, fullwidth forms
_CJK = re.compile(
    "[\u1100-\u11ff\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3130-\u318f\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0002ebef]"
)
_INTEGER = re.compile(r"[+-]?[0-9]+")

LengthFn = Callable[[list[str]], list[int]]


def is_cjk(text: str) -> bool:
    """True when the text holds any CJK ideograph, kana, Hangul, CJK punctuation or fullwidth form."""
    return _CJK.search(text) is not None


def integer_answer(answer: Any) -> str | None:
    """The answer as a canonical integer string ("$-07$" -> "-7"), or None when it is not an integer."""
    if not isinstance(answer, str):
        return None
    s = answer.strip().strip("$").strip()
    if not _INTEGER.fullmatch(s):
        return None
    sign = "-" if s[0] == "-" else ""
    digits = s.lstrip("+-").lstrip("0") or "0"
    return ("" if digits == "0" else sign) + digits  # string ops: no int() size limit on huge answers


def good_generations(correctness: Sequence[Any], lengths: Sequence[int | None], max_tokens: int) -> list[int]:
    """Indices of generations marked correct (exactly True) whose measured length is <= max_tokens."""
    return [i for i, (ok, n) in enumerate(zip(correctness, lengths))
            if ok is True and n is not None and n <= max_tokens]


def char_lengths(texts: list[str]) -> list[int]:
    """The tokenizer-free approximation: ceil(characters / 4)."""
    return [-(-len(t) // 4) for t in texts]


def tokenizer_lengths(name_or_path: str) -> LengthFn:
    """Batched token counts, len(tok(text).input_ids), with a hub or local tokenizer."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot load tokenizer '{name_or_path}': "
                        f"{(str(e).splitlines() or [type(e).__name__])[0]}") from None

    def lengths(texts: list[str]) -> list[int]:
        if not texts:
            return []
        # verbose=False: long traces would otherwise warn about model_max_length on every batch;
        # no masks: only the ids' count is used, and building masks costs about a third of the time
        enc = tok(texts, verbose=False, return_attention_mask=False, return_token_type_ids=False)
        return [len(ids) for ids in enc["input_ids"]]

    return lengths


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class _Problem:
    index: int  # row position in the source: the SFT text is re-read from there, not kept in memory
    uuid: str
    problem: str
    answer: str
    n_good: int
    first_good: int


def _validated(row: dict, index: int) -> tuple[str, str, str, list[str], list[Any]]:
    problem, answer = row.get("problem"), row.get("answer")
    gens, correct = row.get("generations"), row.get("correctness_math_verify")
    if problem is None or answer is None or gens is None or correct is None:
        raise _Skip("missing_field")
    if not isinstance(problem, str) or not isinstance(answer, str):
        raise _Skip("not_a_string")
    if not problem.strip():
        raise _Skip("empty_problem")
    if not isinstance(gens, list) or not all(isinstance(g, str) for g in gens):
        raise _Skip("bad_generations")
    if not isinstance(correct, list):
        raise _Skip("bad_correctness")
    if len(gens) != len(correct):
        raise _Skip("length_mismatch")
    uuid = row.get("uuid")
    uuid = uuid if isinstance(uuid, str) and uuid else f"row-{index}"
    return uuid, problem, answer, gens, correct


def _measure(chunk: list[tuple], length_fn: LengthFn, max_tokens: int, counts: Counter) -> list[_Problem]:
    """Measure only the correct generations of a chunk of rows, in one batch; drop the texts."""
    texts = [g for *_, gens, correct in chunk for g, ok in zip(gens, correct) if ok is True]
    measured = iter(length_fn(texts))
    out = []
    for index, uuid, problem, answer, _gens, correct in chunk:
        lengths = [next(measured) if ok is True else None for ok in correct]
        good = good_generations(correct, lengths, max_tokens)
        n_correct = sum(ok is True for ok in correct)
        counts["generations_correct"] += n_correct
        counts["generations_too_long"] += n_correct - len(good)
        if good:
            out.append(_Problem(index, uuid, problem, answer, len(good), good[0]))
    return out


def _scan(rows: Any, length_fn: LengthFn, max_tokens: int, counts: Counter,
          skipped: Counter) -> list[_Problem]:
    """One pass over the rows: validate, drop CJK, keep metadata of problems with >= 1 good generation."""
    problems: list[_Problem] = []
    chunk: list[tuple] = []
    for index, row in enumerate(rows):
        counts["rows_read"] += 1
        try:
            uuid, problem, answer, gens, correct = _validated(row, index)
        except _Skip as s:
            skipped[s.reason] += 1
            continue
        if is_cjk(problem):
            counts["cjk_dropped"] += 1
            continue
        counts["problems_kept"] += 1
        chunk.append((index, uuid, problem, answer, gens, correct))
        if len(chunk) >= _CHUNK_ROWS:
            problems += _measure(chunk, length_fn, max_tokens, counts)
            chunk = []
    problems += _measure(chunk, length_fn, max_tokens, counts)
    return problems


def _draw(rng: random.Random, pool: list[_Problem], k: int, name: str, shortfall: dict) -> list[_Problem]:
    if k > len(pool):
        shortfall[name] = {"requested": k, "available": len(pool)}
        print(f"prepare_openr1: warning: {name}: {k} problems requested, only {len(pool)} eligible; "
              f"taking all", file=sys.stderr)
        k = len(pool)
    return rng.sample(pool, k)


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    """Write atomically (temp file + os.replace); returns the sha256 of the bytes written."""
    digest = hashlib.sha256()
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        for row in rows:
            line = (json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")
            digest.update(line)
            f.write(line)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return digest.hexdigest()


def prepare(out_dir: str | Path, *, source: str = DEFAULT_SOURCE, split: str = "train", seed: int = 42,
            sft_problems: int = 5000, rl_problems: int = 20000, max_tokens: int = 8192,
            tokenizer: str | None = None, system_prompt: str = SYSTEM_PROMPT,
            rows: Sequence[dict] | None = None) -> dict:
    """Write sft.jsonl, rl.jsonl and manifest.json into out_dir; returns the manifest.

    `rows` (a datasets.Dataset or a list of dicts) replaces loading `source`, which is then only recorded.
    """
    args = {"source": source, "split": split, "seed": seed, "sft_problems": sft_problems,
            "rl_problems": rl_problems, "max_tokens": max_tokens, "tokenizer": tokenizer,
            "system_prompt": system_prompt}
    if rows is None:
        try:
            rows = load_rows(source, split)
        except DataError:
            raise
        except Exception as e:  # e.g. a json file whose rows disagree on a column's type
            raise DataError(f"cannot read '{source}': {type(e).__name__}: {(str(e).splitlines() or [''])[0]}") from None
    columns = getattr(rows, "column_names", None)
    if columns is not None:
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise DataError(f"'{source}' lacks required column(s) {', '.join(missing)} "
                            f"(has: {', '.join(columns)})")
        # decode only what is used: the `messages` column repeats a generation's text
        rows = rows.select_columns([c for c in (*REQUIRED_COLUMNS, "uuid") if c in columns])
    length_fn = tokenizer_lengths(tokenizer) if tokenizer else char_lengths

    counts: Counter = Counter(rows_read=0, cjk_dropped=0, problems_kept=0, generations_correct=0,
                              generations_too_long=0)
    skipped: Counter = Counter()
    skipped.update(getattr(rows, "bad", {}))  # jsonl lines that were not row objects
    counts["rows_read"] += sum(skipped.values())
    problems = _scan(rows, length_fn, max_tokens, counts, skipped)
    if counts["rows_read"] == 0:
        raise DataError(f"'{source}' has no rows")

    rng = random.Random(seed)
    shortfall: dict = {}
    sft = _draw(rng, problems, sft_problems, "sft", shortfall)
    sft_rows, sft_ids = [], {p.index for p in sft}
    sft_texts = {p.problem.strip() for p in sft}
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for p in sft:
        generation = rows[p.index]["generations"][p.first_good]
        sft_rows.append({"messages": [*system, {"role": "user", "content": p.problem},
                                      {"role": "assistant", "content": generation}],
                         "answer": p.answer, "uuid": p.uuid})

    rl_candidates = [p for p in problems if p.n_good >= 2 and integer_answer(p.answer) is not None]
    # disjoint by row AND by problem text: OpenR1 repeats some problems under different uuids
    rl_pool = [p for p in rl_candidates if p.index not in sft_ids and p.problem.strip() not in sft_texts]
    rl = _draw(rng, rl_pool, rl_problems, "rl", shortfall)
    rl_rows = [{"prompt": p.problem, "answer": integer_answer(p.answer), "uuid": p.uuid} for p in rl]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hashes = {"sft.jsonl": _write_jsonl(out / "sft.jsonl", sft_rows),
              "rl.jsonl": _write_jsonl(out / "rl.jsonl", rl_rows)}
    manifest: dict = {
        "source": source, "split": split, "seed": seed, "args": args,
        "counts": {**counts, "skipped": dict(sorted(skipped.items())),
                   "problems_with_good": len(problems), "rl_candidates": len(rl_candidates),
                   "rl_eligible": len(rl_pool), "sft_written": len(sft_rows), "rl_written": len(rl_rows)},
        "shortfall": shortfall,
        "sha256": hashes,
        "system_prompt": system_prompt or None,
        "sft_generation": "first_good",
        "length_measure": f"tokenizer:{tokenizer}" if tokenizer else "chars/4",
        "max_tokens": max_tokens,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    try:
        from chord import __version__
        manifest["chord_version"] = __version__
    except ImportError:
        pass
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def _non_negative(s: str) -> int:
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {v}")
    return v


def _positive(s: str) -> int:
    v = int(s)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m chord.tasks.openr1",
                                 description="OpenR1-Math-220k -> CHORD sft.jsonl / rl.jsonl / manifest.json")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--source", default=DEFAULT_SOURCE, help="hub id, or a local .jsonl/.json/.parquet file or folder")
    ap.add_argument("--split", default="train")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--sft-problems", type=_non_negative, default=5000)
    ap.add_argument("--rl-problems", type=_non_negative, default=20000)
    ap.add_argument("--max-tokens", type=_positive, default=8192)
    ap.add_argument("--tokenizer", default=None, help="hub id or folder; default: length ~ characters / 4")
    ap.add_argument("--system-prompt", default=SYSTEM_PROMPT, help='"" for no system message')
    a = ap.parse_args(argv)
    try:
        m = prepare(a.out, source=a.source, split=a.split, seed=a.seed, sft_problems=a.sft_problems,
                    rl_problems=a.rl_problems, max_tokens=a.max_tokens, tokenizer=a.tokenizer,
                    system_prompt=a.system_prompt)
    except DataError as e:
        print(f"prepare_openr1: {e}", file=sys.stderr)
        return 2
    c = m["counts"]
    print(f"prepare_openr1: read {c['rows_read']} rows, skipped {sum(c['skipped'].values())}, "
          f"CJK dropped {c['cjk_dropped']}; wrote {c['sft_written']} SFT and {c['rl_written']} RL rows "
          f"to {a.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

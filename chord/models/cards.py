"""The built-in card-sum base model (`model.path: cards`): a few-million-parameter Qwen2 pretrained offline.

Pretraining, deterministic from a seed, mixes two kinds of text (chord.tasks.cards):
* chat-formatted hands under both rules answered in the **terse** style, with noisy answers (right
  with probability `correct`, else off by 1 or 2): the base answers hands, weakly;
* plain text, half arithmetic facts (`17 + 4 = 21.`), half what a hand's cards are worth under a rule
  (`If J, Q and K count as 10: 7, K, 4 are worth 7, 10, 4.`): it knows the pieces of the expert's procedure.
It never sees the step-by-step expert style. Held-out hands (chord.tasks.cards.split) are never
pretrained on, under either rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

import torch

from chord.config.cache_dir import cache_writes, probe_writable
from chord.logger import say
from chord.models.tiny import new_qwen2, save_model_folder, train_tokenizer
from chord.tasks import cards

BUILD_VERSION = 3
# The default base ships in the repository (7.6 MB): a fresh clone's first run starts in seconds instead of
# after ~8 minutes of pretraining, and every clone starts from the same weights (their sha256 is in
# chord_build.json). `python -m chord.models.cards --ship` rebuilds it
# (docs/benchmark.md#the-base-model-modelpath-cards-chordmodelscardspy).
SHIPPED = Path(__file__).resolve().parent / "shipped"


def _example(tokenizer, rng: random.Random, hands: dict[str, list], correct: float, facts: float,
             worked: float = 0.0):
    """(context, target): the loss is on the target only (a hand's cards are random: nothing to learn)."""
    if worked and rng.random() < worked:  # plain text: sums of plain numbers worked step by step
        question, answer = cards.worked_sum(rng)
        return question, "\n" + answer + tokenizer.eos_token
    rule = rng.choice((cards.ID_RULE, cards.OOD_RULE))
    h = rng.choice(hands[rule])
    if rng.random() < facts:  # plain text: half arithmetic facts, half what cards are worth
        fact = cards.arithmetic_fact(rng) if rng.random() < 0.5 else cards.value_fact(h, rule)
        context, target = fact.split(" = ") if " = " in fact else fact.split(" are worth ")
        sep = " =" if " = " in fact else " are worth"
        return context + sep, " " + target + tokenizer.eos_token
    msgs = [{"role": "user", "content": cards.prompt_text(h, rule)}]
    context = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    return context, cards.noisy_answer(h, rule, rng, correct) + tokenizer.eos_token + "\n"


def _batch(tokenizer, rng: random.Random, hands: dict[str, list], size: int, correct: float, facts: float,
           worked: float = 0.0):
    ids, labels = [], []
    for _ in range(size):
        context, target = _example(tokenizer, rng, hands, correct, facts, worked)
        c = tokenizer(context, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"]
        ids.append(c + t)
        labels.append([-100] * len(c) + t)
    n = max(map(len, ids))
    pad = tokenizer.pad_token_id
    enc = {"input_ids": torch.tensor([x + [pad] * (n - len(x)) for x in ids]),
           "attention_mask": torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids])}
    return enc, torch.tensor([y + [-100] * (n - len(y)) for y in labels])


def _pretrain(model, tokenizer, seed: int, steps: int, batch: int, lr: float, correct: float, facts: float,
              log_every: int = 0, worked: float = 0.0, held_out_val: int = 0) -> None:
    rng = random.Random(seed + 23)
    parts = cards.split(seed=0, n_eval=100, n_val=held_out_val)  # the task files' split (builtin:cards uses seed 0)
    held_out = set(parts["eval_id"]) | set(parts["eval_ood"]) | set(parts["eval_val"])
    hands = {rule: [h for h in cards.all_hands() if h not in held_out] for rule in (cards.ID_RULE, cards.OOD_RULE)}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 50) * max(0.1, 1 - s / steps))
    model.train()
    for step in range(steps):
        enc, labels = _batch(tokenizer, rng, hands, batch, correct, facts, worked)
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if log_every and step % log_every == 0:
            print(f"pretrain step {step} loss {loss.item():.4f}", flush=True)
    model.eval()


def build_cards_model(cache_dir: str | Path, seed: int = 0, hidden_size: int = 192, num_layers: int = 4,
                      num_heads: int = 6, head_dim: int = 32, intermediate_size: int = 512, vocab_size: int = 384,
                      steps: int = 1000, batch: int = 64, lr: float = 2e-3, correct: float = 0.5,
                      facts: float = 0.5, log_every: int = 0, worked: float = 0.0, held_out_val: int = 0,
                      shipped: Path | None = SHIPPED) -> Path:
    """The card-sum base model folder for these arguments: the shipped one if it was built with them, else
    built once into cache_dir (deterministic for equal arguments on one machine) and reused. held_out_val: also
    never pretrain on the first N validation hands (builtin:cards_val), so validation, like test, holds hands the
    base has never seen."""
    args = dict(seed=seed, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
                intermediate_size=intermediate_size, vocab_size=vocab_size, steps=steps, batch=batch, lr=lr,
                correct=correct, facts=facts, version=BUILD_VERSION, task_version=cards.TASK_VERSION)
    if worked:  # absent at 0: the default base keeps its cache key
        args["worked"] = worked
    if held_out_val:  # likewise
        args["held_out_val"] = held_out_val
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    if shipped is not None and (shipped / f"cards-{key}" / "config.json").exists():
        return shipped / f"cards-{key}"
    final = Path(cache_dir) / f"cards-{key}"
    if (final / "config.json").exists():
        return final
    with cache_writes(cache_dir, "the built-in model 'cards'"):
        probe_writable(cache_dir)  # before minutes of pretraining, not after
        say(f"building the built-in model 'cards' into {final} (once: later runs reuse it)")
        t0 = time.perf_counter()
        torch.manual_seed(seed)
        tokenizer = train_tokenizer(cards.corpus(seed, 3000), vocab_size)
        model = new_qwen2(tokenizer, seed, hidden_size, num_layers, num_heads, head_dim, intermediate_size)
        _pretrain(model, tokenizer, seed, steps, batch, lr, correct, facts, log_every, worked, held_out_val)
        return save_model_folder(model, tokenizer, args, final, t0)


def ship(cache_dir: str | Path, worked: float = 0.0) -> Path:
    """Put a base (built into cache_dir if it is not there) into SHIPPED, with its weights' sha256 in
    chord_build.json, replacing the shipped folder of the same arguments. worked = 0: the default base
    (`model.path: cards`); worked > 0: the benchmark's math-setting base (docs/benchmark.md#two-settings), which
    never pretrains on the validation hands."""
    extra = {"worked": worked, "held_out_val": MATH_HELD_OUT_VAL} if worked else {}
    built = build_cards_model(cache_dir, log_every=100, shipped=None, **extra)
    tmp = SHIPPED / f".{built.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(built, tmp)
    info = json.loads((tmp / "chord_build.json").read_text())
    info["weights_sha256"] = weights_sha256(tmp)
    (tmp / "chord_build.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    shutil.rmtree(SHIPPED / built.name, ignore_errors=True)
    os.replace(tmp, SHIPPED / built.name)
    return SHIPPED / built.name


MATH_HELD_OUT_VAL = 100  # the validation hands of builtin:cards_val (chord.tasks.CARDS_VAL)


def weights_sha256(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(prog="python -m chord.models.cards", description=ship.__doc__)
    p.add_argument("--ship", action="store_true", required=True, help="rebuild (or reuse) and ship a base")
    p.add_argument("--worked", type=float, default=0.0,
                   help="0: the default base; > 0: the benchmark's math-setting base with this worked share")
    p.add_argument("--cache-dir", default=".cache/chord", help="where it is built (and reused from)")
    args = p.parse_args()
    folder = ship(args.cache_dir, args.worked)
    print(f"{folder} (weights sha256 {weights_sha256(folder)})")

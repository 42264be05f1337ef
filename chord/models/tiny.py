"""The built-in tiny model: a Qwen2 policy plus byte-level BPE tokenizer, built offline from a seed.

CHORD starts from a pretrained model, and its phi = p(1-p) weight gives almost no signal to a
random-init model (every p ~ 1/V), so the build ends with a short deterministic "base model"
warm-up: next-token prediction on chat-formatted sums answered in a terse style (`Answer: N`),
a different style from the step-by-step expert demonstrations. The result is a weak but non-trivial
starting policy, like an instruct model meeting unfamiliar expert traces.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from chord.config.cache_dir import cache_writes, probe_writable
from chord.logger import say
from chord.tasks.tiny import direct_answer, prompt_text, sum_pair, tiny_task_corpus

BUILD_VERSION = 2
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def train_tokenizer(corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # one token per digit: sums are then learnable digit by digit, as in real LLM tokenizers (Qwen)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    corpus = corpus + [f"<|im_start|>user\n{t}<|im_end|>" for t in ("system", "assistant")]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   model_max_length=512)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_tokenizer(seed: int = 0, vocab_size: int = 512):
    """The tiny model's tokenizer: byte-level BPE trained on the tiny task's text."""
    return train_tokenizer(tiny_task_corpus(seed, 3000), vocab_size)


def _warmup(model, tokenizer, seed: int, steps: int, batch: int, lr: float) -> None:
    """Deterministic next-token pretraining on terse chat-formatted sums."""
    rng = random.Random(seed + 17)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        texts = []
        for _ in range(batch):
            a, b = sum_pair(rng)
            msgs = [{"role": "user", "content": prompt_text(a, b)},
                    {"role": "assistant", "content": direct_answer(a, b)}]
            texts.append(tokenizer.apply_chat_template(msgs, tokenize=False))
        enc = tokenizer(texts, return_tensors="pt", padding=True)
        labels = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
        loss = model(**enc, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def build_tiny_model(cache_dir: str | Path, seed: int = 0, hidden_size: int = 128, num_layers: int = 2,
                     num_heads: int = 4, head_dim: int = 32, intermediate_size: int = 256, vocab_size: int = 512,
                     warmup_steps: int = 800, warmup_batch: int = 32, warmup_lr: float = 3e-3) -> Path:
    """Build (or reuse) the tiny model folder; deterministic for equal arguments.

    head_dim >= 32 because vLLM's CPU attention supports no smaller head. The folder is written to a
    temporary name and renamed, so concurrent builders never see a half-written model.
    """
    args = dict(seed=seed, hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads, head_dim=head_dim,
                intermediate_size=intermediate_size, vocab_size=vocab_size, warmup_steps=warmup_steps,
                warmup_batch=warmup_batch, warmup_lr=warmup_lr, version=BUILD_VERSION)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:12]
    final = Path(cache_dir) / f"tiny-{key}"
    if (final / "config.json").exists():
        return final
    with cache_writes(cache_dir, "the built-in model 'tiny'"):
        probe_writable(cache_dir)  # before the warm-up training, not after
        say(f"building the built-in model 'tiny' into {final} (once: later runs reuse it)")
        t0 = time.perf_counter()
        tokenizer = tiny_tokenizer(seed, vocab_size)
        model = new_qwen2(tokenizer, seed, hidden_size, num_layers, num_heads, head_dim, intermediate_size)
        if warmup_steps:
            _warmup(model, tokenizer, seed, warmup_steps, warmup_batch, warmup_lr)
        return save_model_folder(model, tokenizer, args, final, t0)


def new_qwen2(tokenizer, seed: int, hidden_size: int, num_layers: int, num_heads: int, head_dim: int,
              intermediate_size: int):
    """A random-init fp32 Qwen2 policy for `tokenizer` (untied head, 512 positions)."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, num_key_value_heads=num_heads, head_dim=head_dim,
        intermediate_size=intermediate_size, max_position_embeddings=512, tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, bos_token_id=None,
        torch_dtype="float32",
    )
    return Qwen2ForCausalLM(cfg)


def save_model_folder(model, tokenizer, args: dict, final: Path, t0: float) -> Path:
    """Write model, tokenizer and generation config to a temporary name, then rename it to `final`."""
    from transformers import GenerationConfig

    tmp = final.parent / f".{final.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    GenerationConfig(eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id).save_pretrained(str(tmp))
    (tmp / "chord_build.json").write_text(json.dumps({**args, "build_seconds": time.perf_counter() - t0}))
    try:
        os.replace(tmp, final)
    except OSError:  # another process won the race: its folder is equivalent
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"built {final.name} in {time.perf_counter() - t0:.0f} s")
    return final


def sum_prompts(tokenizer: Any, n: int = 3) -> list:
    """n chat-templated questions "What is a + b?" with their answers: prompts for engine checks
    (log-prob gaps, weight pushes, the GPU smoke test)."""
    from chord.types import PromptExample

    out = []
    for i in range(n):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": f"What is {i + 3} + {i + 11}?"}],
                                            add_generation_prompt=True, tokenize=True)
        ids = list(ids["input_ids"]) if hasattr(ids, "keys") else list(ids)
        out.append(PromptExample(ids, "", str(2 * i + 14), i))
    return out

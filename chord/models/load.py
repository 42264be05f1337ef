"""Load policies and tokenizers from a hub id, a local folder, or the built-in tiny model."""

from __future__ import annotations

from pathlib import Path

import torch

# model.dtype -> torch dtype: the one map (the schema allows exactly these names)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ModelError(ValueError):
    """A model reference that cannot be loaded; one-line message."""


def resolve_model_path(name_or_path: str, cache_dir: str | Path) -> str:
    """"tiny" / "cards" -> a built-in model (built once, cached); a local folder -> itself; else a hub id."""
    if name_or_path == "tiny":
        from chord.models.tiny import build_tiny_model

        return str(build_tiny_model(cache_dir))
    if name_or_path == "cards":
        from chord.models.cards import build_cards_model

        return str(build_cards_model(cache_dir))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model folder '{p}' has no config.json (expected a save_pretrained folder)")
        return str(p)
    if name_or_path.startswith((".", "/", "~")):
        raise ModelError(f"model path '{name_or_path}' does not exist")
    return name_or_path  # a hub id: transformers and vLLM download it


def load_tokenizer(path: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load tokenizer from '{path}': {str(e).splitlines()[0]}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def load_causal_lm(path: str, dtype: torch.dtype, attn_implementation: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model from '{path}': {str(e).splitlines()[0]}") from None

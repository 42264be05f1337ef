"""Load policies and tokenizers from a hub id, a local folder, or the built-in tiny model."""

from __future__ import annotations

from pathlib import Path

import torch

# model.dtype -> torch dtype: the one map (the schema allows exactly these names)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class ModelError(ValueError):
    """A model reference that cannot be loaded; one-line message."""


def resolve_model_path(name_or_path: str, cache_dir: str | Path, revision: str | None = None) -> str:
    """"tiny" / "cards" -> a built-in model (built once, cached); a local folder -> itself; else a hub id, or with
    `revision` (model.revision) that revision's snapshot folder, so the learner, vLLM, the tokenizer and exports
    all read the same pinned files."""
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
    if revision is None:
        return name_or_path  # a hub id: transformers and vLLM download it
    from huggingface_hub import snapshot_download

    try:  # with HF_HUB_OFFLINE=1 the snapshot must be in the cache already (a commit hash, or a ref seen before)
        return snapshot_download(name_or_path, revision=revision)
    except Exception as e:  # not found, offline without it, no access: many types, one line
        first = (str(e).splitlines() or [""])[0][:200]
        raise ModelError(f"model '{name_or_path}' at revision '{revision}': {type(e).__name__}: {first}") from None


def load_tokenizer(path: str, chat_template: str | None = None, template_kwargs: dict | None = None, *,
                   chat: bool = False):
    """The tokenizer of `path`; `chat_template` (model.chat_template: a Jinja template, or a file holding one)
    replaces its own; `template_kwargs` (model.chat_template_kwargs) reach every chat-template call chord
    makes (chord.data.loading); `chat`: it must have a chat template (training and evaluation build every
    prompt with it), else one ModelError line."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load tokenizer from '{path}': {str(e).splitlines()[0]}") from None
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    if chat_template is not None:
        tok.chat_template = _template_text(chat_template)
    tok.chord_template_kwargs = dict(template_kwargs or {})
    if chat and not tok.chat_template:
        raise ModelError(f"the tokenizer of '{path}' has no chat template: set model.chat_template (a Jinja "
                         "template, or a file holding one)")
    if chat:
        try:  # a template that cannot render one turn would fail on every row
            tok.apply_chat_template([{"role": "user", "content": "1 + 1?"}], add_generation_prompt=True,
                                    tokenize=False, **tok.chord_template_kwargs)
        except Exception as e:
            raise ModelError(f"model.chat_template does not render: {type(e).__name__}: "
                             f"{(str(e).splitlines() or [''])[0]}") from None
    return tok


def _template_text(value: str) -> str:
    """model.chat_template: Jinja text as it is, else the text of the file it names."""
    if "{{" in value or "{%" in value:
        return value
    p = Path(value).expanduser()
    if not p.is_file():
        raise ModelError(f"model.chat_template: '{value}' is neither a Jinja template nor an existing file")
    return p.read_text()


def load_causal_lm(path: str, dtype: torch.dtype, attn_implementation: str = "sdpa"):
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn_implementation)
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot load model from '{path}': {str(e).splitlines()[0]}") from None

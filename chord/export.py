"""Export a checkpoint's policy as a save_pretrained folder (with its tokenizer), for HF and vLLM.

    python -m chord.export runs/tiny-chord-phi OUT_DIR                  # the latest checkpoint
    python -m chord.export runs/tiny-chord-phi/checkpoints/step_40 OUT_DIR

Needs no GPU and no process group: the model architecture and tokenizer come from the run's
resolved config saved in the checkpoint, the weights from the checkpoint itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from chord.checkpoint import STATE, damage, find_in
from chord.checkpoint.ds_weights import policy_state_dict
from chord.config import ChordConfig, ConfigError
from chord.models.load import DTYPES, ModelError, load_causal_lm, load_tokenizer, resolve_model_path


def checkpoint_folder(path: Path) -> Path:
    """A step folder as given, or the `latest` one of a run folder or of its checkpoints folder."""

    if (path / STATE).is_file():
        problem = damage(path)  # sizes and sha256 before DeepSpeed's loader unpickles anything
        if problem:
            raise ConfigError(f"checkpoint {path} is damaged: {problem}")
        return path
    for root in (path / "checkpoints", path):
        found = find_in(root) if root.is_dir() else None
        if found is not None:
            return found
    raise ConfigError(f"{path}: no complete chord checkpoint here (a run folder, its checkpoints/ or a step_N folder)")


def export(ckpt: Path, out_dir: Path) -> Path:
    try:
        saved = json.loads((ckpt / STATE).read_text())
        cfg: ChordConfig = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(ChordConfig),
                                                               OmegaConf.create(saved["config"])))
    except Exception as e:  # a hand-edited or foreign trainer_state.json: JSON, YAML or schema errors
        first = (str(e).splitlines() or [""])[0][:200]
        raise ConfigError(f"checkpoint {ckpt}: unusable {STATE} ({type(e).__name__}: {first})") from None
    weights = policy_state_dict(ckpt)  # a bad checkpoint fails before the model is built or downloaded
    model_path = resolve_model_path(cfg.model.path, cfg.model.cache_dir)
    model = load_causal_lm(model_path, torch.float32)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    tied = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise ModelError(f"{ckpt} does not match {model_path}: missing {sorted(missing)[:5]}, "
                         f"unexpected {sorted(unexpected)[:5]}")
    model.to(DTYPES[cfg.model.dtype])  # the dtype the run trained in (validated: float32 | bfloat16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    load_tokenizer(model_path, cfg.model.chat_template).save_pretrained(str(out_dir))  # the template it trained with
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chord.export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="run folder, its checkpoints/ folder, or a step_N folder")
    p.add_argument("out_dir", type=Path)
    args = p.parse_args(argv)
    try:
        ckpt = checkpoint_folder(args.checkpoint)
        out = export(ckpt, args.out_dir)
    except (ConfigError, ModelError) as e:
        print(f"chord.export: {e}", file=sys.stderr)
        return 2
    print(f"chord.export: {ckpt} -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Export a checkpoint's policy as a save_pretrained folder (with its tokenizer), for HF and vLLM.

    python -m chord.export runs/tiny-chord-phi OUT_DIR                  # the latest checkpoint
    python -m chord.export runs/tiny-chord-phi/checkpoints/step_40 OUT_DIR
    python -m chord.export runs/tiny-chord-phi OUT_DIR --push-to-hub me/tiny-chord [--public] [--revision BRANCH]
    python -m chord.export runs/tiny-chord-phi/best --push-to-hub me/tiny-chord  # an export as it is

Needs no GPU and no process group: the model architecture and tokenizer come from the run's
resolved config saved in the checkpoint, the weights from the checkpoint itself. OUT_DIR gets a
README.md model card (chord.checkpoint.hub.model_card); --push-to-hub then uploads OUT_DIR, or an already
exported folder (final/, best/, an earlier OUT_DIR) with the README.md it has, a card written if it has none.
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
from chord.checkpoint.hub import HubError, check_push, push_folder, write_card
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
    model_path = resolve_model_path(cfg.model.path, cfg.model.cache_dir, cfg.model.revision)
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


def is_export(path: Path) -> bool:
    """A save_pretrained folder (final/, best/, an earlier export), not a checkpoint."""
    return (path / "config.json").is_file() and not (path / STATE).is_file()


def export_with_card(ckpt: Path, out_dir: Path) -> Path:
    """export(), then out_dir/README.md: the card of the checkpoint's run, its step and its config."""
    out = export(ckpt, out_dir)
    saved = json.loads((ckpt / STATE).read_text())
    run_folder = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    try:
        write_card(out, run_folder, step=int(saved["step"]), config_yaml=saved["config"])
    except Exception as e:  # the export itself is done and fine
        print(f"chord.export: warning: no README.md model card ({type(e).__name__}: {e})", file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m chord.export", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", type=Path, help="run folder, its checkpoints/ folder, or a step_N folder; with "
                   "--push-to-hub also an exported folder (final/, best/), pushed as it is")
    p.add_argument("out_dir", type=Path, nargs="?", help="the save_pretrained folder to write (none when pushing "
                   "an exported folder)")
    p.add_argument("--push-to-hub", metavar="REPO", help="then push the folder to this Hugging Face Hub repo "
                   "(owner/name, or name under the token's user; created if missing)")
    vis = p.add_mutually_exclusive_group()
    vis.add_argument("--private", dest="private", action="store_true", default=True,
                     help="a repo created by the push is private (the default)")
    vis.add_argument("--public", dest="private", action="store_false", help="a repo created by the push is public")
    p.add_argument("--revision", metavar="BRANCH", help="push to this branch (created from main if missing)")
    args = p.parse_args(argv)
    src, out = args.checkpoint, args.out_dir
    try:
        if args.push_to_hub:
            check_push(args.push_to_hub)  # refused before an export that can take minutes
        if is_export(src):
            if out is not None or not args.push_to_hub:
                raise ConfigError(f"{src} is an exported model already: push it with --push-to-hub REPO and no OUT_DIR")
            if not (src / "README.md").is_file():
                write_card(src)  # final/ and best/ have one after a finished run; an edited card is kept
            out = src
        elif out is None:
            raise ConfigError(f"{src}: give OUT_DIR, the folder to export the checkpoint to")
        else:
            ckpt = checkpoint_folder(src)
            out = export_with_card(ckpt, out)
            print(f"chord.export: {ckpt} -> {out}", file=sys.stderr)
    except (ConfigError, ModelError, HubError) as e:
        print(f"chord.export: {e}", file=sys.stderr)
        return 2
    if args.push_to_hub:
        try:
            url = push_folder(out, args.push_to_hub, private=args.private, revision=args.revision)
        except HubError as e:
            print(f"chord.export: push to {args.push_to_hub} failed: {e}", file=sys.stderr)
            return 1
        print(f"chord.export: pushed {out} to {args.push_to_hub}: {url}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

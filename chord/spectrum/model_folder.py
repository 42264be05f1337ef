"""Streaming access to save_pretrained folders: one tensor at a time through safetensors' safe_open.

A 7B model is ~15 GB in bf16 and the diagnostics need two or more of them: never build the model, never
load a whole file. Accepts a model folder (single-file or sharded with model.safetensors.index.json), or a
chord run folder holding a `final/` (else `best/`) export; a DeepSpeed checkpoint must be exported first.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from safetensors import safe_open

from chord.spectrum.maths import LAYER_ID

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
EXPORT_HINT = "export it first: python -m chord.export {path} OUT_DIR"


class InputError(ValueError):
    """Bad input for diagnostics or repairs; the CLI prints the message on one line and exits 2."""


def _is_model_folder(p: Path) -> bool:
    return (p / "config.json").is_file() and ((p / INDEX).is_file() or (p / SINGLE).is_file())


def resolve_model_folder(path: str | Path) -> Path:
    """The save_pretrained folder behind `path`: itself, or a chord run's final/ (else best/) export."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if not p.is_dir():
        raise InputError(f"{p}: not a folder (expected a save_pretrained model folder or a chord run folder)")
    if _is_model_folder(p):
        return p
    for sub in ("final", "best"):  # chord.train writes these exports (learner.export -> save_pretrained)
        if _is_model_folder(p / sub):
            return p / sub
    if (p / "trainer_state.json").is_file() or (p / "checkpoints").is_dir() or p.name == "checkpoints":
        raise InputError(
            f"{p}: a chord checkpoint holds DeepSpeed state, not model weights; " + EXPORT_HINT.format(path=p)
        )
    stages = sorted(
        str(s.relative_to(p))
        for s in p.glob("stage*/*")
        if s.name in ("final", "best") and _is_model_folder(s)
    )
    if stages:
        raise InputError(f"{p}: a staged run; name one stage's export: {', '.join(stages)}")
    if (p / "config.json").is_file():
        raise InputError(f"{p}: no {SINGLE} or {INDEX} (only safetensors weights are read)")
    raise InputError(f"{p}: not a save_pretrained model folder (no config.json) nor a chord run folder")


class ModelFolder:
    """Tensor names, shapes and dtypes of a save_pretrained folder, read from safetensors headers only."""

    def __init__(self, path: str | Path) -> None:
        self.path = resolve_model_folder(path)
        self.config: dict = json.loads((self.path / "config.json").read_text())
        if (self.path / INDEX).is_file():
            weight_map: dict[str, str] = json.loads((self.path / INDEX).read_text())["weight_map"]
        else:
            with safe_open(str(self.path / SINGLE), framework="pt") as f:
                weight_map = {name: SINGLE for name in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        self.files: dict[str, str] = weight_map  # tensor name -> file name inside the folder
        missing = sorted({f for f in weight_map.values() if not (self.path / f).is_file()})
        if missing:
            raise InputError(
                f"{self.path}: weight files named in {INDEX} are missing: {', '.join(missing[:3])}"
            )

    def names(self) -> list[str]:
        return list(self.files)

    def shape(self, name: str) -> tuple[int, ...]:
        with safe_open(str(self.path / self.files[name]), framework="pt") as f:
            return tuple(f.get_slice(name).get_shape())

    def tensor(self, name: str) -> torch.Tensor:
        """One tensor, read from its shard through the memory map; nothing else is loaded."""
        with safe_open(str(self.path / self.files[name]), framework="pt") as f:
            return f.get_tensor(name)

    def iter_tensors(self, names: Iterable[str]) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) one by one, in the order given; the caller drops each before the next."""
        for name in names:
            yield name, self.tensor(name)

    def num_layers(self) -> int:
        """Decoder depth, from the tensor names (1 + the largest layer index)."""
        ids = [int(m.group(1)) for n in self.files if (m := LAYER_ID.search(n))]
        return max(ids) + 1 if ids else 0

    def shards(self) -> list[str]:
        return sorted(set(self.files.values()))


def check_compatible(folders: list[ModelFolder], names: Iterable[str]) -> None:
    """Same architecture (config model_type and depth) and the same shape for every named matrix."""
    first = folders[0]
    for other in folders[1:]:
        for key in ("model_type", "num_hidden_layers", "hidden_size"):
            a, b = first.config.get(key), other.config.get(key)
            if a != b:
                raise InputError(f"{first.path} and {other.path} differ in config {key}: {a} vs {b}")
        for name in names:
            if name not in other.files:
                raise InputError(f"{other.path} has no tensor {name} (present in {first.path})")
            if first.shape(name) != other.shape(name):
                raise InputError(
                    f"{name}: shape {first.shape(name)} in {first.path} but "
                    f"{other.shape(name)} in {other.path}"
                )

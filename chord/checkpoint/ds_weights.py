"""Read the policy's full fp32 weights out of a checkpoint folder that chord saved with DeepSpeed, offline.

ZeRO-0 keeps the whole module in `mp_rank_00_model_states.pt`; ZeRO-1/2/3 keep the fp32 master
weights partitioned across `*_optim_states.pt` files, which DeepSpeed's zero_to_fp32 reassembles
for any world size. No process group, no engine, CPU only.

The ZeRO-0 file is read as data (`weights_only=True`: tensors and plain containers, no code);
zero_to_fp32 unpickles, so callers verify the checkpoint's recorded hashes first (chord.checkpoint.damage).
"""

from __future__ import annotations

from pathlib import Path

import torch

from chord.models.load import ModelError


def policy_state_dict(ckpt: Path) -> dict[str, torch.Tensor]:
    """HF-named fp32 tensors of the policy saved in `ckpt` (a `checkpoints/step_N` folder)."""
    try:
        if any(ckpt.glob("*zero_pp_rank_*optim_states.pt")):
            from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

            state = get_fp32_state_dict_from_zero_checkpoint(str(ckpt.parent), tag=ckpt.name)
        else:
            state = torch.load(ckpt / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=True)["module"]
        return {k: v.float().contiguous() for k, v in state.items()}
    except Exception as e:  # UnpicklingError (a file that wants to run code), a truncated zip, a missing key...
        first = (str(e).splitlines() or [""])[0][:200]
        raise ModelError(f"checkpoint {ckpt}: cannot read the policy weights ({type(e).__name__}: {first})") from None

"""vLLM worker extension that reloads weights in place (mixed into vLLM's Worker).

Writing into vLLM parameters is silently ignored on CPU (the GEMMs use packed copies) and
`model.load_weights` fails there; `Worker.reload_weights` re-runs the loader's post-processing and
works on CPU and GPU (docs/architecture.md#weight-push). A multiprocess engine receives a safetensors path, because
tensors do not survive collective_rpc to another process as tensors.
"""

from __future__ import annotations

import logging
from typing import Any


def _not_rotary(record: logging.LogRecord) -> bool:
    # Rotary embeddings own a computed cos/sin cache, not a checkpoint weight: vLLM keeps its tensor
    # and warns on every reload. Any other layer that fails to load is still reported.
    return not (record.args and record.args[0] == "RotaryEmbedding")


logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_not_rotary)


class WeightSyncExtension:
    def chord_reload_weights(self: Any, payload: Any) -> int:
        """payload: list of (name, tensor) (in-process) or a path to a safetensors file."""
        if isinstance(payload, str):
            from safetensors.torch import load_file

            named = list(load_file(payload).items())
        else:
            named = list(payload)
        self.reload_weights(weights_iterator=iter(named), is_checkpoint_format=True)
        return len(named)

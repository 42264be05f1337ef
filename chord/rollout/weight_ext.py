"""vLLM worker extension that reloads weights in place (mixed into vLLM's Worker).

Writing into vLLM parameters is silently ignored on CPU (the GEMMs use packed copies) and
`model.load_weights` fails there; `Worker.reload_weights` re-runs the loader's post-processing and
works on CPU and GPU (docs/architecture.md#weight-push). An engine in this process receives tensors;
one in its own process receives raw bytes with dtype and shape (tensors do not survive
collective_rpc to another process as tensors), one bucket per call: no file, no /dev/shm.
"""

from __future__ import annotations

import logging
from typing import Any

import torch


def _not_rotary(record: logging.LogRecord) -> bool:
    # Rotary embeddings own a computed cos/sin cache, not a checkpoint weight: vLLM keeps its tensor
    # and warns on every reload. Any other layer that fails to load is still reported.
    return not (record.args and record.args[0] == "RotaryEmbedding")


logging.getLogger("vllm.model_executor.model_loader.reload.layerwise").addFilter(_not_rotary)


def to_wire(named: list[tuple[str, torch.Tensor]]) -> list[tuple[str, str, list[int], bytes]]:
    """(name, dtype, shape, raw bytes) per tensor: what crosses into an engine process."""
    out = []
    for n, t in named:
        host = t.detach().to("cpu").contiguous()
        out.append((n, str(host.dtype).removeprefix("torch."), list(host.shape),
                    host.view(torch.uint8).numpy().tobytes()))
    return out


def from_wire(payload: list) -> list[tuple[str, torch.Tensor]]:
    return [(n, torch.frombuffer(bytearray(b), dtype=torch.uint8).view(getattr(torch, dt)).view(shape))
            for n, dt, shape, b in payload]


class WeightSyncExtension:
    """A push is begin, one call per bucket, end: vLLM's layer-wise reload (what `reload_weights` runs
    in one call) split so that the learner never holds more than one bucket. Calling
    `reload_weights` once per bucket instead re-initialises the layers each call leaves out (measured:
    NaN log-probs)."""

    def chord_reload_begin(self: Any) -> None:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload.layerwise import initialize_layerwise_reload

        self._chord_loaded = 0
        with set_current_vllm_config(self.vllm_config):  # as vLLM's own Worker.start_weight_update runs it
            initialize_layerwise_reload(self.model_runner.get_model())

    def chord_reload_bucket(self: Any, payload: list) -> int:
        """payload: (name, tensor) pairs (same process) or to_wire tuples (another process)."""
        from vllm.config import set_current_vllm_config

        named = from_wire(payload) if payload and len(payload[0]) == 4 else list(payload)
        with set_current_vllm_config(self.vllm_config):
            self.model_runner.get_model().load_weights(iter(named))
        self._chord_loaded += len(named)
        return len(named)

    def chord_reload_end(self: Any) -> int:
        from vllm.config import set_current_vllm_config
        from vllm.model_executor.model_loader.reload.layerwise import finalize_layerwise_reload

        runner = self.model_runner
        with set_current_vllm_config(self.vllm_config):
            finalize_layerwise_reload(runner.get_model(), self.vllm_config.model_config)
        for reset in ("reset_lora_state", "reset_encoder_cache", "reset_mm_cache"):  # as reload_weights does
            if hasattr(runner, reset):
                getattr(runner, reset)()
        return self._chord_loaded

    def chord_attention_backends(self: Any) -> list[str]:
        """The attention backends the model's layers run (fp32 on CUDA: TRITON_ATTN, whose dots default
        to TF32 unless TRITON_F32_DEFAULT=ieee), for the start-up log and the GPU smoke test."""
        from vllm.model_executor.layers.attention_layer_base import AttentionLayerBase

        names = {m.get_attn_backend().get_name() for m in self.model_runner.get_model().modules()
                 if isinstance(m, AttentionLayerBase)}
        return sorted(names)

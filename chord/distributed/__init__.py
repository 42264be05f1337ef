"""Process plumbing: the process group, tensor exchange between ranks, and cleanup after a kill.

`group` sets up torch.distributed for python / torchrun / deepspeed launches; `exchange` moves
rollouts and floats between ranks; `shm` removes DeepSpeed's shared-memory buffers; `reaper` is the
detached watcher that cleans up after a SIGKILLed trainer; `warm_launch` forks benchmark runs from a
server that imported the stack once (benchmarks/method_comparison.py).
"""

from chord.distributed.group import Dist, barrier, broadcast, init_distributed, restore_after_engine, shutdown

__all__ = ["Dist", "barrier", "broadcast", "init_distributed", "restore_after_engine", "shutdown"]

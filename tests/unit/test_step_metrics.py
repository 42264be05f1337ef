"""Step metrics reduced over micro-batches and ranks (chord.step_metrics), and the memory group."""

import pytest
import torch

from chord.step_metrics import NOT_REPRODUCIBLE, memory_metrics, merge, to_floats

pytestmark = pytest.mark.unit


def test_memory_metrics_are_max_reduced_and_name_this_process():
    import psutil

    m = memory_metrics(torch.device("cpu"))
    assert set(m) == {"max:memory/host_rss_gb"}  # no CUDA numbers without CUDA (not a misleading 0)
    rss = psutil.Process().memory_info().rss / 2**30
    assert m["max:memory/host_rss_gb"].item() == pytest.approx(rss, rel=0.2) and rss > 0.01
    # two ranks' (or micro-batches') values: the larger is the step's; the prefix is gone in the log
    key = "max:memory/host_rss_gb"
    both = to_floats(merge([{key: torch.tensor(1.5)}, {key: torch.tensor(2.5)}]))
    assert both == {"memory/host_rss_gb": 2.5}
    assert "memory/host_rss_gb".startswith(NOT_REPRODUCIBLE)  # resume comparisons leave it out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: peak allocated/reserved GPU memory")
def test_cuda_peaks_are_the_steps_and_restart():
    dev = torch.device("cuda")
    x = torch.empty(256 * 2**20, dtype=torch.uint8, device=dev)
    del x
    m = memory_metrics(dev)
    assert m["max:memory/allocated_max_gb"].item() >= 0.25 and m["max:memory/reserved_max_gb"].item() >= 0.25
    assert memory_metrics(dev)["max:memory/allocated_max_gb"].item() < 0.25  # the counter restarted

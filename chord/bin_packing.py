"""Which rows go to which rank, and which rows share a micro-batch (token budgets, not row counts).

Pure list algorithms on row lengths, identical on every rank (every rank holds the step's rows),
so the plan needs no communication:
* `balance`: longest-first greedy onto the rank with the fewest tokens so far (LPT scheduling):
  R1-style lengths are long-tailed, and a strided split can give one rank most of the long rows.
* `bins_by_tokens`: first-fit-decreasing into micro-batches of at most `max_tokens` tokens
  (packed: the sum of lengths; padded: rows x the longest row).
* `bins_by_rows`: consecutive groups of `size` rows (the small-run mode).
Every rank then runs the same number of micro-batches (`micro_batch_counts`): ZeRO-3 gathers
parameters collectively in each forward, so a rank with fewer bins pads with empty ones.
"""

from __future__ import annotations

from collections.abc import Sequence


def balance(lengths: Sequence[int], world: int) -> list[list[int]]:
    """Row indices per rank; ties go to the lower rank, so the plan is deterministic."""
    loads = [0] * world
    out: list[list[int]] = [[] for _ in range(world)]
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        r = min(range(world), key=lambda r: (loads[r], r))
        out[r].append(i)
        loads[r] += lengths[i]
    return out


def bin_cost(lengths: Sequence[int], packed: bool) -> int:
    """Tokens one forward processes: the sum when packed, rows x longest when right-padded."""
    if not lengths:
        return 0
    return sum(lengths) if packed else len(lengths) * max(lengths)


def bins_by_tokens(lengths: Sequence[int], max_tokens: int, packed: bool = True) -> list[list[int]]:
    """First-fit-decreasing: indices (into `lengths`) per bin, each bin's cost <= max_tokens."""
    bins: list[list[int]] = []
    costs: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        if lengths[i] > max_tokens:
            raise ValueError(f"a row of {lengths[i]} tokens exceeds the micro-batch budget of {max_tokens} tokens")
        for b, c in zip(bins, costs):
            if bin_cost([*c, lengths[i]], packed) <= max_tokens:
                b.append(i)
                c.append(lengths[i])
                break
        else:
            bins.append([i])
            costs.append([lengths[i]])
    return bins


def bins_by_rows(n: int, size: int) -> list[list[int]]:
    """Consecutive groups of `size` rows (the last may be smaller)."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]

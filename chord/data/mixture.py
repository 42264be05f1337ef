"""The sources a data section reads: its one `source`, or the entries of its `mixture`.

A mixture entry takes the section's split and columns unless it sets its own; subset and revision are the
entry's alone (they pin that entry's hub dataset). Each source gets a label, unique within the mixture, that
names it in skip reports, stream state and the `data/<stream>/<label>_frac` metrics. The weighted draw itself
is chord.data.streams.MixedStream; docs/usage.md#mixtures-of-sources shows a recipe.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from chord.config.schema import ExpertDataConfig, PromptDataConfig


@dataclass
class Source:
    label: str  # "" for a section without a mixture
    source: str
    split: str
    subset: str | None
    revision: str | None
    weight: float
    columns: dict[str, str | None]  # keyword arguments of build_prompt_examples / build_expert_examples


def source_label(source: str, subset: str | None) -> str:
    """A short name: builtin:tiny -> tiny, data/b.parquet -> b, openai/gsm8k + main -> gsm8k_main."""
    base = source.split(":", 1)[1] if source.startswith("builtin:") else Path(source.rstrip("/")).stem or source
    label = f"{base}_{subset}" if subset else base
    return re.sub(r"[^A-Za-z0-9_.-]", "_", label)


def _unique(labels: list[str]) -> list[str]:
    """A label shared by several entries (the same file read with other columns) gets the entry's index."""
    seen = Counter(labels)
    return [f"{lb}_{i}" if seen[lb] > 1 else lb for i, lb in enumerate(labels)]


def prompt_sources(p: PromptDataConfig) -> list[Source]:
    if not p.mixture:
        assert p.source is not None  # chord.config.schema.validate_data
        return [Source("", p.source, p.split, p.subset, p.revision, 1.0,
                       {"prompt_column": p.prompt_column, "answer_column": p.answer_column})]
    labels = _unique([source_label(m.source, m.subset) for m in p.mixture])
    return [Source(lb, m.source, m.split or p.split, m.subset, m.revision, m.weight,
                   {"prompt_column": m.prompt_column or p.prompt_column,
                    "answer_column": m.answer_column or p.answer_column})
            for lb, m in zip(labels, p.mixture)]


def expert_sources(e: ExpertDataConfig) -> list[Source]:
    section = {"messages_column": e.messages_column, "prompt_column": e.prompt_column,
               "response_column": e.response_column}
    if not e.mixture:
        assert e.source is not None  # chord.config.schema.validate
        return [Source("", e.source, e.split, e.subset, e.revision, 1.0, section)]
    labels = _unique([source_label(m.source, m.subset) for m in e.mixture])
    out = []
    for lb, m in zip(labels, e.mixture):
        if m.messages_column is not None:
            cols = {"messages_column": m.messages_column, "prompt_column": None, "response_column": None}
        elif m.prompt_column or m.response_column:  # this source's prompt/response form replaces messages
            cols = {"messages_column": None, "prompt_column": m.prompt_column or e.prompt_column,
                    "response_column": m.response_column or e.response_column}
        else:
            cols = section
        out.append(Source(lb, m.source, m.split or e.split, m.subset, m.revision, m.weight, cols))
    return out

"""Expert and RL-prompt datasets, chat-templated, every skipped row counted.

Local json/jsonl files are read by chord (chord/data/json_rows.py: a line that is not JSON is a
counted `bad_json` skip); parquet, csv, hub datasets (a config name and a revision pin reach
`datasets.load_dataset`) and local folders laid out like a hub dataset repository (a README.md
whose `configs:` section names the files) go through `datasets`. A malformed row
(missing field, wrong type, empty response, too long under the "drop" policy) is skipped with a
reason; the per-reason counts are reported, and a bad fraction above
`max_bad_fraction` aborts with a one-line DataError. Nothing is skipped silently.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chord.data.json_rows import DataError, Rows, read_json_rows  # DataError: defined there, used everywhere
from chord.types import ExpertExample, PromptExample


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


@dataclass
class SkipReport:
    name: str
    total: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted(self.skipped.items()))
        n = sum(self.skipped.values())
        return f"{self.name}: kept {self.kept}/{self.total}" + (f", skipped {n} ({reasons})" if n else "")

    def check(self, max_bad_fraction: float) -> None:
        bad = sum(self.skipped.values())
        if self.total == 0 or self.kept == 0:
            raise DataError(f"{self.summary()}: no usable rows")
        if bad / self.total > max_bad_fraction:
            raise DataError(f"{self.summary()}: bad fraction {bad / self.total:.1%} > max_bad_fraction "
                            f"{max_bad_fraction:.1%}")


_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}


def load_rows(source: str, split: str = "train", subset: str | None = None, revision: str | None = None):
    """A local json/jsonl/parquet/csv file (or a folder of them), a folder laid out like a hub dataset
    repository, else a hub dataset id; `subset` is load_dataset's config name, `revision` its pin."""
    p = Path(source).expanduser()
    local = p.exists() or source.startswith((".", "/", "~")) or p.suffix in _FORMATS
    if revision is not None and local:
        raise DataError(f"data source '{source}' is local: revision '{revision}' pins hub datasets only")
    if p.is_file():
        if subset is not None:
            raise DataError(f"data file '{p}': subset '{subset}' names a config of a hub dataset (or of a "
                            "folder with a README.md configs: section), not of a file")
        if p.suffix not in _FORMATS:
            raise DataError(f"data file '{p}': unsupported extension (use {', '.join(_FORMATS)})")
        return _local_rows([p])
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.suffix in _FORMATS)
        if subset is not None or (not files and (p / "README.md").is_file()):  # a hub dataset repo's layout
            return _hub_rows(str(p), split, subset, None)
        if not files:
            raise DataError(f"data folder '{p}' has no json/jsonl/parquet/csv files")
        if len({_FORMATS[f.suffix] for f in files}) > 1:
            raise DataError(f"data folder '{p}' mixes formats ({', '.join(sorted({f.suffix for f in files}))}): "
                            "use one")
        return _local_rows(files)
    if local:
        raise DataError(f"data file '{source}' does not exist")
    return _hub_rows(source, split, subset, revision)


def _hub_rows(source: str, split: str, subset: str | None, revision: str | None):
    import datasets

    try:
        return datasets.load_dataset(source, subset, split=split, revision=revision)
    except Exception as e:  # hub errors come in many types; report one line
        pins = "".join(f" {k} '{v}'" for k, v in (("subset", subset), ("revision", revision)) if v is not None)
        first = (str(e).splitlines() or [type(e).__name__])[0]
        raise DataError(f"cannot load dataset '{source}'{pins} split '{split}': {first}") from None


def _local_rows(files: list[Path]):
    """json/jsonl: chord's own line-by-line reader (bad lines counted); parquet/csv: datasets."""
    import datasets


    if files[0].suffix in (".json", ".jsonl"):
        parts = [read_json_rows(f) for f in files]
        return Rows([r for part in parts for r in part.rows], sum((part.bad for part in parts), Counter()),
                    next((f"{f}: {part.first_bad}" for f, part in zip(files, parts) if part.first_bad), ""))
    try:
        return datasets.load_dataset(_FORMATS[files[0].suffix], data_files=[str(f) for f in files], split="train")
    except Exception as e:  # pyarrow/pandas errors come in many types: a truncated parquet, an empty csv
        first = (str(e).splitlines() or [""])[0]
        raise DataError(f"cannot read data file '{files[0]}'{' (and others)' if len(files) > 1 else ''}: "
                        f"{type(e).__name__}: {first}") from None


def _ids(tokenizer: Any, messages: list[dict], generation_prompt: bool) -> list[int]:
    # model.chat_template_kwargs ride on the tokenizer (chord.models.load.load_tokenizer)
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=True,
                                        **getattr(tokenizer, "chord_template_kwargs", {}))
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def _field(row: dict, column: str) -> Any:
    """row[column]; a dotted name reaches into nested objects when no column has that exact name (verl's RL
    parquet keeps the answer at reward_model.ground_truth). None when absent."""
    if column in row or "." not in column:
        return row.get(column)
    value: Any = row
    for part in column.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _messages(value: Any) -> list[dict]:
    """A list of chat messages ({role, content: str}); a tool call or a tool turn is refused with its own
    counted reason (chord trains on text turns only)."""
    if not isinstance(value, list) or not value or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) and ("content" in m or "tool_calls" in m)
            for m in value):
        raise _Skip("bad_messages")
    if any(m.get("tool_calls") or m["role"] == "tool" for m in value):
        raise _Skip("tool_calls")
    if not all(isinstance(m.get("content"), str) for m in value):
        raise _Skip("not_a_string")
    return [{"role": m["role"], "content": m["content"]} for m in value]


def _turns(value: Any, role: str) -> list[dict]:
    """A string as one `role` message, or a list of messages (TRL's conversational prompt / completion)."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return _messages(value)


def _with_system(messages: list[dict], system_prompt: str | None) -> list[dict]:
    if system_prompt and not (messages and messages[0].get("role") == "system"):
        return [{"role": "system", "content": system_prompt}, *messages]
    return messages


def _expert_messages(row: dict, messages_column: str | None, prompt_column: str | None,
                     response_column: str | None) -> list[dict]:
    if messages_column:
        msgs = _field(row, messages_column)
        if msgs is None:
            raise _Skip("missing_field")
        msgs = _messages(msgs)
    else:  # prompt + response columns: strings (TRL's standard prompt/completion) or message lists (conversational)
        assert prompt_column and response_column
        prompt, response = _field(row, prompt_column), _field(row, response_column)
        if prompt is None or response is None:
            raise _Skip("missing_field")
        msgs = _turns(prompt, "user") + _turns(response, "assistant")
    if msgs[-1]["role"] != "assistant" or len(msgs) < 2:
        raise _Skip("bad_messages")
    return msgs


def _expert_example(row: dict, index: int, tokenizer: Any, *, columns: tuple, system_prompt: str | None,
                    max_length: int, truncation: str) -> ExpertExample:
    msgs = _with_system(_expert_messages(row, *columns), system_prompt)
    if not msgs[-1]["content"].strip():
        raise _Skip("empty_response")
    prompt_ids = _ids(tokenizer, msgs[:-1], generation_prompt=True)
    full = _ids(tokenizer, msgs, generation_prompt=False)
    if full[: len(prompt_ids)] != prompt_ids:
        raise _Skip("template_mismatch")  # the response mask would be wrong: refuse the row
    # trailing template text after the end-of-turn token (e.g. "\n") is not the expert's to learn
    eos = tokenizer.eos_token_id
    end = len(full)
    if eos in full[len(prompt_ids):]:
        end = len(prompt_ids) + full[len(prompt_ids):].index(eos) + 1
    full = full[:end]
    if len(full) > max_length:
        if truncation == "drop":
            raise _Skip("too_long")
        if len(prompt_ids) >= max_length:
            raise _Skip("prompt_too_long")
        full = full[:max_length]
    mask = [0] * len(prompt_ids) + [1] * (len(full) - len(prompt_ids))
    return ExpertExample(input_ids=full, loss_mask=mask, index=index)


def _collect(ds, name: str, make) -> tuple[list, SkipReport]:
    report = SkipReport(name)
    report.skipped.update(getattr(ds, "bad", {}))  # lines of a json/jsonl file that were not row objects
    report.total = sum(report.skipped.values())
    items = []
    for i, row in enumerate(ds):
        report.total += 1
        try:
            items.append(make(row, i))
            report.kept += 1
        except _Skip as s:
            report.skipped[s.reason] += 1
    return items, report


def build_expert_examples(ds, tokenizer: Any, *, messages_column: str | None = "messages",
                          prompt_column: str | None = None, response_column: str | None = None,
                          system_prompt: str | None = None, max_length: int, truncation: str = "drop",
                          max_bad_fraction: float = 0.05, name: str = "expert data",
                          ) -> tuple[list[ExpertExample], SkipReport]:
    """Chat-templated expert rows; loss_mask = 1 exactly on the final assistant turn (with its end token)."""
    cols = (messages_column, prompt_column, response_column)
    items, report = _collect(ds, name, lambda row, i: _expert_example(
        row, i, tokenizer, columns=cols, system_prompt=system_prompt, max_length=max_length, truncation=truncation))
    report.check(max_bad_fraction)
    return items, report


def _jsonable(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_jsonable(v) for v in value)
    return isinstance(value, dict) and all(isinstance(k, str) and _jsonable(v) for k, v in value.items())


def _extra(row: dict, prompt_column: str, answer_column: str, columns: Sequence[str] | None) -> dict[str, Any]:
    """The row's other columns with JSON values (an image, bytes or a date is left out): the reward's extra_info."""
    keep = row.keys() if columns is None else [c for c in columns if c in row]
    return {k: row[k] for k in keep if k not in (prompt_column, answer_column) and _jsonable(row[k])}


def _prompt_example(row: dict, index: int, tokenizer: Any, *, prompt_column: str, answer_column: str,
                    system_prompt: str | None, max_prompt_length: int, extra_columns: Sequence[str] | None = None,
                    source: str = "") -> PromptExample:
    prompt, answer = _field(row, prompt_column), _field(row, answer_column)
    if prompt is None or answer is None:
        raise _Skip("missing_field")
    if isinstance(prompt, str):
        if not prompt.strip():
            raise _Skip("empty_prompt")
        msgs = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and prompt and all(isinstance(m, dict) and isinstance(m.get("content"), str)
                                                     for m in prompt):
        msgs = [{"role": m.get("role", "user"), "content": m["content"]} for m in prompt]
    else:
        raise _Skip("not_a_string")
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise _Skip("not_a_string")
    ids = _ids(tokenizer, _with_system(msgs, system_prompt), generation_prompt=True)
    if len(ids) > max_prompt_length:
        raise _Skip("too_long")  # a truncated prompt would ask a different question
    if isinstance(answer, float) and answer.is_integer():
        answer = int(answer)  # AMC copies store 142.0: the ground truth is 142
    text = msgs[-1]["content"]
    return PromptExample(prompt_ids=ids, prompt_text=text, answer=str(answer), index=index,
                         extra=_extra(row, prompt_column, answer_column, extra_columns), source=source)


def build_prompt_examples(ds, tokenizer: Any, *, prompt_column: str = "prompt", answer_column: str = "answer",
                          system_prompt: str | None = None, max_prompt_length: int,
                          max_bad_fraction: float = 0.05, name: str = "prompt data",
                          extra_columns: Sequence[str] | None = None, source: str = "",
                          ) -> tuple[list[PromptExample], SkipReport]:
    """RL prompts with ground truth; over-long prompts are always skipped (and counted). Each keeps its row's
    other columns (`extra_columns` only, when given) as `extra`, and `source` (a mixture's label)."""
    items, report = _collect(ds, name, lambda row, i: _prompt_example(
        row, i, tokenizer, prompt_column=prompt_column, answer_column=answer_column,
        system_prompt=system_prompt, max_prompt_length=max_prompt_length, extra_columns=extra_columns,
        source=source))
    report.check(max_bad_fraction)
    return items, report

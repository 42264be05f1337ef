"""Model cards for chord's exports, and pushing an export to the Hugging Face Hub (docs/usage.md#pushing-to-the-hub).

    python -m chord.export runs/tiny-chord-phi OUT --push-to-hub me/tiny-chord   # export a checkpoint, then push
    python -m chord.export runs/tiny-chord-phi/best --push-to-hub me/tiny-chord  # an export as it is
    hub: {push: final, repo_id: me/tiny-chord}                                  # a recipe: after a finished run

`model_card` is the README.md the Hub shows: YAML metadata (library_name, tags, base_model, datasets), the
method from the run's config.yaml, the evaluation of these weights from eval.jsonl, provenance (chord version
and commit, base model, data sources with their sha256) and the resolved config. `push_folder` creates the repo
(private by default) and uploads the folder with huggingface_hub, which finds the token itself (HF_TOKEN or
`hf auth login`); every failure is one HubError line. Only a push imports huggingface_hub or needs a network.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import yaml
from omegaconf import OmegaConf

from chord import __version__
from chord.checkpoint.files import sha256_file
from chord.config import ChordConfig, uses_expert, uses_rl
from chord.config.schema import is_hub_id
from chord.logger import atomic_write_text, say, verbose

BUILT_IN_MODELS = ("tiny", "cards")  # built offline by chord.models: not on the Hub
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")  # what chord.data.loading reads from a local path
CHECKOUT = Path(__file__).resolve().parents[2]  # the repository chord runs from, if it is one
LINEAGE_DEPTH = 8  # exports trained from exports (staged recipes): how far back the card looks for the base model


class HubError(RuntimeError):
    """A push that failed; the message is one line."""


# ---- reading a run folder ---------------------------------------------------------------------------------------


def read_config(text: str) -> ChordConfig | None:
    """A config.yaml as the schema's dataclasses, keys this chord does not know dropped (a run of an older or
    newer chord); None when it still cannot be read: the card then quotes it without interpreting it."""
    try:
        schema = OmegaConf.structured(ChordConfig)
        return OmegaConf.to_object(OmegaConf.merge(schema, _known(OmegaConf.to_container(OmegaConf.create(text)),
                                                                  schema)))
    except Exception:
        return None


def _known(data: Any, schema: Any) -> Any:
    """`data` less the keys that the schema's dataclass sections lack (free-form dicts are kept whole)."""
    if not isinstance(data, dict) or not dataclasses.is_dataclass(OmegaConf.get_type(schema)):
        return data
    return {k: _known(v, schema[k]) for k, v in data.items() if k in schema}


def eval_rows(run_folder: Path) -> dict[int, dict]:
    """eval.jsonl by step; a step evaluated twice (a resumed run) keeps its last row, a torn line is skipped."""
    rows: dict[int, dict] = {}
    path = run_folder / "eval.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            row = json.loads(line)
            rows[int(row["step"])] = row
        except (ValueError, KeyError, TypeError):
            continue
    return rows


def model_step(run_folder: Path, model_folder: Path, cfg: ChordConfig | None) -> tuple[int | None, dict | None]:
    """(the training step of the weights in model_folder, chord_best.json's record when it is a best/ export)."""
    best_file = model_folder / "chord_best.json"
    if best_file.is_file():
        try:
            best = json.loads(best_file.read_text())
            return int(best["step"]), best
        except (ValueError, KeyError, TypeError):
            pass
    if model_folder.resolve() == (run_folder / "final").resolve() and cfg is not None:
        return cfg.trainer.steps, None  # final/ is exported after the last step
    return None, None


def lineage(cfg: ChordConfig | None) -> list[tuple[Path, ChordConfig]]:
    """The chord runs this run's model.path came from, newest first: a stage of a staged recipe starts from the
    previous stage's final/ or best/, whose run folder holds its config.yaml."""
    out: list[tuple[Path, ChordConfig]] = []
    while cfg is not None and len(out) < LINEAGE_DEPTH:
        parent = Path(cfg.model.path).expanduser().parent
        if cfg.model.path in BUILT_IN_MODELS or not (parent / "config.yaml").is_file():
            break
        cfg = read_config((parent / "config.yaml").read_text())
        if cfg is not None:
            out.append((Path(parent), cfg))
    return out


def hub_model(path: str) -> str | None:
    """model.path when it names a Hub model (not a built-in model, not a local folder)."""
    local = path.startswith((".", "/", "~")) or Path(path).expanduser().exists()
    return path if path not in BUILT_IN_MODELS and not local and is_hub_id(path) else None


def hub_dataset(source: str | None) -> str | None:
    """A data source when it names a Hub dataset (chord.data.loading's rule: not builtin:, not a local path)."""
    if source is None or source.startswith(("builtin:", ".", "/", "~")) or source.endswith(DATA_SUFFIXES):
        return None
    return source if not Path(source).expanduser().exists() and is_hub_id(source) else None


def git_commit(root: Path = CHECKOUT) -> str | None:
    """The checkout chord runs from: HEAD's short hash, "+dirty" with changes to tracked files (as
    benchmarks/method_comparison.py records it); None for an installed wheel or without git."""
    if not (root / ".git").exists():
        return None

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    sha = git("rev-parse", "--short=12", "HEAD")
    return (sha + ("+dirty" if git("status", "--porcelain", "-uno") else "")) if sha else None


def file_sha256(path: Path) -> tuple[str, str]:
    """(sha256, where it comes from): a manifest.json beside the file that records it (chord.tasks.openr1 writes
    one) is the data's own provenance; otherwise the file is hashed now."""
    manifest = path.parent / "manifest.json"
    try:
        recorded = json.loads(manifest.read_text()).get("sha256", {}).get(path.name)
        if isinstance(recorded, str):
            return recorded, f"recorded in {manifest}"
    except (OSError, ValueError, AttributeError):
        pass
    return sha256_file(path), "of the file when this card was written"


# ---- the card ---------------------------------------------------------------------------------------------------


def mu_text(cfg: ChordConfig) -> str:
    m = cfg.algorithm.mu
    if m.warmup_steps == 0 and m.decay_steps == 0:
        return f"mu = {m.valley:g} throughout"
    return (f"mu rises linearly from 0 to {m.peak:g} over {m.warmup_steps} steps, falls to {m.valley:g} over "
            f"{m.decay_steps} steps (cosine), then stays at {m.valley:g}")


SFT_WEIGHTS = {"phi": "CHORD-phi: each expert token weighted by phi = p(1 - p)",
               "is": "each expert token weighted by its probability p",
               "one_minus_p": "each expert token weighted by 1 - p",
               "power": "each expert token weighted by p^a (1 - p)^b",
               "none": "CHORD-mu: expert tokens unweighted"}
ADVANTAGES = {"group": "GRPO (advantages normalised by the group's reward std)",
              "batch": "GRPO with advantages normalised by the step's reward std (TRL's scale_rewards=batch)",
              "none": "Dr. GRPO (advantages not divided by a std, arXiv 2503.20783)"}


def method_text(cfg: ChordConfig) -> str:
    """What trained the weights, in one sentence (docs/algorithm.md)."""
    a = cfg.algorithm
    rl = ADVANTAGES.get(a.scale_rewards, f"GRPO (scale_rewards={a.scale_rewards})")
    if uses_rl(cfg) and uses_expert(cfg):
        weight = SFT_WEIGHTS.get(a.sft_weight, f"SFT token weight {a.sft_weight}")
        return (f"CHORD (arXiv 2508.11408): on-policy {rl} with SFT on expert demonstrations as an auxiliary loss, "
                f"L = (1 - mu) L_GRPO + mu L_SFT; {mu_text(cfg)}; {weight}.")
    if uses_expert(cfg):
        return "SFT on expert demonstrations (mu = 1 throughout: no rollouts)."
    return f"{rl}, on-policy, without expert data (mu = 0)."


def eval_table(row: dict) -> str:
    """One row per benchmark (e.g. ID and OOD) and the overall mean: avg@k, pass@k (in %), length, truncation."""
    benches = [(m.group(1), m.group(2)) for k in row if (m := re.fullmatch(r"(.+)/avg@(\d+)", k))]
    lines = ["| benchmark | problems | k | avg@k (%) | pass@k (%) | mean length (tokens) | truncated (%) |",
             "|---|---:|---:|---:|---:|---:|---:|"]

    def cell(key: str, scale: float = 100.0) -> str:
        v = row.get(key)
        return f"{scale * v:.1f}" if isinstance(v, (int, float)) else ""

    for name, k in sorted(benches):
        n = row.get(f"{name}/problems")
        lines.append(f"| {name} | {'' if n is None else int(n)} | {k} | {cell(f'{name}/avg@{k}')} | "
                     f"{cell(f'{name}/pass@{k}')} | {cell(f'{name}/length_mean', 1.0)} | "
                     f"{cell(f'{name}/truncated_frac')} |")
    if "overall/avg" in row and len(benches) > 1:
        lines.append(f"| **overall** (mean) | | | {cell('overall/avg')} | {cell('overall/pass')} | "
                     f"{cell('overall/length_mean', 1.0)} | {cell('overall/truncated_frac')} |")
    return "\n".join(lines)


def evaluation_section(run_folder: Path, step: int | None, best: dict | None, cfg: ChordConfig | None) -> list[str]:
    rows = eval_rows(run_folder)
    out = ["## Evaluation", ""]
    if not rows:
        return out + ["No evaluation was recorded for this run (eval.jsonl is empty or missing).", ""]
    if cfg is not None:
        e = cfg.eval
        out += [f"k samples per problem at temperature {e.temperature:g}, top_p {e.top_p:g}, at most "
                f"{e.max_new_tokens or cfg.rollout.max_new_tokens} new tokens, graded by the `{cfg.reward.name}` "
                "reward; avg@k is the mean accuracy over all samples, pass@k the unbiased estimator.", ""]
    latest = max(rows)
    if step is not None and step in rows:
        why = (f", selected as best/ by {best['metric']} = {best['value']:.4g}" if best and "metric" in best
               and isinstance(best.get("value"), (int, float)) else "")
        out += [f"These weights, at training step {step}{why}:", "", eval_table(rows[step]), ""]
        if latest != step:
            out += [f"The run's latest evaluation, at step {latest} (other weights):", "", eval_table(rows[latest]), ""]
    else:
        note = f" (these weights are from step {step}, which was not evaluated)" if step is not None else ""
        out += [f"The run's latest evaluation, at step {latest}{note}:", "", eval_table(rows[latest]), ""]
    return out


def sources(section: Any) -> list[dict[str, Any]]:
    """A data section's sources: its mixture's entries (docs/usage.md#mixtures-of-sources), else its source.
    getattr: a config of a chord without mixtures, subsets or revisions reads the same."""
    entries = list(getattr(section, "mixture", None) or []) or ([section] if section.source is not None else [])
    return [{"source": str(e.source), "split": getattr(e, "split", None) or section.split,
             "subset": getattr(e, "subset", None), "revision": getattr(e, "revision", None),
             "weight": getattr(e, "weight", None) if e is not section else None} for e in entries]


def data_lines(cfg: ChordConfig) -> list[str]:
    """Each data source of the run: a Hub dataset (subset, split, pinned revision), a built-in task, or a local
    file with its sha256."""
    d = cfg.data
    roles = [("RL prompts", s) for s in sources(d.prompts) if uses_rl(cfg)]
    roles += [("expert data (SFT)", s) for s in sources(d.expert) if uses_expert(cfg)]
    roles += [(f"benchmark `{b.name}`", s) for b in cfg.eval.benchmarks for s in sources(b)]
    out = []
    for role, s in roles:
        source, where = s["source"], Path(s["source"]).expanduser()
        if hub_dataset(source):
            what = ", ".join(f"{k} `{s[k]}`" for k in ("subset", "split", "revision") if s[k] is not None)
            what = f"[{source}](https://huggingface.co/datasets/{source}) (Hub dataset, {what})"
        elif source.startswith("builtin:"):
            what = f"`{source}` (built into chord: chord/tasks, generated deterministically)"
        elif where.is_file():
            sha, how = file_sha256(where)
            what = f"`{source}` (local file, sha256 `{sha}`, {how})"
        else:
            what = f"`{source}` (local {'folder' if where.is_dir() else 'path, not found now'})"
        out.append(f"- {role}: {what}" + (f", weight {s['weight']:g}" if s["weight"] is not None else ""))
    return out


def front_matter(cfg: ChordConfig | None, chain: list[tuple[Path, ChordConfig]]) -> str:
    meta: dict[str, Any] = {"library_name": "transformers", "pipeline_tag": "text-generation",
                            "tags": ["chord", "grpo", "sft"]}
    first = chain[-1][1] if chain else cfg
    if first is not None and (base := hub_model(first.model.path)):
        meta["base_model"] = base
    datasets = {name for c in [cfg, *(c for _, c in chain)] if c is not None
                for s in [*(sources(c.data.prompts) if uses_rl(c) else []),
                          *(sources(c.data.expert) if uses_expert(c) else [])]
                if (name := hub_dataset(s["source"]))}
    if datasets:
        meta["datasets"] = sorted(datasets)
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def fenced(text: str, lang: str) -> str:
    """A code block that no run of backticks inside `text` (a chat template's, say) can close early."""
    fence = "`" * max(3, 1 + max((len(r) for r in re.findall(r"`+", text)), default=0))
    return f"{fence}{lang}\n{text.rstrip()}\n{fence}"


def about_section(cfg: ChordConfig | None, chain: list[tuple[Path, ChordConfig]], step: int | None) -> list[str]:
    if cfg is None:
        return ["A causal language model post-trained with [chord](https://arxiv.org/abs/2508.11408); its run folder "
                "holds no config.yaml this chord can read, so the method is not described here.", ""]
    t = cfg.trainer
    batch = [f"{t.prompts_per_step} prompts x {t.samples_per_prompt} samples" if uses_rl(cfg) else None,
             f"{t.expert_per_step} expert rows" if uses_expert(cfg) else None]
    out = [f"A causal language model post-trained with chord from `{cfg.model.path}`.", "",
           f"- method: {method_text(cfg)}",
           f"- training: {t.steps} steps of {' and '.join(filter(None, batch))} each; lr {t.lr:g} ({t.lr_schedule}), "
           f"{cfg.model.dtype}; these weights are from step {step if step is not None else '?'}"]
    for folder, c in chain:  # a staged recipe's earlier stages, newest first
        out.append(f"- before that, `{folder}`: {method_text(c)} {c.trainer.steps} steps, from `{c.model.path}`")
    return out + [""]


def provenance_section(run_folder: Path, cfg: ChordConfig | None, chain: list[tuple[Path, ChordConfig]]) -> list[str]:
    commit = git_commit()
    out = ["## Provenance", "", f"- chord {__version__}" + (f", git commit `{commit}` (the checkout that wrote this "
                                                             "card)" if commit else "")]
    done = run_folder / "benchmark_done.json"  # benchmarks/method_comparison.py's record of the run
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        out.append(f"- run started at commit `{json.loads(done.read_text())['commit']}` ({done.name})")
    if cfg is not None:
        path = (chain[-1][1] if chain else cfg).model.path
        base = hub_model(path)
        kind = " (built into chord: chord/models)" if path in BUILT_IN_MODELS else " (a local folder)"
        out.append("- base model: " + (f"[{base}](https://huggingface.co/{base})" if base else f"`{path}`{kind}"))
        out += data_lines(cfg)
    return out + [""]


def model_card(run_folder: str | Path, model_folder: str | Path, *, step: int | None = None,
               config_yaml: str | None = None) -> str:
    """The README.md for model_folder (a save_pretrained export) trained by the chord run in run_folder.

    `step` and `config_yaml`: the weights' training step and the config they were trained with, when the caller
    knows them better than the run folder (chord.export reads both from the checkpoint it exports)."""
    run_folder, model_folder = Path(run_folder), Path(model_folder)
    if config_yaml is None and (run_folder / "config.yaml").is_file():
        config_yaml = (run_folder / "config.yaml").read_text()
    cfg = read_config(config_yaml) if config_yaml else None
    found, best = model_step(run_folder, model_folder, cfg)
    step = found if step is None else step
    chain = lineage(cfg)
    title = (cfg.run.name if cfg is not None else run_folder.name) + (
        f" ({model_folder.name}/)" if model_folder.name in ("final", "best") else "")
    lines = [front_matter(cfg, chain), f"# {title}", "", *about_section(cfg, chain, step),
             *evaluation_section(run_folder, step, best, cfg), *provenance_section(run_folder, cfg, chain)]
    if config_yaml:
        lines += ["<details>", "<summary>The resolved config (config.yaml)</summary>", "",
                  fenced(config_yaml, "yaml"), "", "</details>", ""]
    return "\n".join(lines)


def write_card(model_folder: str | Path, run_folder: str | Path | None = None, **kwargs: Any) -> Path:
    """model_folder/README.md from model_card (run_folder: the export's parent, as for final/ and best/)."""
    model_folder = Path(model_folder)
    path = model_folder / "README.md"
    atomic_write_text(path, model_card(run_folder or model_folder.parent, model_folder, **kwargs))
    return path


# ---- the push ---------------------------------------------------------------------------------------------------


def _one_line(e: BaseException, repo_id: str, endpoint: str) -> str:
    """huggingface_hub's and its HTTP client's errors, each as the one line a user can act on."""
    from huggingface_hub import errors

    text = " ".join(str(e).split())[:300]
    if isinstance(e, errors.OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE=1 is set: unset HF_HUB_OFFLINE to push"
    if isinstance(e, errors.HFValidationError):
        return f"invalid repo id {repo_id!r}: {text}"
    if isinstance(e, errors.HfHubHTTPError) and getattr(e, "response", None) is not None:
        code = e.response.status_code
        why = {401: "the token was refused (401 Unauthorized): set HF_TOKEN or run `hf auth login` with a valid "
                    "token",
               403: f"the token may not write to {repo_id} (403 Forbidden): it needs write access to that user or "
                    "organization",
               404: f"{repo_id} or its branch was not found (404)"}.get(code, f"HTTP {code}")
        server = " ".join((e.server_message or "").split())[:200]
        return f"{endpoint}: {why}" + (f" (the Hub says: {server})" if server else "")
    # httpx's / httpx2's TransportError (huggingface_hub >= 1.0), requests' ConnectionError (older): no answer at all
    if any(c.__name__ in ("TransportError", "ConnectionError") for c in type(e).__mro__):
        return f"cannot reach {endpoint}: {type(e).__name__}: {text}"
    return f"{type(e).__name__}: {text}"


def check_push(repo_id: str) -> None:
    """What refuses a push before any request (and before an export worth minutes): a bad repo id, offline mode,
    no token, no huggingface_hub. Raises HubError."""
    if not is_hub_id(repo_id):
        raise HubError(f"invalid repo id {repo_id!r}: owner/name or name (letters, digits, '-', '_', '.'; no '--' "
                       "or '..')")
    try:
        import huggingface_hub
        from huggingface_hub import constants
    except ImportError:
        raise HubError("pushing needs huggingface_hub: pip install huggingface_hub") from None
    if constants.HF_HUB_OFFLINE:  # read by huggingface_hub at import; it would refuse every request
        raise HubError("HF_HUB_OFFLINE=1 is set: unset HF_HUB_OFFLINE to push")
    try:
        token = huggingface_hub.get_token()
    except Exception as e:  # HF_OIDC_RESOURCE set and its exchange failed
        raise HubError(f"no Hugging Face token ({type(e).__name__}: {' '.join(str(e).split())[:200]})") from None
    if token is None:
        raise HubError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (a token with write access)")


def push_folder(folder: str | Path, repo_id: str, *, private: bool = True, revision: str | None = None,
                commit_message: str | None = None) -> str:
    """Create repo_id if missing (private unless `private` is false; an existing repo keeps its visibility),
    create branch `revision` if missing, upload every file of `folder` in one commit; the commit's URL.
    The token is huggingface_hub's (HF_TOKEN, or `hf auth login`); HF_ENDPOINT picks another Hub."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise HubError(f"{folder} is not a save_pretrained folder (no config.json)")
    check_push(repo_id)
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True).repo_id  # `name` -> `user/name`
        if revision is not None:
            api.create_branch(repo, branch=revision, exist_ok=True)
        info = api.upload_folder(repo_id=repo, folder_path=folder, revision=revision,
                                 commit_message=commit_message or f"chord {__version__}: upload {folder.name}/")
    except Exception as e:  # huggingface_hub's, httpx's and the filesystem's: one line each
        raise HubError(_one_line(e, repo_id, api.endpoint)) from None
    return info.commit_url


def push_command(folder: Path, repo_id: str, private: bool, revision: str | None) -> str:
    """The command line that pushes `folder` again."""
    return (f"python -m chord.export {folder} --push-to-hub {repo_id}" + ("" if private else " --public")
            + (f" --revision {revision}" if revision else ""))


def push_warning(cfg: ChordConfig) -> str | None:
    """At start-up: why the hub.push asked for would fail at the end of the run (offline, no token), as one
    warning line, so a user sees it now rather than after training. None when it can work (or is off)."""
    if cfg.hub.push == "none" or cfg.hub.repo_id is None:
        return None
    try:
        check_push(cfg.hub.repo_id)
    except HubError as e:
        return (f"warning: hub.push={cfg.hub.push} will fail at the end of this run as things stand: {e}. The run "
                "goes on; its export stays on disk, to push with python -m chord.export ... --push-to-hub")
    return None


def publish_run(cfg: ChordConfig, run_folder: str | Path) -> None:
    """Rank 0, after a finished run (chord/train.py): a README.md model card into final/ and best/, then the
    export hub.push names to hub.repo_id. Never raises: the run's result is on disk whatever happens here."""
    run_folder = Path(run_folder)
    for name in ("final", "best"):
        folder = run_folder / name
        if (folder / "config.json").is_file():
            try:
                write_card(folder, run_folder)
            except Exception as e:  # a card is a courtesy: never the end of a finished run
                say(f"warning: no model card in {folder} ({type(e).__name__}: {' '.join(str(e).split())[:200]})")
    h = cfg.hub
    if h.push == "none" or h.repo_id is None:
        return
    folder = run_folder / h.push
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.is_dir() else 0
    say(f"pushing {folder} ({size / 2**20:.0f} MiB) to {h.repo_id}" + (f" ({h.revision})" if h.revision else ""))
    if not verbose():  # a run's terminal is chord's (logging.verbose shows huggingface_hub's upload display)
        with contextlib.suppress(ImportError):
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()
    try:
        url = push_folder(folder, h.repo_id, private=h.private, revision=h.revision,
                          commit_message=f"chord {__version__}: {cfg.run.name} {h.push}/")
    except Exception as e:
        why = str(e) if isinstance(e, HubError) else f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        say(f"warning: pushing {folder} to {h.repo_id} failed: {why}. The model is safe on disk; push it with: "
            f"{push_command(folder, h.repo_id, h.private, h.revision)}")
        return
    say(f"pushed {folder} to {h.repo_id}: {url}")

"""Experiment trackers: where step metrics go besides metrics.jsonl (docs/usage.md#trackers).

`logging.trackers` lists any of tensorboard, wandb and mlflow. Rank 0 opens them with `open_trackers`, and
chord.logger.RunLogger sends each one every metrics row, the resolved config (once) and, with
logging.save_rollouts, each step's rollouts as a table. metrics.jsonl stays the source of truth: a tracker
that raises is switched off with one warning line (RunLogger), the run goes on.

A resumed run continues the same tracker run: the wandb and mlflow run ids are kept in the run folder's
trackers.json. Its x-axis is chord's own `step`, so the steps a resume re-runs after its checkpoint are
logged again (wandb drops rows whose internal step went backwards; mlflow keeps both values of such a step,
the later one last). wandb and mlflow are imported here only, when asked for: `import chord` never does.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import Any, Protocol

from omegaconf import OmegaConf

from chord.config import ChordConfig
from chord.logger import atomic_write_text, say

TRACKERS_FILE = "trackers.json"  # {"wandb": {"run_id": ...}, "mlflow": {"run_id": ...}} in the run folder
STEP = "step"  # the x-axis of every wandb chart: the optimizer step, as in metrics.jsonl


class Tracker(Protocol):
    """One backend. RunLogger calls it on rank 0 only and turns it off after the first exception."""

    name: str  # as in logging.trackers

    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_rollouts(self, step: int, rows: list[dict[str, Any]]) -> None:
        """One step's rollouts, one dict a row (same keys in each); a no-op where a backend has no tables."""

    def close(self) -> None: ...


class TensorBoard:
    """Events in <run folder>/tensorboard (`tensorboard --logdir runs`)."""

    name = "tensorboard"

    def __init__(self, out_dir: str | Path, start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: after a resume, events of the re-run steps replace the interrupted ones; a fresh start
        # (0) hides an earlier launch's events in the same folder
        self.writer = SummaryWriter(str(Path(out_dir) / "tensorboard"), purge_step=start_step + 1 if start_step else 0)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        for k, v in scalars.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()

    def log_config(self, config: dict[str, Any]) -> None:
        pass  # config.yaml lies beside the events

    def log_rollouts(self, step: int, rows: list[dict[str, Any]]) -> None:
        pass  # no tables: rollouts/step_N.jsonl holds them

    def close(self) -> None:
        self.writer.close()


class WandB:
    """A wandb run named run.name in project logging.project; entity, mode (online | offline) and the API key
    come from wandb's own environment variables (WANDB_ENTITY, WANDB_MODE, WANDB_API_KEY, ...)."""

    name = "wandb"

    def __init__(self, out_dir: str | Path, project: str, run_name: str, run_id: str | None) -> None:
        import wandb

        self.wandb = wandb
        # wandb's local files go to the run folder unless WANDB_DIR says otherwise; create_new: a run the
        # calling process already has open (a notebook's) is left alone
        self.run = wandb.init(project=project, name=run_name, id=run_id, resume="allow" if run_id else None,
                              dir=None if os.environ.get("WANDB_DIR") else str(out_dir), reinit="create_new")
        self.run_id = self.run.id
        # charts are drawn against chord's step, not wandb's internal one: that one only goes up, so wandb
        # would drop the rows of the steps a resume re-runs after its checkpoint
        self.run.define_metric(STEP, hidden=True)
        self.run.define_metric("*", step_metric=STEP)
        where = f"offline in {self.run.settings.sync_dir} (`wandb sync` it)" if self.run.offline else self.run.url
        say(f"wandb: {'continuing' if run_id else 'new'} run {run_name} ({self.run_id}), {where}")

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log({**scalars, STEP: step})

    def log_config(self, config: dict[str, Any]) -> None:
        # a resume may change harmless keys (trainer.steps): the newest value wins
        self.run.config.update(config, allow_val_change=True)

    def log_rollouts(self, step: int, rows: list[dict[str, Any]]) -> None:
        if rows:
            table = self.wandb.Table(columns=list(rows[0]), data=[list(r.values()) for r in rows])
            self.run.log({"rollouts": table, STEP: step})

    def close(self) -> None:
        self.run.finish()


# MLflow refuses metric and param names with characters outside these (mlflow.utils.validation, on Linux):
# chord's names keep their slashes; only the rest becomes '_' (eval/overall/pass@4 -> eval/overall/pass_4)
MLFLOW_REFUSED = re.compile(r"[^/\w.\- :]")
MLFLOW_MAX_PARAM = 6000  # characters of a param value MLflow accepts (a long chat template is cut)
MLFLOW_BATCH = {"params": 100, "metrics": 1000}  # per log_batch call: MLflow's limits


def mlflow_name(key: str) -> str:
    return MLFLOW_REFUSED.sub("_", key)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {dotted key: value as a string}; lists (eval.benchmarks, stages) as JSON."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, f"{key}."))
        else:
            text = v if isinstance(v, str) else json.dumps(v)
            out[mlflow_name(key)] = text[:MLFLOW_MAX_PARAM]
    return out


class MLflow:
    """An mlflow run named run.name in experiment logging.project, at logging.tracking_uri (null:
    MLFLOW_TRACKING_URI, else mlflow's default)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None, experiment: str, run_name: str, run_id: str | None) -> None:
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if uri is not None and uri.startswith(("file:", "/", ".")):
            # MLflow 3 keeps folder stores in maintenance mode and refuses them unless asked: a recipe that names
            # a folder asks (a MLFLOW_ALLOW_FILE_STORE the user set wins)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        from mlflow.entities import Metric, Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.Metric, self.Param = Metric, Param
        self.client = MlflowClient(tracking_uri)
        run = None
        if run_id is not None:
            try:
                run = self.client.get_run(run_id)
                self.client.update_run(run_id, status="RUNNING")
            except MlflowException:  # deleted, or another tracking URI than before
                say(f"mlflow: run {run_id} (trackers.json) is not at {self.client.tracking_uri}; starting a new run")
                run = None
        resumed = run is not None
        if run is None:
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None:
                try:
                    exp_id = self.client.create_experiment(experiment)
                except MlflowException:  # another run created it first
                    exp_id = self.client.get_experiment_by_name(experiment).experiment_id
            else:
                exp_id = exp.experiment_id
            run = self.client.create_run(exp_id, run_name=run_name)
        self.run_id = run.info.run_id
        self.params = dict(run.data.params)  # a resumed run's: MLflow refuses to change a logged param
        say(f"mlflow: {'continuing' if resumed else 'new'} run {run_name} ({self.run_id}) in experiment "
            f"{experiment} at {self.client.tracking_uri}")

    def log(self, step: int, scalars: dict[str, float]) -> None:
        ms = int(time.time() * 1000)
        metrics = [self.Metric(mlflow_name(k), float(v), ms, step) for k, v in scalars.items()]
        n = MLFLOW_BATCH["metrics"]
        for i in range(0, len(metrics), n):
            self.client.log_batch(self.run_id, metrics=metrics[i:i + n])

    def log_config(self, config: dict[str, Any]) -> None:
        # on resume only new keys: a changed harmless key (trainer.steps) keeps its first value here
        # (config.yaml has the new one)
        new = [self.Param(k, v) for k, v in flat_params(config).items() if k not in self.params]
        n = MLFLOW_BATCH["params"]
        for i in range(0, len(new), n):
            self.client.log_batch(self.run_id, params=new[i:i + n])
        self.params.update((p.key, p.value) for p in new)

    def log_rollouts(self, step: int, rows: list[dict[str, Any]]) -> None:
        # log_table's layout ({"columns", "data"}: mlflow.load_table reads it), written whole: log_table would
        # append a re-run step's rows to the interrupted launch's
        table = {"columns": list(rows[0]) if rows else [], "data": [list(r.values()) for r in rows]}
        self.client.log_text(self.run_id, json.dumps(table, ensure_ascii=False), f"rollouts/step_{step}.json")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def read_ids(out_dir: str | Path) -> dict[str, dict[str, str]]:
    path = Path(out_dir) / TRACKERS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _open(name: str, cfg: ChordConfig, out_dir: Path, start_step: int, run_id: str | None) -> Tracker:
    lg = cfg.logging
    if name == "tensorboard":
        return TensorBoard(out_dir, start_step)
    if name == "wandb":
        return WandB(out_dir, lg.project, cfg.run.name, run_id)
    return MLflow(lg.tracking_uri, lg.project, cfg.run.name, run_id)


def open_trackers(cfg: ChordConfig, out_dir: str | Path, start_step: int = 0) -> list[Tracker]:
    """Rank 0: open each of logging.trackers and log the resolved config to it. `start_step` > 0 (a resume)
    continues the tracker runs trackers.json names; 0 starts new ones. A tracker that cannot start (no
    network, not logged in) is one warning line and is left out: the run goes on with the others."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = read_ids(out_dir) if start_step > 0 else {}
    had_file = (out_dir / TRACKERS_FILE).exists()
    config = OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)
    opened: list[Tracker] = []
    for name in cfg.logging.trackers:
        tracker = None
        try:
            tracker = _open(name, cfg, out_dir, start_step, ids.get(name, {}).get("run_id"))
            tracker.log_config(config)
        except Exception as e:
            say(f"warning: the {name} tracker did not start ({type(e).__name__}: {_first_line(e)}); "
                "the run goes on without it (metrics.jsonl gets every row)")
            if tracker is not None:
                _close_quietly(tracker)
            continue
        opened.append(tracker)
        if getattr(tracker, "run_id", None):
            ids[name] = {"run_id": tracker.run_id}
    if ids or had_file:  # a fresh start also replaces an earlier launch's ids
        atomic_write_text(out_dir / TRACKERS_FILE, json.dumps(ids, indent=1) + "\n")
    return opened


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0][:200]


def _close_quietly(tracker: Tracker) -> None:
    with contextlib.suppress(Exception):  # a tracker that failed to start may fail to close too
        tracker.close()

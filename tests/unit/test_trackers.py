"""chord.trackers: what RunLogger is given reaches TensorBoard, wandb and mlflow with its steps, the config is
logged once, a resume continues the same tracker run, and a tracker that fails never costs a metrics.jsonl row.

Real libraries, no network: wandb runs offline (read back from its .wandb file), mlflow logs to a folder
store under tmp_path (read back through MlflowClient).
"""

import json
import struct
import sys
import time
from pathlib import Path

import pytest

from chord.config import ConfigError, load_config
from chord.logger import RunLogger
from chord.trackers import TRACKERS_FILE, TensorBoard, mlflow_name, open_trackers
from chord.types import Rollout

pytestmark = pytest.mark.unit

ROWS = {1: {"reward/mean": 0.25, "eval/overall/pass@4": 0.5},
        2: {"reward/mean": 0.5, "eval/overall/pass@4": 0.75},
        3: {"reward/mean": 0.75, "eval/overall/pass@4": 1.0}}
RESUMED = {3: {"reward/mean": 0.125, "eval/overall/pass@4": 0.0}}  # step 3 again, after a resume at step 2


def _rollouts() -> list[Rollout]:
    return [Rollout(prompt_ids=[1], response_ids=[2, 3], sampling_logprobs=[-0.1, -0.2], response_text=text,
                    truncated=trunc, group=g, policy_version=2, reward=rew)
            for text, trunc, g, rew in (("4", False, 0, 1.0), ("five", True, 0, 0.0), ("7", False, 1, 1.0))]


ROLLOUT_ROWS = [[0, "4", 1.0, False, 2], [0, "five", 0.0, True, 2], [1, "7", 1.0, False, 2]]


def _launch(cfg, out, start: int, rows: dict, rollouts_at: int | None = None) -> RunLogger:
    """What train.train does with its logger: open the trackers, log each step's row, close."""
    log = RunLogger(out, enabled=True, trackers=open_trackers(cfg, out, start))
    for step, m in rows.items():
        log.log(step, m)
        if step == rollouts_at:
            log.log_rollouts(step, _rollouts())
    log.close()
    return log


def _steps(out) -> list[int]:
    return [json.loads(x)["step"] for x in (out / "metrics.jsonl").read_text().splitlines()]


def _wandb_records(path):
    """The records of an offline run's .wandb file: wandb's LevelDB-style log of 32 KiB blocks, each record a
    protobuf (wandb.proto.wandb_internal_pb2.Record) in chunks of header (crc32, length, type) + data."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B" and struct.unpack("<H", data[4:6])[0] == 0xBEE1, "not a .wandb file"
    pos, block, buf = 7, 32768, b""
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        _, n, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if n == 0 and kind == 0:
            break
        buf += data[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):  # FULL or LAST: a whole record
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def _wandb_run(folder):
    """(run id, name, project, config, [(step, row)], {metric or glob: its x-axis}) of one offline run folder,
    as wandb wrote them."""
    rec_file = next(folder.glob("run-*.wandb"))
    # run.finish() returns before wandb's service has written the file out: wait for its closing record
    for _ in range(100):
        records = list(_wandb_records(rec_file))
        if records and records[-1].WhichOneof("record_type") == "exit":
            break
        time.sleep(0.1)
    run, config, history, axes = None, {}, [], {}
    for rec in records:
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run = rec.run
            config.update({u.key: json.loads(u.value_json) for u in rec.run.config.update})
        elif kind == "config":
            config.update({u.key: json.loads(u.value_json) for u in rec.config.update})
        elif kind == "metric":
            axes[rec.metric.glob_name or rec.metric.name] = rec.metric.step_metric
        elif kind == "history":
            row = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
            history.append((row.pop("step"), {k: v for k, v in row.items() if not k.startswith("_")}))
    return run.run_id, run.display_name, run.project, config, history, axes


@pytest.fixture
def wandb_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)  # the default: wandb's files in the run folder
    for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):  # nothing under ~
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


def test_wandb_gets_rows_config_tables_and_resume_continues_its_run(tmp_path, wandb_offline, capsys):
    out = tmp_path / "run"
    cfg = load_config(None, [f"run.output_dir={out}", "run.name=trk", "logging.trackers=[wandb]",
                             "logging.project=chord-test"])
    _launch(cfg, out, 0, ROWS, rollouts_at=3)
    run_id = json.loads((out / TRACKERS_FILE).read_text())["wandb"]["run_id"]
    (first,) = (out / "wandb").glob("offline-run-*")
    rid, name, project, config, history, axes = _wandb_run(first)
    assert (rid, name, project) == (run_id, "trk", "chord-test")
    assert axes == {"step": "", "*": "step"}  # every chart is drawn against `step`, not wandb's own counter
    assert config["trainer"]["lr"] == 0.001 and config["logging"]["trackers"] == ["wandb"]
    metric_rows = [(s, row) for s, row in history if "rollouts" not in "".join(row)]
    assert metric_rows == list(ROWS.items())  # values and chord's own steps
    (table_row,) = [row for s, row in history if s == 3 and "rollouts/path" in row]
    table = json.loads((first / "files" / table_row["rollouts/path"]).read_text())
    assert table["columns"] == ["group", "response", "reward", "truncated", "policy_version"]
    assert table["data"] == ROLLOUT_ROWS

    _launch(cfg, out, 2, RESUMED)  # the same folder resumed from its step-2 checkpoint
    assert json.loads((out / TRACKERS_FILE).read_text())["wandb"]["run_id"] == run_id
    assert f"chord: wandb: continuing run trk ({run_id}), offline in " in capsys.readouterr().err
    (second,) = set((out / "wandb").glob("offline-run-*")) - {first}  # offline: one folder per launch
    rid, _, _, _, history, _ = _wandb_run(second)
    assert rid == run_id and history == list(RESUMED.items())  # re-logged step 3 kept (x-axis: `step`)


@pytest.fixture
def mlflow_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # recorded, so that what open_trackers sets is undone
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    return f"file://{tmp_path / 'mlruns'}"


def test_mlflow_gets_rows_params_tables_and_resume_continues_its_run(tmp_path, mlflow_folder, capsys):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "run"
    cfg = load_config(None, [f"run.output_dir={out}", "run.name=trk", "logging.trackers=[mlflow]",
                             f"logging.tracking_uri={mlflow_folder}", "logging.project=chord-test",
                             "model.chat_template_kwargs={enable_thinking: false}"])
    _launch(cfg, out, 0, ROWS, rollouts_at=3)
    run_id = json.loads((out / TRACKERS_FILE).read_text())["mlflow"]["run_id"]
    client = MlflowClient(mlflow_folder)
    run = client.get_run(run_id)
    assert run.info.run_name == "trk" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "chord-test"
    params = run.data.params
    assert params["trainer.lr"] == "0.001" and params["run.name"] == "trk"
    assert params["logging.trackers"] == '["mlflow"]'  # lists as JSON
    assert params["model.chat_template_kwargs.enable_thinking"] == "false"
    for key in ("reward/mean", "eval/overall/pass@4"):
        hist = client.get_metric_history(run_id, mlflow_name(key))
        assert [(m.step, m.value) for m in hist] == [(s, row[key]) for s, row in ROWS.items()]
    local = client.download_artifacts(run_id, "rollouts/step_3.json", str(tmp_path))
    table = json.loads(Path(local).read_text())
    assert table == {"columns": ["group", "response", "reward", "truncated", "policy_version"], "data": ROLLOUT_ROWS}

    _launch(cfg, out, 2, RESUMED)  # the same folder resumed from its step-2 checkpoint
    assert json.loads((out / TRACKERS_FILE).read_text())["mlflow"]["run_id"] == run_id
    assert f"chord: mlflow: continuing run trk ({run_id}) in experiment chord-test at {mlflow_folder}" in \
        capsys.readouterr().err
    hist = client.get_metric_history(run_id, "reward/mean")
    assert [(m.step, m.value) for m in hist] == [(1, 0.25), (2, 0.5), (3, 0.75), (3, 0.125)]  # the later one last
    assert client.get_run(run_id).info.status == "FINISHED"
    assert len(client.search_runs([run.info.experiment_id])) == 1

    _launch(cfg, out, 0, {1: ROWS[1]})  # a fresh start in the same folder is a new run
    assert json.loads((out / TRACKERS_FILE).read_text())["mlflow"]["run_id"] != run_id


def test_mlflow_names_keep_slashes_and_lose_only_what_mlflow_refuses():
    assert mlflow_name("eval/overall/pass@4") == "eval/overall/pass_4"
    assert mlflow_name("eval/points24_ood/avg@8") == "eval/points24_ood/avg_8"
    assert mlflow_name("time/weight_sync") == "time/weight_sync"
    assert mlflow_name("a b.c-d:e") == "a b.c-d:e"


def test_tensorboard_resume_replaces_the_rerun_steps(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for start, rows in ((0, ROWS), (2, RESUMED)):
        log = RunLogger(tmp_path, enabled=True, trackers=[TensorBoard(tmp_path, start)])
        for step, m in rows.items():
            log.log(step, m)
        log.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("reward/mean")] == [(1, 0.25), (2, 0.5), (3, 0.125)]


class Unreachable:
    """A tracker whose server went away: every call raises."""

    name = "unreachable"

    def __init__(self):
        self.calls = 0

    def log(self, step, scalars):
        self.calls += 1
        raise ConnectionError("HTTPConnectionPool(host='tracker', port=443): Max retries exceeded\nmore")

    log_config = log_rollouts = close = log


def test_a_tracker_that_raises_is_one_warning_and_the_run_keeps_every_row(tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    broken = Unreachable()
    log = RunLogger(tmp_path, enabled=True, trackers=[broken, TensorBoard(tmp_path)])
    for step, m in ROWS.items():
        log.log(step, m)
        log.log_rollouts(step, _rollouts())
    log.close()  # never raises
    assert broken.calls == 1  # off after the first failure
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["chord: warning: the unreachable tracker failed (ConnectionError: HTTPConnectionPool(host='tracker',"
                   " port=443): Max retries exceeded); it is off for the rest of this run (metrics.jsonl still gets "
                   "every row)"]
    assert _steps(tmp_path) == [1, 2, 3]
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("reward/mean")] == [1, 2, 3]  # the other trackers carry on


def test_a_tracker_that_cannot_start_is_left_out_with_one_warning(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    out = tmp_path / "run"
    cfg = load_config(None, [f"run.output_dir={out}", "logging.trackers=[tensorboard,mlflow]",
                             "logging.tracking_uri=http://127.0.0.1:9"])  # nothing listens on port 9
    trackers = open_trackers(cfg, out, 0)
    assert [t.name for t in trackers] == ["tensorboard"]
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("chord: warning: the mlflow tracker did not start (")
    for t in trackers:
        t.close()


@pytest.mark.parametrize("override,message", [
    ("logging.trackers=[wandbb]", "'logging.trackers' has 'wandbb': must be among tensorboard, wandb, mlflow "
                                  "(did you mean 'wandb'?)"),
    ("logging.trackers=[mlflow,mlflow]", "'logging.trackers' lists 'mlflow' twice"),
    ("logging.tensorboard=false", "'logging.tensorboard' was replaced by logging.trackers: [tensorboard] "
                                  "(the default), or [] for no TensorBoard"),
])
def test_bad_tracker_settings_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError) as e:
        load_config(None, [override])
    assert str(e.value) == message


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_missing_tracker_package_is_one_line_at_start_up(name, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # as if not installed: find_spec and import both fail
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"logging.trackers=[{name}]", "logging.tracking_uri=file:///tmp/mlruns"])
    assert str(e.value) == (f"'logging.trackers' has '{name}' but the {name} package is not installed: "
                            f"pip install -e '.[trackers]' (or {name})")


def test_mlflow_database_store_without_sqlalchemy_is_one_line(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setitem(sys.modules, "sqlalchemy", None)  # mlflow-skinny: no database stores
    with pytest.raises(ConfigError, match=r"^'logging.tracking_uri' is null \(mlflow default: sqlite:///mlflow.db\)"):
        load_config(None, ["logging.trackers=[mlflow]"])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert load_config(None, ["logging.trackers=[mlflow]"]).logging.tracking_uri is None  # a server: fine

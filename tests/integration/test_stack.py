"""A TRL / verl user's stack end to end on CPU (issue 26's "done when"): verl's RL parquet (dotted answer column,
extra columns reaching the reward), TRL's conversational prompt/completion expert data, DAPO's group filter and a
non-default loss aggregation, wandb (offline) and mlflow (a folder store) read back, and final/ pushed with its
model card to a local stand-in of the Hub at the end of the run."""

import json

import pandas as pd
import pytest

from tests.integration.conftest import ROOT, python, run_cli
from tests.unit.test_hub import TOKEN, StandInHub
from tests.unit.test_trackers import _wandb_run

pytestmark = pytest.mark.integration
STEPS, B, K = 3, 8, 4


def _verl_and_trl_files(cache, tmp_path):
    """The tiny task's RL rows as a verl parquet, its expert rows as TRL conversational prompt/completion."""
    task = cache / "tiny_task"
    rl = [json.loads(x) for x in next(task.glob("rl-*.jsonl")).read_text().splitlines()]
    parquet = tmp_path / "train.parquet"
    pd.DataFrame([{"data_source": "tiny_verl", "prompt": [{"role": "user", "content": r["prompt"]}],
                   "ability": "arithmetic", "reward_model": {"style": "rule", "ground_truth": r["answer"]},
                   "extra_info": {"index": i, "split": "train"}} for i, r in enumerate(rl)]).to_parquet(parquet)
    expert = [json.loads(x)["messages"] for x in next(task.glob("expert-*.jsonl")).read_text().splitlines()]
    trl = tmp_path / "sft.jsonl"
    trl.write_text("".join(json.dumps({"prompt": m[:-1], "completion": m[-1:]}) + "\n" for m in expert))
    return parquet, trl


def test_verl_parquet_trl_conversations_dapo_filter_wandb_mlflow_and_hub_push(tiny_cache, tmp_path, monkeypatch):
    parquet, trl = _verl_and_trl_files(tiny_cache, tmp_path)
    out, mlruns = tmp_path / "run", f"file://{tmp_path / 'mlruns'}"
    hub = StandInHub()
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true",
           **{v: str(tmp_path / "wandb-home" / v.lower()) for v in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR",
                                                                     "WANDB_DATA_DIR")},
           "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_TOKEN": TOKEN}
    args = [str(ROOT / "recipes/tiny.yaml"), f"trainer.steps={STEPS}", f"model.cache_dir={tiny_cache}",
            f"run.output_dir={out}", "run.name=stack", "logging.progress_bar=false",
            f"trainer.prompts_per_step={B}", f"trainer.samples_per_prompt={K}", "trainer.expert_per_step=8",
            f"data.prompts.source={parquet}", "data.prompts.answer_column=reward_model.ground_truth",
            f"data.expert.source={trl}", "data.expert.messages_column=null", "data.expert.prompt_column=prompt",
            "data.expert.response_column=completion", "reward.name=tests.integration.stack_reward:reward",
            "algorithm.filter_groups=true", "algorithm.sft_loss_agg_mode=seq-mean-token-mean",
            "logging.trackers=[tensorboard,wandb,mlflow]", f"logging.tracking_uri={mlruns}",
            "logging.project=chord-stack", "hub.push=final", "hub.repo_id=tester/stack-tiny"]
    try:
        # cold: huggingface_hub reads HF_ENDPOINT / HF_HUB_OFFLINE when imported, which the warm server did already
        p = run_cli([python(), "chord/train.py", *args], env=env, cold=True)
    finally:
        hub.server.shutdown()
    assert p.returncode == 0, p.stderr[-3000:]

    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    for r in rows:
        assert r["reward/errors"] == 0  # every row's extra_info reached the reward
        assert r["tokens/expert"] > 0 and r["optim/empty_step"] in (0.0, 1.0)
        # DAPO's filter: the groups left are exactly those whose rewards differ
        assert r["rollout/groups_kept"] == pytest.approx(B * (1 - r["rollout/all_equal_frac"]))
        assert r["gap/logp_max"] <= 1e-4

    # wandb, offline: the run's rows against chord's steps, and its config
    (wandb_folder,) = (out / "wandb").glob("offline-run-*")
    _, name, project, config, history, _ = _wandb_run(wandb_folder)
    assert (name, project) == ("stack", "chord-stack")
    assert config["algorithm"]["filter_groups"] is True
    logged = {s: row for s, row in history if "reward/mean" in row}
    assert {s: logged[s]["reward/mean"] for s in logged} == {r["step"]: r["reward/mean"] for r in rows}

    # mlflow, a folder store: the same rows and the config as params
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 reads a folder store only when told
    client = MlflowClient(mlruns)
    run_id = json.loads((out / "trackers.json").read_text())["mlflow"]["run_id"]
    hist = client.get_metric_history(run_id, "rollout/groups_kept")
    assert [(m.step, m.value) for m in hist] == [(r["step"], r["rollout/groups_kept"]) for r in rows]
    assert client.get_run(run_id).data.params["data.prompts.answer_column"] == "reward_model.ground_truth"

    # the Hub: final/ with its model card, byte for byte
    files = hub.repos["tester/stack-tiny"]["files"]["main"]
    assert files["model.safetensors"] == (out / "final" / "model.safetensors").read_bytes()
    card = files["README.md"].decode()
    assert card == (out / "final" / "README.md").read_text() and "filter_groups: true" in card
    assert "chord: pushed" in p.stderr

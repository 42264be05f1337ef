"""Model cards and Hub pushes (chord.checkpoint.hub, `python -m chord.export ... --push-to-hub`) against a local
stand-in Hub.

The stand-in is a small http.server thread answering what huggingface_hub 2.x's create_repo, create_branch and
upload_folder send for small files (read from its source: _commit_api.py, _upload_pipeline.py, hf_api.py):
    POST /api/repos/create                      {"name", "organization", "visibility"}  -> {"url"}
    POST /api/models/{repo}/branch/{branch}     (create_branch)
    POST /api/validate-yaml                     (README.md metadata; the hf_xet-less create_commit path)
    POST /api/models/{repo}/preupload/{rev}     -> uploadMode "regular" for every file: no LFS / Xet storage involved
    POST /api/models/{repo}/commit/{rev}        NDJSON: a header line, then files with base64 content
The real Hub answers "lfs" for model.safetensors and stores it through Xet: that part is not covered here.
The real client is pointed at it through huggingface_hub.constants in this process (HfApi reads ENDPOINT when
built) and through HF_ENDPOINT in the CLI's subprocess; a fake token comes from HF_TOKEN. What is asserted is
read back from what the stand-in received. The end-to-end `--push-to-hub` of a checkpoint (a training run) is
not here: the export of a checkpoint is tested in tests/integration/test_resume.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml

from chord.checkpoint import STATE, hub
from chord.config import ConfigError, to_yaml
from chord.config.recipe import load_config

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "hf_chord_test_token"
USER = "tester"  # whom the stand-in says the token belongs to


class StandInHub:
    """Records every request; holds each repo's files as committed; `refuse` = a status for every request."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.repos: dict[str, dict] = {}  # repo id -> {"private", "branches", "files": {branch: {path: bytes}}}
        self.commits: list[dict] = []
        self.refuse: int | None = None
        hub_ = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                hub_.requests.append(("GET", self.path))
                self._answer(hub_.refuse or 404, {"error": "not found"})

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub_.requests.append(("POST", self.path))
                if hub_.refuse:
                    return self._answer(hub_.refuse, {"error": "Invalid credentials in Authorization header"})
                if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                    return self._answer(401, {"error": "Invalid credentials in Authorization header"})
                status, answer = hub_.post(self.path.split("?")[0], body)
                self._answer(status, answer)

            def _answer(self, status: int, answer: dict) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def post(self, path: str, body: bytes) -> tuple[int, dict]:
        parts = path.strip("/").split("/")
        if path == "/api/repos/create":
            req = json.loads(body)
            repo = f"{req['organization'] or USER}/{req['name']}"
            if repo in self.repos:
                # the Hub's 409 carries the url too: create_repo(exist_ok=True) reads it
                return 409, {"error": "You already created this model repo", "url": f"{self.url}/{repo}"}
            self.repos[repo] = {"private": req.get("visibility") == "private", "branches": ["main"],
                                "files": {"main": {}}}
            return 200, {"url": f"{self.url}/{repo}"}
        if path == "/api/validate-yaml":
            yaml.safe_load(json.loads(body)["content"].split("---")[1])  # the metadata must parse
            return 200, {"errors": [], "warnings": []}
        if len(parts) == 6 and parts[:2] == ["api", "models"]:
            repo, action, rev = f"{parts[2]}/{parts[3]}", parts[4], parts[5]
            if repo not in self.repos:
                return 404, {"error": "Repository not found"}
            r = self.repos[repo]
            if action == "branch":
                r["branches"].append(rev)
                r["files"][rev] = dict(r["files"]["main"])
                return 200, {}
            if rev not in r["files"]:
                return 404, {"error": f"Invalid rev id: {rev}"}
            if action == "preupload":
                files = json.loads(body)["files"]
                return 200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                        "oid": None} for f in files]}
            if action == "commit":
                lines = [json.loads(x) for x in body.splitlines() if x.strip()]
                assert lines[0]["key"] == "header"
                for item in lines[1:]:
                    assert item["key"] == "file" and item["value"]["encoding"] == "base64", item["key"]
                    r["files"][rev][item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                oid = f"{len(self.commits) + 1:040x}"
                self.commits.append({"repo": repo, "rev": rev, "summary": lines[0]["value"]["summary"]})
                return 200, {"commitUrl": f"{self.url}/{repo}/commit/{oid}", "commitOid": oid}
        return 404, {"error": f"the stand-in does not serve {path}"}


@pytest.fixture
def stand_in(monkeypatch):
    """The stand-in Hub, this process's huggingface_hub pointed at it, online, with a token."""
    from huggingface_hub import constants

    h = StandInHub()
    monkeypatch.setattr(constants, "ENDPOINT", h.url)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    yield h
    h.server.shutdown()


ROWS = [  # eval.jsonl as chord.evaluation writes it: ID and OOD benchmarks, avg@4 / pass@k, step 0, 20, 40
    {"step": s, "id/avg@4": a, "id/pass@4": a + 0.2, "id/pass@1": a, "id/pass@2": a + 0.1, "id/problems": 50.0,
     "id/length_mean": 12.0, "id/truncated_frac": 0.02, "ood/avg@4": b, "ood/pass@4": b + 0.1, "ood/problems": 40.0,
     "ood/length_mean": 14.5, "ood/truncated_frac": 0.0, "overall/avg": (a + b) / 2,
     "overall/pass": (a + b + 0.3) / 2, "overall/length_mean": 13.25, "overall/truncated_frac": 0.01}
    for s, a, b in ((0, 0.10, 0.05), (20, 0.625, 0.30), (40, 0.55, 0.35))]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A finished run's folder as chord/train.py leaves it, from the built-in tiny model (random weights: no
    warm-up) and hand-written config.yaml / eval.jsonl: final/ (step 40) and best/ (step 20)."""
    from chord.models.tiny import build_tiny_model

    root = tmp_path_factory.mktemp("hub")
    model = build_tiny_model(root / "cache", warmup_steps=0)
    run = root / "runs" / "tiny-chord-phi"
    cfg = load_config(str(ROOT / "recipes/tiny.yaml"), [
        f"run.output_dir={run}", "model.path=Qwen/Qwen2.5-0.5B-Instruct", "data.prompts.source=openai/gsm8k",
        f"data.expert.source={root / 'sft.jsonl'}", "trainer.steps=40", "algorithm.mu.peak=0.5",
        "algorithm.mu.valley=0.05", "algorithm.mu.warmup_steps=10", "algorithm.mu.decay_steps=20",
        "eval.benchmarks=[{name: id, source: 'builtin:tiny'}, {name: ood, source: 'builtin:tiny_math'}]",
        "hub.push=best", "hub.repo_id=me/tiny-chord"])
    (root / "sft.jsonl").write_text('{"messages": []}\n')
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(to_yaml(cfg))
    (run / "eval.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in ROWS))
    for name in ("final", "best"):
        shutil.copytree(model, run / name, ignore=shutil.ignore_patterns("chord_build.json"))
    (run / "best" / "chord_best.json").write_text(json.dumps({"metric": "overall/avg", "value": 0.4625, "step": 20}))
    return run


def pushed_equals_folder(h: StandInHub, repo: str, rev: str, folder: Path) -> None:
    files = h.repos[repo]["files"][rev]
    local = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md"} <= set(files)
    assert files.keys() == local.keys()
    assert all(files[k] == local[k] for k in local), [k for k in local if files[k] != local[k]]


def test_the_card_holds_metadata_method_the_evaluation_provenance_and_config(run_folder):
    card = hub.model_card(run_folder, run_folder / "best")
    meta = yaml.safe_load(card.split("---\n")[1])
    assert meta["library_name"] == "transformers" and meta["tags"][:3] == ["chord", "grpo", "sft"]
    assert meta["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct" and meta["datasets"] == ["openai/gsm8k"]
    assert "CHORD (arXiv 2508.11408)" in card and "mu rises linearly from 0 to 0.5 over 10 steps" in card
    # best/: the selected step's evaluation, then the latest (final/'s weights); benchmarks as rows, in %
    assert "These weights, at training step 20, selected as best/ by overall/avg = 0.4625" in card
    assert "| id | 50 | 4 | 62.5 | 82.5 | 12.0 | 2.0 |" in card
    assert "| ood | 40 | 4 | 30.0 | 40.0 | 14.5 | 0.0 |" in card and "| **overall** (mean) | | | 46.2 | 61.3 |" in card
    assert "The run's latest evaluation, at step 40 (other weights)" in card and "| id | 50 | 4 | 55.0 |" in card
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    assert f"git commit `{head[:12]}" in card
    assert "expert data (SFT): `" in card and hub.file_sha256(run_folder.parent.parent / "sft.jsonl")[0] in card
    assert "```yaml\n" + (run_folder / "config.yaml").read_text().rstrip() + "\n```" in card
    final = hub.model_card(run_folder, run_folder / "final")
    assert "These weights, at training step 40:" in final and "other weights" not in final


def test_builtin_models_have_no_base_model_and_an_unreadable_config_is_quoted(tmp_path, run_folder):
    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    text = (run / "config.yaml").read_text().replace("Qwen/Qwen2.5-0.5B-Instruct", "tiny")
    (run / "config.yaml").write_text(text + "future_section: {x: 1}\n")  # a newer chord's key: dropped, not fatal
    card = hub.model_card(run, run / "final")
    assert "base_model" not in card.split("---\n")[1] and "`tiny` (built into chord" in card and "CHORD" in card
    (run / "config.yaml").write_text("trainer: {steps: not-a-number}\n")
    card = hub.model_card(run, run / "final")
    assert "method is not described" in card and "steps: not-a-number" in card


def test_a_later_stages_card_traces_the_base_model_through_the_earlier_stage(tmp_path, run_folder):
    """A staged recipe's last stage starts from stage 1's best/ (a local folder): the card's base_model is the
    model stage 1 started from, and stage 1 is described."""
    from chord.config import stages

    cfg = load_config(str(ROOT / "recipes/tiny_sft_then_rl.yaml"), [
        f"run.output_dir={tmp_path / 'runs/x'}", "model.path=Qwen/Qwen2.5-0.5B-Instruct"])
    plan = stages.expand(cfg)
    for st in plan:
        st.dir.mkdir(parents=True)
        (st.dir / "config.yaml").write_text(to_yaml(st.cfg))
    shutil.copytree(run_folder / "final", plan[-1].dir / "final")
    card = hub.model_card(plan[-1].dir, plan[-1].dir / "final")
    assert yaml.safe_load(card.split("---\n")[1])["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert f"- before that, `{plan[0].dir}`: SFT on expert demonstrations" in card
    assert "No evaluation was recorded" in card


def test_a_mixtures_entries_are_the_sources_with_their_pins():
    entry = SimpleNamespace(source="openai/gsm8k", split=None, subset="main", revision="abc123", weight=0.3)
    section = SimpleNamespace(source=None, split="train", mixture=[entry, SimpleNamespace(source="builtin:tiny")])
    assert hub.sources(section) == [
        {"source": "openai/gsm8k", "split": "train", "subset": "main", "revision": "abc123", "weight": 0.3},
        {"source": "builtin:tiny", "split": "train", "subset": None, "revision": None, "weight": None}]
    plain = SimpleNamespace(source="data/x.jsonl", split="test")  # a config without mixtures (an older chord)
    assert hub.sources(plain) == [{"source": "data/x.jsonl", "split": "test", "subset": None, "revision": None,
                                   "weight": None}]
    assert hub.hub_dataset("openai/gsm8k") == "openai/gsm8k" and hub.hub_dataset("data/x.jsonl") is None
    assert hub.hub_dataset("builtin:tiny") is None and hub.hub_dataset("./gsm8k") is None


def test_push_folder_uploads_every_file_and_returns_the_commit_url(stand_in, run_folder, tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder = tmp_path / "best"
    shutil.copytree(run_folder / "best", folder)
    hub.write_card(folder, run_folder)
    for xet in (False, True):  # upload_folder's two paths: create_commit, and the hf_xet pipeline (the default)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
        (folder / "note.txt").write_text(f"xet={xet}")  # a changed file: the second push is a real commit too
        stand_in.requests.clear()
        url = hub.push_folder(folder, "me/tiny-chord", private=True, revision=None)
        assert url == f"{stand_in.url}/me/tiny-chord/commit/{len(stand_in.commits):040x}"
        pushed_equals_folder(stand_in, "me/tiny-chord", "main", folder)
        # what arrived, in order (huggingface_hub also GETs /api/agent-harnesses once a day: telemetry, not asserted)
        # README.md's metadata is validated once before hashing, and again by create_commit on the xet-less path
        assert [p for m, p in stand_in.requests if m == "POST"] == [
            "/api/repos/create", *["/api/validate-yaml"] * (1 if xet else 2),
            "/api/models/me/tiny-chord/preupload/main", "/api/models/me/tiny-chord/commit/main"], stand_in.requests
    assert stand_in.repos["me/tiny-chord"]["private"] and stand_in.commits[0]["summary"] == "chord 0.1.0: upload best/"


def test_failures_are_one_line(stand_in, run_folder, monkeypatch):
    from huggingface_hub import constants

    folder = run_folder / "final"
    stand_in.refuse = 401
    with pytest.raises(hub.HubError) as e:
        hub.push_folder(folder, "me/x")
    assert "401 Unauthorized" in str(e.value) and stand_in.url in str(e.value) and "\n" not in str(e.value)
    stand_in.refuse = 403
    with pytest.raises(hub.HubError, match=r"may not write to me/x \(403"):
        hub.push_folder(folder, "me/x")
    stand_in.refuse, n = None, len(stand_in.requests)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{closed}")
    with pytest.raises(hub.HubError, match=rf"^cannot reach http://127.0.0.1:{closed}: ConnectError"):
        hub.push_folder(folder, "me/x")
    for bad in ("me/x/y", "a--b", "-x", ""):
        with pytest.raises(hub.HubError, match="invalid repo id"):
            hub.push_folder(folder, bad)
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(folder / "no-token-here"))
    with pytest.raises(hub.HubError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        hub.push_folder(folder, "me/x")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(hub.HubError, match="^HF_HUB_OFFLINE=1 is set: unset HF_HUB_OFFLINE to push$"):
        hub.push_folder(folder, "me/x")
    assert len(stand_in.requests) == n  # none of these reached the Hub
    with pytest.raises(hub.HubError, match="not a save_pretrained folder"):
        hub.push_folder(run_folder, "me/x")


def test_publish_run_writes_cards_pushes_and_a_failed_push_is_one_warning(stand_in, run_folder, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    cfg = load_config(None, [f"run.output_dir={run}", "hub.push=final", "hub.repo_id=me/tiny-chord",
                             "hub.revision=dev"])
    stand_in.refuse = 401
    hub.publish_run(cfg, run)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0] == f"chord: pushing {run / 'final'} (2 MiB) to me/tiny-chord (dev)"
    assert err[1].startswith(f"chord: warning: pushing {run / 'final'} to me/tiny-chord failed: {stand_in.url}: the "
                             "token was refused (401 Unauthorized)")
    assert err[1].endswith(f"push it with: python -m chord.export {run / 'final'} --push-to-hub me/tiny-chord "
                           "--revision dev")
    assert (run / "final/README.md").is_file() and (run / "best/README.md").is_file()  # cards either way
    assert "training step 20" in (run / "best/README.md").read_text()
    stand_in.refuse = None
    hub.publish_run(cfg, run)
    err = capsys.readouterr().err
    assert f"chord: pushed {run / 'final'} to me/tiny-chord: {stand_in.url}/me/tiny-chord/commit/" in err
    assert "/api/models/me/tiny-chord/branch/dev" in [p for _, p in stand_in.requests]
    pushed_equals_folder(stand_in, "me/tiny-chord", "dev", run / "final")
    assert stand_in.repos["me/tiny-chord"]["files"]["main"] == {}  # the branch got the commit, main did not


def test_cli_pushes_an_exported_folder_through_hf_endpoint(run_folder, tmp_path):
    """`python -m chord.export RUN/best --push-to-hub REPO` in a fresh process: HF_ENDPOINT and HF_TOKEN from the
    environment, as a user sets them; a README.md already there is pushed as it is."""
    h = StandInHub()
    run = tmp_path / "run"
    shutil.copytree(run_folder, run)
    (run / "best/README.md").write_text("---\nlibrary_name: transformers\n---\n# edited by hand\n")
    env = {**os.environ, "HF_ENDPOINT": h.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    cmd = [sys.executable, "-m", "chord.export", str(run / "best"), "--push-to-hub", "solo", "--public"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1] == (f"chord.export: pushed {run / 'best'} to solo: "
                                                 f"{h.url}/{USER}/solo/commit/{1:040x}")
    pushed_equals_folder(h, f"{USER}/solo", "main", run / "best")
    assert h.repos[f"{USER}/solo"]["files"]["main"]["README.md"].endswith(b"# edited by hand\n")
    assert not h.repos[f"{USER}/solo"]["private"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT, env={**env, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2 and p.stderr.strip() == ("chord.export: HF_HUB_OFFLINE=1 is set: unset HF_HUB_OFFLINE "
                                                       "to push"), p.stderr
    h.server.shutdown()


def test_cli_exports_a_checkpoint_with_its_card_and_pushes_it(run_folder, tmp_path):
    """`python -m chord.export CKPT OUT --push-to-hub REPO --revision BRANCH`: a ZeRO-0 checkpoint made by hand (the
    tiny model's weights, lm_head shifted, the files' sha256 recorded as chord.checkpoint.save does) is exported,
    carded with its own step and config, and pushed; no training run needed."""
    from safetensors.torch import load, load_file

    h = StandInHub()
    run = tmp_path / "run"
    shutil.copytree(run_folder, run, ignore=shutil.ignore_patterns("best"))
    base = tmp_path / "base"  # the run's model.path: a local folder
    shutil.copytree(run_folder / "final", base, ignore=shutil.ignore_patterns("README.md"))
    weights = load_file(base / "model.safetensors")
    weights["lm_head.weight"] += 1.0
    states = tmp_path / "states.pt"
    torch.save({"module": weights}, states)
    cfg = load_config(str(ROOT / "recipes/tiny.yaml"), [f"run.output_dir={run}", f"model.path={base}",
                                                         "trainer.steps=40"])
    data = {"mp_rank_00_model_states.pt": states.read_bytes()}
    ckpt = run / "checkpoints" / "step_20"
    ckpt.mkdir(parents=True)
    (ckpt / "mp_rank_00_model_states.pt").write_bytes(data["mp_rank_00_model_states.pt"])
    (ckpt / STATE).write_text(json.dumps({
        "step": 20, "world_size": 1, "config": to_yaml(cfg), "files": {n: len(b) for n, b in data.items()},
        "sha256": {n: hashlib.sha256(b).hexdigest() for n, b in data.items()}}))
    env = {**os.environ, "HF_ENDPOINT": h.url, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
           "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "chord.export", str(ckpt), str(out), "--push-to-hub", "me/from-ckpt",
                        "--revision", "step20"], capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stderr.strip().splitlines()[-1] == (f"chord.export: pushed {out} to me/from-ckpt: "
                                                 f"{h.url}/me/from-ckpt/commit/{1:040x}")
    pushed_equals_folder(h, "me/from-ckpt", "step20", out)
    pushed = load(h.repos["me/from-ckpt"]["files"]["step20"]["model.safetensors"])
    assert torch.equal(pushed["lm_head.weight"], weights["lm_head.weight"])  # the checkpoint's weights, not base's
    card = (out / "README.md").read_text()
    assert "These weights, at training step 20, selected" not in card and "These weights, at training step 20:" in card
    assert "The run's latest evaluation, at step 40 (other weights)" in card and f"`{base}` (a local folder)" in card
    assert "```yaml\n" + to_yaml(cfg).rstrip() + "\n```" in card
    h.server.shutdown()


def test_cli_refusals_are_one_line_exit_2(run_folder, tmp_path, capsys, monkeypatch):
    from huggingface_hub import constants

    from chord.export import main

    def refused(*argv: str) -> str:
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("chord.export: "), err
        return err[0]

    assert "is an exported model already: push it with --push-to-hub REPO" in refused(run_folder / "final")
    assert "give OUT_DIR" in refused(run_folder)
    assert "invalid repo id 'a--b'" in refused(run_folder, tmp_path / "o", "--push-to-hub", "a--b")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # refused before the export, which could take minutes
    assert "unset HF_HUB_OFFLINE" in refused(run_folder / "checkpoints", tmp_path / "o", "--push-to-hub", "me/x")
    assert not (tmp_path / "o").exists()


def test_hub_section_is_validated_and_pushes_after_the_last_stage_only(tmp_path):
    with pytest.raises(ConfigError, match="'hub.repo_id' is null but hub.push is final"):
        load_config(None, ["hub.push=final"])
    with pytest.raises(ConfigError, match="'hub.repo_id' must be owner/name or name"):
        load_config(None, ["hub.repo_id=a/b/c"])
    with pytest.raises(ConfigError, match="'hub.push' is best but eval.benchmarks is empty"):
        load_config(None, ["hub.push=best", "hub.repo_id=x"])
    with pytest.raises(ConfigError, match="'hub.push' must be one of none, final, best"):
        load_config(None, ["hub.push=yes"])
    from chord.config import stages

    cfg = load_config(str(ROOT / "recipes/tiny_sft_then_rl.yaml"), [f"run.output_dir={tmp_path}", "hub.push=final",
                                                                     "hub.repo_id=me/sft-then-rl"])
    plan = stages.expand(cfg)
    assert [s.cfg.hub.push for s in plan] == ["none"] * (len(plan) - 1) + ["final"]
    assert plan[-1].cfg.hub.repo_id == "me/sft-then-rl"
    with pytest.raises(ConfigError, match="run, model, hub and stages are shared by all stages"):
        load_config(str(ROOT / "recipes/tiny_sft_then_rl.yaml"), ["stages.0.hub.push=final"])


def test_a_push_that_cannot_work_is_one_warning_at_start_up(stand_in, monkeypatch):
    from huggingface_hub import constants

    from chord.config import load_config

    cfg = load_config(None, ["hub.push=final", "hub.repo_id=me/x"])
    assert hub.push_warning(cfg) is None  # online, with a token: nothing to say
    assert hub.push_warning(load_config(None, [])) is None  # hub.push: none
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    warning = hub.push_warning(cfg)
    assert warning.startswith("warning: hub.push=final will fail at the end of this run as things stand: "
                              "HF_HUB_OFFLINE=1 is set") and "\n" not in warning
    assert not stand_in.requests  # a check, not a request

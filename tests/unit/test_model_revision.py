"""model.revision pins a hub model: its snapshot folder is what every consumer loads (offline, from a hub cache
laid out as huggingface_hub writes it), an unknown revision is one ModelError line, built-in or local models
refuse it."""

import pytest

from chord.config import ConfigError, load_config
from chord.models.load import ModelError, resolve_model_path

pytestmark = pytest.mark.unit
SHA_A, SHA_B = "a" * 40, "b" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """owner/tiny in a hub cache with two snapshots; refs/main points at the second."""
    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--owner--tiny"
    for sha in (SHA_A, SHA_B):
        (repo / "snapshots" / sha).mkdir(parents=True)
        (repo / "snapshots" / sha / "config.json").write_text(f'{{"chord_snapshot": "{sha[0]}"}}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA_B)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


def test_a_revision_resolves_to_its_snapshot_and_an_unknown_one_is_one_line(hub_cache, tmp_path):
    pinned = resolve_model_path("owner/tiny", tmp_path, SHA_A)
    assert pinned == str(hub_cache / "snapshots" / SHA_A)
    assert '"a"' in (hub_cache / "snapshots" / SHA_A / "config.json").read_text()
    assert resolve_model_path("owner/tiny", tmp_path, "main") == str(hub_cache / "snapshots" / SHA_B)
    assert resolve_model_path("owner/tiny", tmp_path) == "owner/tiny"  # no pin: the hub id, as before
    with pytest.raises(ModelError, match="model 'owner/tiny' at revision 'c{40}'") as e:
        resolve_model_path("owner/tiny", tmp_path, "c" * 40)
    assert "\n" not in str(e.value)


def test_revision_is_for_hub_models_only(tmp_path):
    with pytest.raises(ConfigError, match="model.revision"):
        load_config(None, ["model.revision=v1"])  # model.path: tiny
    with pytest.raises(ConfigError, match="model.revision"):
        load_config(None, [f"model.path={tmp_path}", "model.revision=v1"])
    assert load_config(None, ["model.path=Qwen/Qwen2.5-0.5B-Instruct", "model.revision=v1"]).model.revision == "v1"

"""The installation id: the default Docker scope, generated once and kept in the data dir."""

from __future__ import annotations

import stat

import pytest

from remotegpu.entrypoints.config import load_settings
from remotegpu.entrypoints.installation import installation_id


def test_generated_once_kept_private_and_distinct_per_directory(tmp_path):
    first = installation_id(tmp_path / "a")
    assert first.startswith("rgpu-") and first != "default"
    assert installation_id(tmp_path / "a") == first  # kept
    assert stat.S_IMODE((tmp_path / "a" / "installation_id").stat().st_mode) == 0o600
    assert installation_id(tmp_path / "b") != first  # another installation


def test_an_installation_from_before_ids_keeps_the_old_default_scope(tmp_path):
    marker = tmp_path / "agent" / "agent-credentials.json"
    marker.parent.mkdir()
    marker.write_text("{}")
    assert installation_id(tmp_path, legacy_marker=marker) == "default"
    marker.unlink()
    assert installation_id(tmp_path, legacy_marker=marker) == "default"  # written down: stays


def test_a_damaged_id_file_stops_with_a_clear_message(tmp_path):
    (tmp_path / "installation_id").write_text("not an id\n")
    with pytest.raises(ValueError, match="not an installation id"):
        installation_id(tmp_path)


def test_settings_default_scope_is_the_installation_id_and_an_explicit_one_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("REMOTEGPU_DOCKER_SCOPE", raising=False)
    settings = load_settings(data_dir=tmp_path)
    assert settings.effective_docker_scope() == installation_id(tmp_path) != "default"
    assert load_settings(data_dir=tmp_path, docker_scope="mine").effective_docker_scope() == "mine"

from pathlib import Path

import pytest

from controlroom.settings import SettingsError, load_settings


def test_defaults_load(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={})
    assert s.recording.segment_s == 30
    assert s.db_url == f"sqlite+aiosqlite:///{tmp_path / 'controlroom.db'}"
    assert s.storage_root == tmp_path / "recordings"


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    bad = tmp_path / "extra.toml"
    bad.write_text("[http]\nprot = 8080\n")
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path, [bad], environ={})
    assert str(bad) in str(err.value) and "http.prot" in str(err.value)


def test_invalid_value_in_data_dir_file(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("[recording]\nsegment_s = 'long'\n")
    with pytest.raises(SettingsError) as err:
        load_settings(tmp_path, environ={})
    assert "settings.toml" in str(err.value) and "recording.segment_s" in str(err.value)


def test_malformed_toml_names_file(tmp_path: Path) -> None:
    (tmp_path / "settings.toml").write_text("[recording\n")
    with pytest.raises(SettingsError, match="settings.toml: not valid TOML"):
        load_settings(tmp_path, environ={})


def test_environment_overrides(tmp_path: Path) -> None:
    s = load_settings(tmp_path, environ={"CONTROLROOM_HTTP__PORT": "9999"})
    assert s.http.port == 9999
    with pytest.raises(SettingsError, match="environment: http.port"):
        load_settings(tmp_path, environ={"CONTROLROOM_HTTP__PORT": "many"})

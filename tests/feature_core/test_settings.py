"""Settings: derived paths follow the fields they come from."""

from __future__ import annotations

from pathlib import Path

from feature_core.settings import Settings


def test_derived_paths_follow_a_copy_with_another_lake(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)
    assert settings.table_uri("raw_events") == f"{(tmp_path / 'lake').resolve()}/raw_events"
    moved = settings.model_copy(update={"lake_uri": "s3://bucket/lake/"})
    assert moved.table_uri("raw_events") == "s3://bucket/lake/raw_events"
    assert settings.table_uri("raw_events").startswith(str(tmp_path))


def test_models_live_under_the_data_dir_unless_set(tmp_path: Path) -> None:
    assert Settings(_env_file=None, data_dir=tmp_path).models_path == tmp_path / "models"
    own = Settings(_env_file=None, data_dir=tmp_path, model_dir=tmp_path / "m")
    assert own.models_path == tmp_path / "m"


def _patterned_text_fields() -> list[str]:
    return [
        name
        for name, info in Settings.model_fields.items()
        if isinstance(info.default, str) and any(getattr(m, "pattern", None) for m in info.metadata)
    ]


def test_patterned_settings_reject_a_trailing_newline(tmp_path: Path) -> None:
    # A key prefix "lfp\n" would be a different, invisible namespace of Redis keys.
    import pytest
    from pydantic import ValidationError

    fields = _patterned_text_fields()
    assert "key_prefix" in fields
    for name in fields:
        default = Settings.model_fields[name].default
        Settings(_env_file=None, data_dir=tmp_path, **{name: default})
        for trailer in ("\n", "\r\n", " "):
            with pytest.raises(ValidationError, match=name):
                Settings(_env_file=None, data_dir=tmp_path, **{name: default + trailer})

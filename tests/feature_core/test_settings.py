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


def test_a_dotenv_holding_composes_variables_is_still_a_settings_file(
    tmp_path: Path, monkeypatch
) -> None:
    # docker-compose.yml and `lfp` read the same .env: Compose's own variables are not
    # settings, an unknown LFP_ name (a typo) still is an error.
    import os

    import pytest
    from pydantic import ValidationError

    from feature_core.settings import COMPOSE_VARIABLES, ENV_PREFIX

    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    env = tmp_path / ".env"
    lines = [f"{name}=x" for name in sorted(COMPOSE_VARIABLES)] + ["LFP_API_TOKEN=t0ken"]
    env.write_text("\n".join(lines) + "\n")
    settings = Settings(_env_file=env, data_dir=tmp_path)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "t0ken"
    env.write_text("LFP_REDIS_PASWORD=x\n")
    with pytest.raises(ValidationError, match="lfp_redis_pasword"):
        Settings(_env_file=env, data_dir=tmp_path)


def test_a_dotenv_names_other_tools_variables_and_lfp_env_file_picks_it(
    tmp_path: Path, monkeypatch
) -> None:
    # .env.example suggests COMPOSE_FILE: every lfp command (make down included) failed
    # on it. LFP_ENV_FILE picks the file (empty: none), as test stacks need.
    import os

    from feature_core.settings import ENV_FILE_VARIABLE, ENV_PREFIX

    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        "COMPOSE_FILE=docker-compose.yml:docker-compose.expose.yml\nLFP_API_TOKEN=t0ken\n"
    )
    settings = Settings(data_dir=tmp_path)
    assert settings.api_token is not None and settings.api_token.get_secret_value() == "t0ken"
    monkeypatch.setenv(ENV_FILE_VARIABLE, "")
    assert Settings(data_dir=tmp_path).api_token is None
    (tmp_path / "other.env").write_text("LFP_API_TOKEN=other\n")
    monkeypatch.setenv(ENV_FILE_VARIABLE, str(tmp_path / "other.env"))
    token = Settings(data_dir=tmp_path).api_token
    assert token is not None and token.get_secret_value() == "other"


def test_a_logged_settings_shows_no_redis_password(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, redis_url="redis://:hunter2@h:1/0")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)
    assert settings.redis_url == "redis://:hunter2@h:1/0"

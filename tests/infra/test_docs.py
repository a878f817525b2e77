from pathlib import Path

from feature_core.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme():
    missing = [n for n in Settings.model_fields if f"`{ENV_PREFIX}{n.upper()}`" not in README]
    assert missing == []


def test_the_readme_shows_the_make_targets_users_need():
    for target in ("make install", "make up", "make demo", "make status", "make down", "make test"):
        assert target in README

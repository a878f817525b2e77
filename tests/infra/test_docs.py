from pathlib import Path

from feature_core.settings import ENV_PREFIX, Settings

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_documented_in_the_readme():
    missing = [n for n in Settings.model_fields if f"`{ENV_PREFIX}{n.upper()}`" not in README]
    assert missing == []


def test_the_readme_shows_the_make_targets_users_need():
    for target in ("make install", "make up", "make demo", "make status", "make down", "make test"):
        assert target in README


def test_every_cli_command_is_listed_in_the_readme():
    """The README's one-line command list (`group a|b`) names every visible command."""
    import re

    import typer.main

    from infra.cli import app

    paragraph = README[README.index("Every operation is one CLI") :].split("\n\n")[0]
    listed = set()
    for item in re.findall(r"`([a-z-]+(?: [a-z|-]+)?)`", paragraph):
        name, _, subs = item.partition(" ")
        listed |= {f"{name} {sub}".strip() for sub in subs.split("|")}
    visible = set()
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        subs = [s for s, c in getattr(command, "commands", {}).items() if not c.hidden]
        visible |= {f"{name} {sub}" for sub in subs} if subs else {name}
    assert visible - listed == set()

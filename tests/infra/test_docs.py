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


def test_every_lfp_command_a_message_or_the_readme_names_exists():
    """A message telling a user to run `lfp <command>` (an error, a 503's detail, the
    README) names a command the CLI has."""
    import re

    import typer.main

    from infra.cli import app

    cli = typer.main.get_command(app)
    root = Path(__file__).resolve().parents[2]
    texts = [README]
    layers = ("batch_layer", "feature_core", "infra", "online_store", "runtime")
    for folder in (*layers, "serving_layer", "speed_layer"):
        texts += [p.read_text() for p in (root / folder).rglob("*.py")]
    named = {
        m for text in texts for m in re.findall(r"`lfp ([a-z][a-z-]*(?: [a-z][a-z-]*)?)", text)
    }
    assert named, "no `lfp ...` reference found: the pattern is wrong"
    unknown = []
    for words in sorted(named):
        name, _, sub = words.partition(" ")
        command = cli.commands.get(name)  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        if command is None or (subcommands is not None and sub and sub not in subcommands):
            unknown.append(f"lfp {words}")
    assert unknown == []

from infra.cli import app

app(prog_name="lfp")

"""make install and the repository leave the host as they found it."""

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_install_never_changes_the_hosts_services():
    # It used to `systemctl disable --now redis-server` on every run: the host's own Redis.
    script = (ROOT / "infra" / "scripts" / "install.sh").read_text()
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("#"))
    code = re.sub(r"\"[^\"]*\"|'[^']*'", "''", code)  # messages may name a command to run
    changes = re.findall(r"systemctl\s+(?:--\S+\s+)*(disable|stop|mask|kill|restart|enable)", code)
    assert changes == []
    assert "systemctl is-active --quiet redis-server" in code  # it only looks


def test_env_files_with_secrets_are_ignored_but_the_example_is_not():
    def ignored(path: str) -> bool:
        check = ["git", "-C", str(ROOT), "check-ignore", "-q", "--no-index", path]
        return subprocess.run(check, check=False).returncode == 0

    assert ignored(".env") and ignored(".env.local") and ignored(".env.compose")
    assert not ignored(".env.example")


def test_a_first_install_on_a_full_disk_stops_at_once_saying_how_to_free_space(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    df = fake / "df"  # a disk with 492 MB free
    df.write_text(
        "#!/bin/sh\necho 'Filesystem 1024-blocks Used Available Capacity Mounted on'\n"
        "echo '/dev/vda 264000000 263000000 504000 100% /'\n"
    )
    df.chmod(0o755)
    env = {
        "PATH": f"{fake}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "VENV": str(tmp_path / "venv"),  # none yet: a first install
    }
    script = ROOT / "infra" / "scripts" / "install.sh"
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert run.returncode == 1
    assert "492 MB free on the disk of" in run.stderr
    assert "about 6 GB" in run.stderr and "uv cache prune" in run.stderr
    assert not (tmp_path / "venv").exists()  # nothing was written

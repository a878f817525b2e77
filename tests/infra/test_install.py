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

"""Secrets: kept out of what is printed, generated once for what the platform runs itself.

One redaction rule for every URL the platform prints (``lfp config``, errors, logs):
the password of ``scheme://user:password@host`` becomes ``***``. The embedded Redis's
password is generated on its first start and kept in a file only its owner can read.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit, urlunsplit

#: Where the password of the Redis servers the platform starts itself (the embedded
#: stack's, the local cluster's nodes) lives, under the data directory.
REDIS_PASSWORD_FILE = Path("secrets") / "redis-password"

MASK = "***"


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to print.

    ``redis://:pw@host:6379/0`` -> ``redis://:***@host:6379/0``; a URL without a
    password, or text that is not a URL, comes back unchanged. Read as text, not parsed:
    a password holding ``/``, ``?``, ``#`` or ``@`` unescaped is masked whole too (the
    user info ends at the last ``@``; a query holding one is masked up to it: more
    hidden, never less)."""
    scheme = url.find("://")
    if scheme < 0:
        return url
    start = scheme + 3
    at = url.rfind("@")
    colon = url.find(":", start)
    if at < start or colon < 0 or colon > at:
        return url  # no user info, or a user name only: nothing secret
    return f"{url[: colon + 1]}{MASK}{url[at:]}"


def redact(text: str, *secret_values: str | None) -> str:
    """``text`` with each of ``secret_values`` (when set) replaced by ``***``."""
    for value in secret_values:
        if value:
            text = text.replace(value, MASK)
    return text


def url_password(url: str) -> str | None:
    """The password in a URL's user info (percent-decoded), if any."""
    password = urlsplit(url).password
    return None if password is None else unquote(password)


def with_password(url: str, password: str) -> str:
    """``url`` authenticating with ``password`` (its user, if any, kept)."""
    parts = urlsplit(url)
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}"))


def read_secret(path: Path) -> str | None:
    """A secret file's content (surrounding whitespace stripped); None if the file is
    missing or empty (an empty file, e.g. /dev/null, means: no secret)."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as error:
        raise SecretUnreadable(
            f"cannot read the secret file {path} ({error.__class__.__name__}: "
            f"{error.strerror if isinstance(error, OSError) else error.reason}): give it "
            "to this user (chmod/chown), or point LFP_REDIS_PASSWORD_FILE elsewhere "
            "(/dev/null: no password)"
        ) from None
    return value or None


class SecretUnreadable(ValueError):
    """A secret file exists but cannot be read; the message says how to fix it."""


def ensure_secret(path: Path) -> str | None:
    """The secret in ``path``, generated on first use (mode 0600, its folder 0700) and
    the same ever after: restarts and clients agree without anyone typing it. A file
    that exists but is empty (or /dev/null) means no secret: None."""
    if path.exists():
        return read_secret(path)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = secrets.token_urlsafe(32)
    # O_EXCL: of two processes racing to create it, one wins and the other reads it.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return read_secret(path)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    return value


def write_private(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` readable by its owner only (mode 0600, from creation)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    tmp.replace(path)
    return path


def redis_tls_options(url: str) -> dict[str, object]:
    """redis-py options for ``url``: on ``rediss://``, the server's certificate must be
    valid and name the host connected to (redis-py checks no host name by default). A
    ``?ssl_ca_certs=/path/ca.pem`` in the URL names the CA; an explicit
    ``?ssl_check_hostname=false`` there still wins (redis-py lets the URL decide)."""
    if urlsplit(url).scheme != "rediss":
        return {}
    return {"ssl_cert_reqs": "required", "ssl_check_hostname": True}

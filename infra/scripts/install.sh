#!/usr/bin/env bash
# Install everything the platform needs on a Debian/Ubuntu machine:
#   system: Java 17 JDK (Spark, Flink; javac for the speed job's functions), redis-server (embedded stack), wrk and valgrind (serving benchmarks), chromium (the console's browser tests)
#   python: a virtual environment in .venv with the package and its dev tools; Feast in .venv-feast
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV="${VENV:-.venv}"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

# A first install writes about 4 GB (the two environments, and uv's cache of pyspark's and
# Flink's archives): ask for 6 GB free up front rather than fail midway on a full disk.
if [[ ! -x "$VENV/bin/lfp" ]]; then
  cache_dir="${UV_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/uv}"
  mkdir -p "$cache_dir"
  for dir in . "$cache_dir"; do
    free_kb=$(df -Pk "$dir" | awk 'NR == 2 {print $4}')
    ((free_kb >= 6 * 1024 * 1024)) || die "$(( free_kb / 1024 )) MB free on the disk of $(cd "$dir" && pwd); the install needs about 6 GB: free some space (uv cache prune drops what uv's cache no longer uses) and re-run make install"
  done
fi

need_apt=()
# The JDK, not only the runtime: the speed job compiles its aggregate functions with javac.
if ! command -v java >/dev/null 2>&1 || ! java -version 2>&1 | grep -qE 'version "(17|21)' \
  || ! command -v javac >/dev/null 2>&1; then
  need_apt+=(openjdk-17-jdk-headless)
fi
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v wrk >/dev/null 2>&1 || need_apt+=(wrk)  # the HTTP load generator of make bench-serving
command -v valgrind >/dev/null 2>&1 || need_apt+=(valgrind)  # make bench-serving-ir counts with it
# The console's browser tests (tests/serving_layer/console) drive Debian's Chromium with
# Playwright; fonts so pages and screenshots render text.
[[ -x /usr/bin/chromium ]] || need_apt+=(chromium fonts-dejavu-core)

if ((${#need_apt[@]})); then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "installing system packages: ${need_apt[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    die "missing ${need_apt[*]}: install them (e.g. 'sudo apt-get install ${need_apt[*]}') and re-run make install"
  fi
fi

"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || die "Python 3.11 is required (apache-flink 2.0 and pyspark 4.1 wheels); found $("$PYTHON" --version)"

if [[ ! -x "$VENV/bin/python" ]]; then
  say "creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
say "installing the platform and its dependencies"
"$VENV/bin/python" -m pip install -q --upgrade pip uv
# Compiled bytecode up front: with PYTHONDONTWRITEBYTECODE set, or a read-only venv, every
# process (API, Flink workers, CLI) would otherwise compile each module it imports again.
"$VENV/bin/uv" pip install -q --compile-bytecode --python "$VENV/bin/python" -e '.[dev]'

# Feast's SDK and feature server in an environment of their own (its pins are not ours):
# tests/serving_layer/test_feast_sdk.py drives them against the API.
FEAST_VENV="${FEAST_VENV:-.venv-feast}"
FEAST_VERSION="0.67.0"
if [[ ! -x "$FEAST_VENV/bin/feast" ]] || ! "$FEAST_VENV/bin/python" -c "import feast, sys; sys.exit(feast.__version__ != '$FEAST_VERSION')" 2>/dev/null; then
  say "installing Feast $FEAST_VERSION into $FEAST_VENV (the Feast compatibility test)"
  "$VENV/bin/uv" venv -q --allow-existing --python "$VENV/bin/python" "$FEAST_VENV"
  "$VENV/bin/uv" pip install -q --python "$FEAST_VENV/bin/python" "feast[redis]==$FEAST_VERSION"
fi

# The embedded stack starts redis-server itself, on its own port (LFP_REDIS_URL, 16379 by
# default): the distro's redis-server service (port 6379 unless configured) is none of its
# business and is left as it is. Only a distro server configured on the stack's port is in
# its way: say so, and change nothing.
redis_port=$("$VENV/bin/python" -c 'from feature_core.settings import Settings; print(Settings().redis_port)' 2>/dev/null || echo 16379)
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null \
  && grep -qE "^[[:space:]]*port[[:space:]]+$redis_port[[:space:]]*$" /etc/redis/redis.conf 2>/dev/null; then
  printf '\033[33mwarning:\033[0m %s\n' "the distro's redis-server service listens on port $redis_port, the embedded stack's Redis port: stop it (sudo systemctl disable --now redis-server) or give the stack another port (LFP_REDIS_URL)" >&2
fi

say "checking the toolchain"
"$VENV/bin/lfp" doctor

# One image for every platform service; each runs a different `lfp` command, as user lfp
# (not root): the code and packages are root's and read-only to it, /data and its home are
# its own.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless procps \
 && rm -rf /var/lib/apt/lists/*

# The uid owning /data. A named volume copies the image's /data, owner included, when
# first mounted; a bind mount keeps the host directory's owner: build with
# LFP_UID=$(id -u) to share one with your own user.
ARG LFP_UID=10001
RUN test "$LFP_UID" -gt 0 || { echo "LFP_UID must be a uid other than 0 (root)" >&2; exit 1; } \
 && useradd --uid "$LFP_UID" --user-group --home-dir /home/lfp --create-home \
      --shell /usr/sbin/nologin lfp \
 && install -d -o lfp -g lfp -m 0750 /data

WORKDIR /app
COPY pyproject.toml README.md ./
COPY feature_core ./feature_core
COPY runtime ./runtime
COPY online_store ./online_store
COPY batch_layer ./batch_layer
COPY speed_layer ./speed_layer
COPY serving_layer ./serving_layer
COPY infra ./infra
COPY demo ./demo
COPY fraud ./fraud
# Bytecode compiled now: the packages are read-only to the user the services run as.
# PyFlink's client JVM (the speed job's submission) logs under its package's log/ unless
# FLINK_LOG_DIR is set: that one folder is the user's.
RUN pip install --no-cache-dir uv && uv pip install --system --no-cache --compile-bytecode . \
 && chown lfp:lfp "$(python -c 'import pathlib, pyflink; print(pathlib.Path(pyflink.__file__).parent / "log")')"

ENV LFP_DATA_DIR=/data \
    HOME=/home/lfp \
    PYTHONUNBUFFERED=1
VOLUME /data
USER lfp
WORKDIR /home/lfp
ENTRYPOINT ["lfp"]
CMD ["--help"]

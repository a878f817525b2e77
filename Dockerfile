# One image for every platform service; each runs a different `lfp` command.
FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jdk-headless procps \
 && rm -rf /var/lib/apt/lists/*

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
RUN pip install --no-cache-dir uv && uv pip install --system --no-cache .

ENV LFP_DATA_DIR=/data \
    PYTHONUNBUFFERED=1
VOLUME /data
ENTRYPOINT ["lfp"]
CMD ["--help"]

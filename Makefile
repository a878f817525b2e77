# Lambda Feature Platform: every user-facing operation is one target.
VENV ?= .venv
LFP  := $(VENV)/bin/lfp
PY   := $(VENV)/bin/python

# The workload: the platform names none. `make up`, `make demo` and the stack benchmarks
# run the demo's (its feature repo and recommender router) unless LFP_FEATURE_REPO is set
# in the environment or .env; the demo's router is mounted whenever the demo's repo runs,
# unless LFP_API_ROUTERS is set there too.
set_here = $(or $($(1)),$(shell grep -qs '^$(1)=' .env && echo yes))
repo_here = $(or $(LFP_FEATURE_REPO),$(shell sed -n 's/^LFP_FEATURE_REPO=//p' .env 2>/dev/null | tail -n 1))
WORKLOAD := $(if $(call set_here,LFP_FEATURE_REPO),,LFP_FEATURE_REPO=demo.feature_repo) \
	$(if $(call set_here,LFP_API_ROUTERS),,$(if $(filter-out demo.feature_repo,$(repo_here)),,\
	LFP_API_ROUTERS='["demo.recommendations:router"]'))

.PHONY: help install up down status demo test test-unit lint format bench-speed bench-training bench-batch bench-chaos bench-redis-loss bench-serving bench-serving-ir bench-cluster clean

help:  ## show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install:  ## create .venv, install the package, check Java 17 and redis-server
	bash infra/scripts/install.sh

up:  ## start the embedded stack (broker, Redis, ingest, speed, scheduler, API); the demo workload unless LFP_FEATURE_REPO is set
	$(WORKLOAD) $(LFP) stack up

status:  ## show each service's state and port
	$(LFP) stack status

down:  ## stop exactly what `make up` started
	$(LFP) stack down

demo:  ## shop history -> batch -> ranking model -> live events -> recommendations (make up first)
	$(WORKLOAD) $(LFP) demo run

test:  ## run the whole test suite (unit + integration on an embedded stack)
	$(PY) -m pytest -n 2

test-unit:  ## fast tests of pure logic only
	$(PY) -m pytest tests -m "not integration and not spark"

lint:  ## ruff lint and format check
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format:
	$(VENV)/bin/ruff format . && $(VENV)/bin/ruff check --fix .

bench-speed:  ## speed layer curve: fresh and late events' freshness, sustained rate, lag, CPU (make up first; ARGS="--late-share 0.1 --rates 10000", "--repo fraud")
	$(WORKLOAD) $(PY) -m benchmarks.speed $(ARGS)

bench-training:  ## point-in-time training sets: (1M, 10M events) x (5k, 50k, 500k rows) vs the batch view (self-contained)
	$(PY) -m benchmarks.training $(ARGS)

bench-batch:  ## batch runs on 10M/100M-event lakes: full (vs DuckDB), no new events, 1% appended (self-contained; ARGS="--events 10000000 --rounds 3")
	$(PY) -m benchmarks.batch $(ARGS)

bench-chaos:  ## kill -9 each service in turn under load, on a stack of its own: loss, answers, time to correct
	$(PY) -m benchmarks.chaos $(ARGS)

bench-redis-loss:  ## kill -9 Redis with 1M, then 10M records in the topics, on a stack of its own: seconds until values are exact again
	$(PY) -m benchmarks.redis_loss $(ARGS)

bench-serving:  ## API throughput/latency vs a bare one-HGETALL endpoint (self-contained)
	$(PY) -m benchmarks.serving $(ARGS)

bench-serving-ir:  ## instructions per request, API vs the same ceiling, under callgrind (deterministic)
	$(PY) -m benchmarks.serving_instructions

bench-cluster:  ## serving from Redis Cluster vs one Redis server (RPS ratio); speed job at parallelism 1 vs 2 on the Flink cluster
	$(WORKLOAD) $(PY) -m benchmarks.cluster $(ARGS)

clean:  ## remove the local stack's data
	rm -rf .data

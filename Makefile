# pg_ingest: the only commands a user needs. See README.md.
SHELL := /bin/bash
SCRIPTS := $(CURDIR)/scripts
# The PostgreSQL major every target is for: 15 (the default), 17 or 18. `make test PG=17`.
PG ?= 15
export PG

.PHONY: deps install start stop status log demo check test bench package fmt clean help
.DEFAULT_GOAL := help

help: ## list the targets
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 10

deps: ## install what is missing: Debian packages, the PostgreSQL server (PG=NN), cargo-pgrx 0.18.0, cargo pgrx init
	@$(SCRIPTS)/deps.sh

install: deps ## build in release mode; install the extension and the pg-ingest binary
	@$(SCRIPTS)/install.sh

start: ## start the private cluster (127.0.0.1:54329, data in .pg/; PG=17: 54317, .pg17/) and create the extensions
	@$(SCRIPTS)/cluster.sh start

stop: ## stop the private cluster and its Citus nodes
	@$(SCRIPTS)/cluster.sh stop
	@$(SCRIPTS)/citus.sh stop

status: ## is the private cluster running?
	@$(SCRIPTS)/cluster.sh status

log: ## the private cluster's server log
	@$(SCRIPTS)/cluster.sh log

demo: install start ## generate a sample chat log and load it
	@$(SCRIPTS)/demo.sh

check: deps ## rustfmt and clippy, warnings as errors (CI runs it before the tests)
	@$(SCRIPTS)/check.sh

test: deps ## every test suite (unit, #[pg_test], end-to-end); prints the server log on failure
	@$(SCRIPTS)/test.sh

BENCH_LINES ?= 2000000
BENCH_RUNS ?= 3
bench: install start ## ingest_jsonl against PostgreSQL's own COPY and client-side peers; bench/out/results-pgNN.md
	@mkdir -p bench/out
	@source $(SCRIPTS)/common.sh && export PG_INGEST_BENCH_PYTHON=$$($(SCRIPTS)/bench_peers.sh || true) && \
		if $(SCRIPTS)/citus.sh available; then $(SCRIPTS)/citus.sh start && export PG_INGEST_CITUS_PORT=$$CITUS_BASE_PORT; fi && \
		cargo run --quiet --release --locked -p pg_ingest_tests --bin bench -- \
		--lines $(BENCH_LINES) --runs $(BENCH_RUNS) --out bench/out/results-pg$(PG).md

package: deps ## Debian packages of the extension (for PG=NN) and the client, in target/packages/
	@$(SCRIPTS)/package.sh

fmt: ## format the code
	cargo fmt --all

clean: stop ## stop the cluster and remove build output and cluster data
	rm -rf target .pg .pg17 .pg18

# Thin entry points; the logic lives in scripts/. `make help` lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Build cache outside the clone (reused across CI runs); tool caches (zig, pip) inside it.
HOME ?= $(shell getent passwd "$$(id -u)" | cut -d: -f6)
export CARGO_TARGET_DIR ?= $(HOME)/.cache/favorites/target
export XDG_CACHE_HOME ?= $(CURDIR)/.cache

.PHONY: help run stack test infra-check bench-login bench-list bench-cache bench-enrichment bench-coldstart bench-latency bench-filters fmt lint

help: ## List the targets
	@echo "favorites: make <target>"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

run: ## Run the API on http://127.0.0.1:9000 (development setup: SQLite + dev JWT key in .local/; CACHE=redis for the cache)
	@scripts/run.sh

stack: ## The deployed shape on http://127.0.0.1:9100/v1: template.yaml on local stand-ins under AWS's runtime emulator (scripts/stack.sh)
	@scripts/stack.sh

test: ## Format check, clippy, build, then all tests against Postgres, Redis and the emulated API
	@scripts/test.sh

infra-check: ## SAM template offline: cfn-lint, sam validate --lint, routes vs infra/openapi.yaml, sam build (scripts/infra-check.sh)
	@scripts/infra-check.sh

bench-login: ## Login timing: unknown email vs wrong password, time beyond bcrypt (bench login, tests/src/bench/)
	@scripts/bench.sh login

bench-list: ## Memory and throughput of the streamed list, 1k/100k/1M favorites (bench list)
	@scripts/bench.sh list

bench-cache: ## Cached vs uncached list pages: Redis round trips per page, p50/p99 and req/s (bench cache)
	@scripts/bench.sh cache

bench-enrichment: ## List latency: no enrichment, healthy at 0/5/50 ms, service down with the circuit open (bench enrichment)
	@scripts/bench.sh enrichment

bench-coldstart: ## Cold start (init, first answer) and binary size of each function vs a bare lambda_http hello (bench coldstart)
	@scripts/bench.sh coldstart

bench-latency: ## Warm latency under aws-lambda-rie vs its REPORT duration, and through make run; list 10/100/1000 and get-favorite (bench latency, debug build)
	@scripts/bench.sh latency

bench-filters: ## A 1% filter (type, q) and a 304 against the plain 100-item page, 1M favorites (bench filters)
	@scripts/bench.sh filters

fmt: ## Format the code (cargo fmt --all)
	cargo fmt --all

lint: ## cargo fmt --check and clippy with warnings as errors
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

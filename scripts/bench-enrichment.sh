#!/usr/bin/env bash
# make bench-enrichment: list latency with no enrichment, a healthy enrichment service at 0, 5
# and 50 ms, and the service down with the circuit open (shared/examples/bench-enrichment.rs).
# In process against Postgres (a fresh database, dropped afterwards) and the fake enrichment
# service of tests/src/enrichment_server.rs. Knob: BENCH_ROUNDS (default 300).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

REPORT="$REPO_ROOT/.local/bench-enrichment.md"
mkdir -p "$REPO_ROOT/.local"

step "Postgres" "set TEST_DATABASE_URL to an admin URL, or unset it to get a throwaway server"
ensure_postgres

step "Build and run: cargo run --release -p shared --example bench-enrichment" "see the errors above"
timeout 1800 cargo run --release --locked -p shared --example bench-enrichment | tee "$REPORT"
step_done
say "report written to $REPORT"

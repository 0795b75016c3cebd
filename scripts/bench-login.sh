#!/usr/bin/env bash
# make bench-login: does login take the same time for an unknown email as for a wrong
# password, and how much of a login is not bcrypt? (A benchmark, not a test.)
#
# Release builds of the functions under the Lambda emulator, Postgres as in production
# (a fresh database, dropped on exit), bcrypt at the production cost (BCRYPT_COST, default 12).
# The client (tests/src/bin/bench-login.rs) interleaves the two kinds of failed login and
# times bcrypt alone in its own process as the baseline. BENCH_ROUNDS sets the rounds (40).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

export BCRYPT_COST="${BCRYPT_COST:-12}"
export BENCH_ROUNDS="${BENCH_ROUNDS:-40}"

step "Tools and Postgres"
ensure_venv
ensure_cargo_lambda
ensure_postgres

step "Release build" "fix the build errors above"
cargo build --release --workspace --locked

step "A fresh database, migrated"
fresh_database favorites_bench_login release
db_url=$FRESH_DB_URL

step "The API under the emulator"
mkdir -p .local
data_dir=$(mktemp -d)
add_cleanup "rm -rf '$data_dir'"
start_emulator release "$REPO_ROOT/.local/bench-login-emulator.log" \
	DATABASE_URL="$db_url" JWT_SECRET="$(random_hex 48)" BCRYPT_COST="$BCRYPT_COST" \
	FAVORITES_DATA_DIR="$data_dir" RUST_LOG=warn

step "Benchmark: $BENCH_ROUNDS rounds of each kind of failed login, bcrypt cost $BCRYPT_COST"
E2E_BASE_URL="$EMULATOR_URL" "$CARGO_TARGET_DIR/release/bench-login"
step_done

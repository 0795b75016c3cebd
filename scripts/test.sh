#!/usr/bin/env bash
# make test / .ci/run: the whole test suite, the same locally and in CI.
#
#   1. tools: .venv with cargo-lambda
#   2. Postgres (TEST_DATABASE_URL) and Redis (TEST_REDIS_URL): the given URLs, else the servers
#      on 127.0.0.1:5432 / :6379, else throwaway instances stopped on exit; a moto server for
#      DynamoDB and Secrets Manager (AWS_ENDPOINT_URL); a private TLS Postgres with password
#      authentication (TEST_TLS_PG_*) for the database-secret and rotation tests
#   3. cargo fmt --check, clippy -D warnings, cargo build (the function binaries)
#   4. end-to-end environment: a fresh database favorites_e2e_<random>, migrated, tables and the
#      JWT key in moto, and the functions under `cargo lambda watch` on a free port (E2E_BASE_URL)
#   5. cargo nextest run --profile ci (unit, integration and e2e tests); then, with no
#      arguments, the emulator's smoke tests again against the deployed shape (make stack's
#      stack: a TLS Redis and a moto enforcing IAM are started for it in step 2)
#   6. extra_checks (see below): the API contract (schemathesis) and the SAM template
#      (cfn-lint, sam validate, sam build)
#
# Arguments are passed to `cargo nextest run`, e.g. `scripts/test.sh -E 'test(login)'`.
# Everything started here is stopped and dropped on exit, success or not.
#
# Knobs: TEST_DATABASE_URL, TEST_REDIS_URL (use these servers), PG_PROBE_PORT / REDIS_PROBE_PORT
# (where to look for running servers), E2E_WARMUP=0 (do not start every function before the
# tests), E2E_HEALTH_TIMEOUT (seconds, default 300).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

E2E_HEALTH_TIMEOUT="${E2E_HEALTH_TIMEOUT:-300}"
E2E_WARMUP="${E2E_WARMUP:-1}"
E2E_LOG="$REPO_ROOT/.local/e2e-emulator.log"

# ---------------------------------------------------------------------------------------------
# extra_checks: LATER STEPS GO HERE (API schema tester against $E2E_BASE_URL, SAM template
# lint, ...). Runs after the tests pass, while the e2e emulator is still up; exported:
# TEST_DATABASE_URL, TEST_REDIS_URL, E2E_BASE_URL, E2E_DATABASE_URL, E2E_JWT_SECRET, E2E_LOG
# (the emulator's log) and the secrets the emulator was given (E2E_AWS_SECRET_ACCESS_KEY,
# E2E_AWS_SESSION_TOKEN, E2E_EMULATOR_DATABASE_URL).
# Announce each check with `step "name" "how to fix/reproduce"`; Python tools go into .venv
# (.venv/bin/python -m pip install ...), nowhere else.
extra_checks() {
	step "API contract: schemathesis against infra/openapi.yaml" "reproduce with: make run, then scripts/api-check.sh http://127.0.0.1:9000"
	scripts/api-check.sh "$E2E_BASE_URL"

	step "SAM template: cfn-lint, sam validate --lint (scripts/infra-check.sh lint)" "reproduce with: scripts/infra-check.sh lint"
	scripts/infra-check.sh lint

	step "SAM build: sam build of every function (scripts/infra-check.sh build)" "reproduce with: scripts/infra-check.sh build"
	scripts/infra-check.sh build
}
# ---------------------------------------------------------------------------------------------

# Function names (binary targets) the local router (Cargo.toml) sends routes to.
router_functions() {
	sed -n '/^\[workspace.metadata.lambda.watch.router\]/,/^\[/p' Cargo.toml |
		grep -o 'function = "[^"]*"' | cut -d'"' -f2 | sort -u
}

start_e2e_environment() {
	mkdir -p .local

	# A fresh database for the emulated API, dropped on exit.
	fresh_database favorites_e2e debug
	E2E_DATABASE_URL=$FRESH_DB_URL
	export E2E_DATABASE_URL

	# Per-run data dir so the e2e run never reads or writes the developer's .local state.
	local data_dir
	data_dir=$(mktemp -d "$REPO_ROOT/.local/e2e-data.XXXXXX")
	add_cleanup "rm -rf '$data_dir'"

	# Exported so tests can mint tokens the functions accept (expired-token tests and the like).
	E2E_JWT_SECRET=$(random_hex 48)
	export E2E_JWT_SECRET
	# The production wiring: the JWT key from Secrets Manager, idempotency records and login
	# counters in DynamoDB (all in moto).
	local resources
	resources=$("$CARGO_TARGET_DIR/debug/aws-resources" "favorites-e2e-$(random_hex 8)" "$E2E_JWT_SECRET") ||
		die "could not create the e2e tables and secret in moto ($AWS_ENDPOINT_URL)"
	local IDEMPOTENCY_TABLE LOGIN_THROTTLE_TABLE JWT_SECRET_ARN
	eval "$resources"
	say "e2e AWS resources: $IDEMPOTENCY_TABLE, $LOGIN_THROTTLE_TABLE, $JWT_SECRET_ARN"
	# More secrets for the test that none reaches the logs (tests/tests/logs.rs), besides the
	# JWT key: the AWS credentials the functions sign with (moto checks no signature), and a
	# database password: the URL's own, or, where the server trusts local connections, a made-up
	# one it never asks for.
	E2E_AWS_SECRET_ACCESS_KEY=$(random_hex 40)
	E2E_AWS_SESSION_TOKEN=$(random_hex 64)
	E2E_EMULATOR_DATABASE_URL=$E2E_DATABASE_URL
	local with_password
	with_password=$(url_with_password "$E2E_DATABASE_URL" "$(random_hex 20)")
	if [ "$with_password" != "$E2E_DATABASE_URL" ] && psql -w -X -q -d "$with_password" -c 'select 1' >/dev/null 2>&1; then
		E2E_EMULATOR_DATABASE_URL=$with_password
	fi
	export E2E_AWS_SECRET_ACCESS_KEY E2E_AWS_SESSION_TOKEN E2E_EMULATOR_DATABASE_URL E2E_LOG
	# The first request to a function runs `cargo run --bin <fn>`, hence the long timeout.
	EMULATOR_START_TIMEOUT=$E2E_HEALTH_TIMEOUT start_emulator debug "$E2E_LOG" \
		DATABASE_URL="$E2E_EMULATOR_DATABASE_URL" \
		AWS_SECRET_ACCESS_KEY="$E2E_AWS_SECRET_ACCESS_KEY" \
		AWS_SESSION_TOKEN="$E2E_AWS_SESSION_TOKEN" \
		JWT_SECRET_ARN="$JWT_SECRET_ARN" \
		IDEMPOTENCY_TABLE="$IDEMPOTENCY_TABLE" \
		LOGIN_THROTTLE_TABLE="$LOGIN_THROTTLE_TABLE" \
		LOGIN_MAX_FAILURES_PER_IP=1000000 \
		BCRYPT_COST=4 \
		REDIS_URL="$TEST_REDIS_URL" \
		FAVORITES_DATA_DIR="$data_dir"
	export E2E_BASE_URL=$EMULATOR_URL E2E_EMULATOR_PID=$EMULATOR_PID

	if [ "$E2E_WARMUP" = 1 ]; then
		warm_functions "$E2E_BASE_URL"
	fi
}

# Start every routed function once, so no test waits for (or races with) a `cargo run`
# of a function that the emulator starts lazily on its first request.
warm_functions() {
	local base=$1 fn code functions body
	functions=$(router_functions) || {
		warn "could not read the router from cargo metadata; functions will start on first use"
		return 0
	}
	body=$(mktemp)
	add_cleanup "rm -f '$body'"
	for fn in $functions; do
		[ "$fn" != health ] || continue
		say "starting function $fn"
		code=$(curl -sS -o "$body" -w '%{http_code}' --max-time 180 \
			"$base/lambda-url/$fn/__warmup" 2>/dev/null) || code=""
		if ! kill -0 "$E2E_EMULATOR_PID" 2>/dev/null; then
			tail_log "$E2E_LOG" 60
			die "the emulator exited while starting function $fn"
		fi
		case "$code" in
		"" | 000)
			tail_log "$E2E_LOG" 60
			die "function $fn did not answer within 180s (does it build and start? see $E2E_LOG)"
			;;
		404)
			if grep -q '"Missing function"' "$body"; then
				warn "the router in Cargo.toml names function '$fn' but no binary target has that name (not written yet?); requests to its routes will answer 404"
			fi
			;;
		5??) warn "function $fn answered HTTP $code to a warm-up request (see $E2E_LOG)" ;;
		esac
	done
}

# url_with_password URL PASSWORD: URL with PASSWORD (URL-safe) for its user; URL itself when it
# has a password already or no user.
url_with_password() {
	local url=$1 rest=${1#*://} userinfo
	userinfo=${rest%%@*}
	case $rest in
	*@*) [[ $userinfo == *:* ]] && echo "$url" || echo "${url%%://*}://$userinfo:$2@${rest#*@}" ;;
	*) echo "$url" ;;
	esac
}

# ---------------------------------------------------------------------------------------------

step "Tools: project venv, cargo-lambda and the SAM CLI (aws-lambda-rie, the SAM transform)" "delete .venv and rerun to rebuild it"
ensure_venv
ensure_cargo_lambda
ensure_sam_cli
need_cmd curl
say "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "Postgres for tests" "set TEST_DATABASE_URL to an admin URL of a reachable Postgres, or unset it to get a throwaway server"
ensure_postgres

step "Redis for tests" "set TEST_REDIS_URL to a reachable Redis, or unset it to get a throwaway server"
ensure_redis
# The cache's stop/start tests run a private redis-server of their own.
need_cmd redis-server redis-server
REDIS_SERVER_BIN=$(command -v redis-server)
export REDIS_SERVER_BIN

step "AWS APIs: moto server (DynamoDB, Secrets Manager) on 127.0.0.1" "see .local/moto.log; moto comes from PyPI into .venv"
mkdir -p .local
start_moto "$REPO_ROOT/.local/moto.log"

step "TLS Postgres with password authentication (database secret and rotation tests, the stack)" "needs openssl and the postgresql server package"
start_tls_postgres

step "TLS Redis (the stack's ElastiCache)" "needs openssl and redis-server"
start_redis tls

step "Formatting: cargo fmt --all --check" "run: make fmt"
cargo fmt --all --check

step "Lints: cargo clippy --workspace --all-targets --locked -- -D warnings" "fix the warnings above (or run: make lint)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Build: cargo build --workspace --locked (the binaries the emulator runs)" "fix the build errors above"
cargo build --workspace --locked

step "moto enforcing IAM (the stack's AWS), with its administrator" "see .local/stack-moto.log"
start_stack_moto "$REPO_ROOT/.local/stack-moto.log"

step "Build tests: cargo nextest run --no-run" "fix the build errors above"
# Built before the emulator starts, so the test build never competes with it for the cargo lock.
cargo nextest run --workspace --locked --profile ci --no-run

step "End-to-end environment: database, migrations, cargo lambda watch" "see $E2E_LOG; reproduce with: make run"
start_e2e_environment
say "E2E_BASE_URL=$E2E_BASE_URL  TEST_DATABASE_URL=$(redact_url "$TEST_DATABASE_URL")  TEST_REDIS_URL=$(redact_url "$TEST_REDIS_URL")"

step "Tests: cargo nextest run --workspace --locked --profile ci${*:+ $*}" "failing tests are listed above; the emulator log is $E2E_LOG (kept after the run)"
cargo nextest run --workspace --locked --profile ci "$@"

if [ $# -eq 0 ]; then
	step "The deployed shape (make stack): template.yaml on the stand-ins, the smoke and request-id tests against it" "see .local/stack.log and the function logs it names; reproduce with: make stack"
	start_stack "$REPO_ROOT/.local/stack.log"
	E2E_BASE_URL=$STACK_URL cargo nextest run --workspace --locked --profile ci \
		-E 'binary(end_to_end) & (test(/^smoke::/) | test(/^request_ids::/))'
fi

extra_checks

step_done
say "all checks passed"

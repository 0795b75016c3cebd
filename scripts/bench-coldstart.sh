#!/usr/bin/env bash
# make bench-coldstart: each function's binary size and cold start, against a bare lambda_http
# hello function (tests/hello-baseline, package hello-baseline) built and measured in the same run.
#
#   1. release build of every function and the baseline in one cargo invocation (-p each: the
#      features are unified across these packages only, as in a deployment build, not with the
#      test crate's); the release profile strips the binaries
#   2. sizes: each binary in bytes and MiB, and gzip -9 of it (roughly what its Lambda zip weighs)
#   3. the production wiring on local stand-ins (aws_env): a moto server for Secrets Manager and
#      DynamoDB, a private Postgres with TLS and password authentication (both thrown away on
#      exit); a role and database favorites_bench_<random>, its credentials and the JWT key as
#      secrets, migrated through the secret; the Redis of TEST_REDIS_URL (ensure_redis). So
#      every cold start reads its secrets, and every first answer opens a verified TLS session
#   4. setup through the functions themselves: signup and login of a bench user (its token
#      authenticates the favorites events); BENCH_RUNS + 12 favorites seeded by SQL
#   5. waits (at most TEST_WAIT_SECONDS, 20 minutes) while a compilation or a scripts/test.sh
#      runs on the machine: on two cores either would skew every figure
#   6. cold starts: scripts/bench-coldstart-runtime.py, one process at a time, serves a minimal
#      Lambda Runtime API on a free port of 127.0.0.1 (a new one per cold start), spawns a
#      function binary with the environment of `function_env` (nothing inherited), hands it one
#      realistic API Gateway event (REST, payload v1: the events/ files, patched, see `cases`),
#      reads the whole response and kills the process. Per cold start: "init", spawn to the
#      first GET .../invocation/next (Lambda's INIT phase), and "first answer", spawn to the
#      last byte of the response. BENCH_RUNS + 1 rounds, each function once per round in a new
#      random order; the first round is not measured (it warms the page cache with the binaries)
#   7. a Markdown report on stdout (also written to .local/bench-coldstart.md): per function,
#      size, gzip size, init and first answer (p50, p90, max; nearest rank), and each against
#      the baseline
#
# Knobs: BENCH_RUNS (20), BENCH_BCRYPT_COST (12, the production default: signup and the dummy
# hash of login pay it), TEST_DATABASE_URL / PG_PROBE_PORT and TEST_REDIS_URL / REDIS_PROBE_PORT
# (which Postgres and Redis, see scripts/lib.sh).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_RUNS="${BENCH_RUNS:-20}"
BENCH_BCRYPT_COST="${BENCH_BCRYPT_COST:-12}"
BENCH_REPORT="$REPO_ROOT/.local/bench-coldstart.md"
BASELINE=hello-baseline
# The measured part, all rounds, is bounded by this (seconds); 20 rounds take about a minute.
BENCH_TIMEOUT="${BENCH_TIMEOUT:-1800}"

[[ $BENCH_RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer (got '$BENCH_RUNS')"

# Every function crate, by package name (functions/<dir>/Cargo.toml).
mapfile -t FUNCTIONS < <(for toml in functions/*/Cargo.toml; do
	awk -F'"' '/^name = / { print $2; exit }' "$toml"
done)
[ "${#FUNCTIONS[@]}" -gt 0 ] || die "no function crates found under functions/"

# ---------------------------------------------------------------------------------------------
# the functions' environment: the one place it is written

# function_env NAME: the whole environment function NAME starts with, one VAR=VALUE per line.
# Nothing of this script's environment is inherited. Configuration a function reads at cold
# start (secrets, endpoints) goes here, so that every function and the baseline get it.
function_env() {
	local name=$1
	# What Lambda sets in every execution environment (the runtime client needs AWS_LAMBDA_*;
	# AWS_LAMBDA_RUNTIME_API is added by the runtime, a new one per cold start).
	printf '%s\n' \
		"PATH=/usr/local/bin:/usr/bin:/bin" \
		"LANG=en_US.UTF-8" \
		"TZ=:UTC" \
		"AWS_LAMBDA_FUNCTION_NAME=$name" \
		"AWS_LAMBDA_FUNCTION_VERSION=\$LATEST" \
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024" \
		"AWS_LAMBDA_LOG_GROUP_NAME=/aws/lambda/$name" \
		"AWS_LAMBDA_LOG_STREAM_NAME=$LOG_STREAM" \
		"AWS_LAMBDA_INITIALIZATION_TYPE=on-demand"
	# The service's configuration, as in production (README, Configuration): Postgres, the
	# cache on, the production bcrypt cost, REST API stage names not part of the path.
	printf '%s\n' \
		"AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true" \
		"BCRYPT_COST=$BENCH_BCRYPT_COST" \
		"REDIS_URL=$TEST_REDIS_URL"
	aws_env
}

# aws_env: the production wiring against the local stand-ins: the database credentials and the
# JWT key from Secrets Manager (moto), the database over verified TLS with password
# authentication (the private TLS Postgres) in proxy mode, both DynamoDB tables. Lambda gives
# every function its role's credentials in the same variables. The login case repeats one
# wrong password: the throttle is still read and counted on every attempt, but its limits are
# lifted so that the answer stays the 401 being measured.
aws_env() {
	printf '%s\n' \
		"AWS_REGION=us-east-1" \
		"AWS_DEFAULT_REGION=us-east-1" \
		"AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL" \
		"AWS_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" \
		"AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY" \
		"AWS_SESSION_TOKEN=$AWS_SESSION_TOKEN" \
		"AWS_EC2_METADATA_DISABLED=true" \
		"DATABASE_SECRET_ARN=$DATABASE_SECRET_ARN" \
		"DATABASE_PROXY=true" \
		"DATABASE_CA_BUNDLE=$TEST_TLS_PG_CA" \
		"JWT_SECRET_ARN=$JWT_SECRET_ARN" \
		"IDEMPOTENCY_TABLE=$IDEMPOTENCY_TABLE" \
		"LOGIN_THROTTLE_TABLE=$LOGIN_THROTTLE_TABLE" \
		"LOGIN_MAX_FAILURES_PER_EMAIL=1000000" \
		"LOGIN_MAX_FAILURES_PER_IP=1000000"
}

# cases: per function, the event of its first invocation and the status it must answer (see
# scripts/bench-coldstart-runtime.py for the patch and its {placeholders}). A realistic request
# for each: a page of the user's list, a login with a wrong password (a full bcrypt verify, as
# every failed login), a signup of a new email, an add of a new asset, a get and an update of an
# existing favorite, a remove of another one.
cases() {
	local auth='"headers": {"Authorization": "Bearer {token}"}'
	row "$BASELINE" events/health/ok-200.json 200 '{}'
	row health events/health/ok-200.json 200 '{}'
	row signup events/signup/valid-201.json 201 '{"body": {"email": "coldstart-{run}@example.com"}}'
	row login events/login/valid-200.json 401 '{"body": {"email": "{email}", "password": "not the password"}}'
	row migrate '{}' - '{}'
	row add-favorite events/add-favorite/chart-201.json 201 "{$auth, \"body\": {\"id\": \"coldstart-{run}\"}}"
	row get-favorite events/get-favorite/missing-404.json 200 "{$auth, $(path_patch '{get_id}')}"
	row update-favorite events/update-favorite/missing-404.json 200 \
		"{$auth, $(path_patch '{update_id}'), \"body\": {\"description\": \"round {run}\"}}"
	row remove-favorite events/remove-favorite/missing-404.json 204 "{$auth, $(path_patch 'fav-{run}')}"
	row list-favorites events/list-favorites/first-page-200.json 200 "{$auth}"
}

# row NAME EVENT EXPECT PATCH: one line of cases, tab-separated
row() { printf '%s\t%s\t%s\t%s\n' "$@"; }

# path_patch ID: the event fields that name the favorite of GET/PATCH/DELETE /favorites/{id}
path_patch() {
	printf '"path": "/favorites/%s", "pathParameters": {"id": "%s"}, "requestContext": {"path": "/prod/favorites/%s"}' "$1" "$1" "$1"
}

# The patch of the setup's signup and login: the bench user's own credentials.
CREDENTIALS='{"body": {"email": "{email}", "password": "{password}"}}'

# case_line NAME [EXPECT PATCH]: the runtime's case line for NAME (binary, environment file,
# log, event), with the expected status and patch of cases() or the ones given.
case_line() {
	local name=$1 line event expect patch
	line=$(cases | awk -F'\t' -v n="$name" '$1 == n')
	[ -n "$line" ] || die "function $name has no event in cases() of $0; add one"
	IFS=$'\t' read -r _ event expect patch <<<"$line"
	function_env "$name" >"$DATA_DIR/$name.env"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$CARGO_TARGET_DIR/release/$name" "$DATA_DIR/$name.env" \
		"$DATA_DIR/$name.log" "${2:-$expect}" "$event" "${3:-$patch}"
}

# runtime MODE ARGS...: the cold-start runtime, bounded in time; VAR=VALUE arguments fill the
# events' placeholders.
runtime() {
	local mode=$1 limit=120
	shift
	[ "$mode" != measure ] || limit=$BENCH_TIMEOUT
	timeout "$limit" python3 scripts/bench-coldstart-runtime.py "$mode" "$@"
}

# invoke NAME EXPECT PATCH VAR=VALUE...: one cold start of NAME with its event patched by
# PATCH, which must answer status EXPECT; prints the answer's body.
invoke() {
	local name=$1 expect=$2 patch=$3 out
	shift 3
	out=$(runtime invoke "$(case_line "$name" "$expect" "$patch")" "$@") || die "$name did not answer $expect (see above)"
	python3 -c 'import json, sys; print(json.loads(sys.argv[1])["body"])' "$out"
}

# mib BYTES: bytes in MiB, two decimals
mib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1048576 }'; }

# ratio A B: A / B, two decimals; minus A B: A - B, signed, one decimal
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%+.1f", a - b }'; }

# ---------------------------------------------------------------------------------------------

step "Tools: python3, gzip"
need_cmd python3
need_cmd gzip
mkdir -p .local
say "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "AWS APIs: moto server (Secrets Manager, DynamoDB) on 127.0.0.1" "see .local/bench-coldstart-moto.log"
start_moto "$REPO_ROOT/.local/bench-coldstart-moto.log"

step "Postgres with TLS and password authentication (private, thrown away on exit)" "needs openssl and the postgresql server package"
start_tls_postgres

step "Redis" "set TEST_REDIS_URL to a reachable Redis, or unset it to get a throwaway server"
ensure_redis

release_build_packages "${FUNCTIONS[@]}" "$BASELINE"

step "Sizes: each binary, and gzip -9 of it"
declare -A SIZE GZIP
for name in "$BASELINE" "${FUNCTIONS[@]}"; do
	SIZE[$name]=$(stat -c %s "$CARGO_TARGET_DIR/release/$name")
	GZIP[$name]=$(gzip -9 -c "$CARGO_TARGET_DIR/release/$name" | wc -c)
	say "$name: ${SIZE[$name]} bytes ($(mib "${SIZE[$name]}") MiB), gzip -9 ${GZIP[$name]} bytes ($(mib "${GZIP[$name]}") MiB)"
done

step "Database, secrets and tables: a role with a password owning favorites_bench_<random>, migrated through the secret"
BENCH_DB_NAME="favorites_bench_$(random_hex 12)"
BENCH_ROLE="bench_$(random_hex 8)"
BENCH_ROLE_PASSWORD=$(random_hex 24)
psql -w -X -q -v ON_ERROR_STOP=1 -d "$TEST_TLS_PG_ADMIN_URL" \
	-c "create role $BENCH_ROLE login password '$BENCH_ROLE_PASSWORD'" \
	-c "create database $BENCH_DB_NAME owner $BENCH_ROLE" || die "could not create the bench role and database"
# For the setup below (psql, as the superuser over the socket).
BENCH_DATABASE_URL=$(url_with_db "$TEST_TLS_PG_ADMIN_URL" "$BENCH_DB_NAME")
JWT_SECRET_VALUE=$(random_hex 48)
DATABASE_SECRET=$(python3 -c 'import json, sys; print(json.dumps({"engine": "postgres", "username": sys.argv[1], "password": sys.argv[2], "host": "127.0.0.1", "port": int(sys.argv[3]), "dbname": sys.argv[4]}))' \
	"$BENCH_ROLE" "$BENCH_ROLE_PASSWORD" "$TEST_TLS_PG_PORT" "$BENCH_DB_NAME")
resources=$(.venv/bin/python scripts/aws-resources.py "favorites-bench-$(random_hex 8)" "$JWT_SECRET_VALUE" "$DATABASE_SECRET") ||
	die "could not create the tables and secrets in moto"
eval "$resources"
# shellcheck disable=SC2046 # one VAR=VALUE per line, no spaces in the values
env -i $(aws_env) "$CARGO_TARGET_DIR/release/migrate" >&2 || die "migrations failed on $BENCH_DB_NAME"

step "Setup through the functions: sign up and log in a bench user, seed favorites" "the function's log ends the output above"
DATA_DIR=$(mktemp -d "$REPO_ROOT/.local/bench-coldstart.XXXXXX")
add_cleanup "rm -rf '$DATA_DIR'"
# Marks the functions this run starts. The runtime kills each one it starts; this cleanup
# only catches one orphaned by a crash.
LOG_STREAM="bench-coldstart-$(random_hex 12)"
add_cleanup "stop_by_env 'AWS_LAMBDA_LOG_STREAM_NAME=$LOG_STREAM' 'leftover function processes'"
EMAIL="bench-$(random_hex 8)@example.com"
PASSWORD="bench-$(random_hex 16)"
invoke signup 201 "$CREDENTIALS" "email=$EMAIL" "password=$PASSWORD" >/dev/null
answer=$(invoke login 200 "$CREDENTIALS" "email=$EMAIL" "password=$PASSWORD")
TOKEN=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["token"])' "$answer") || die "login answered no token: $answer"
USER_ID=$(psql -w -X -At -v ON_ERROR_STOP=1 -d "$BENCH_DATABASE_URL" -c "select id from users where email = '$EMAIL'")
[ -n "$USER_ID" ] || die "user $EMAIL not found in the bench database"
if command -v redis-cli >/dev/null 2>&1; then
	add_cleanup "timeout 10 redis-cli -u '$TEST_REDIS_URL' del 'fav:{$USER_ID}:meta' 'fav:{$USER_ID}:order' 'fav:{$USER_ID}:items' 'fav:{$USER_ID}:enrichment' >/dev/null"
fi
# fav-0 .. fav-(RUNS+11): remove-favorite deletes fav-<round> (rounds 0..RUNS), get and update
# use the last two, and at least ten stay for list-favorites' page.
GET_ID="fav-$((BENCH_RUNS + 11))"
UPDATE_ID="fav-$((BENCH_RUNS + 10))"
timeout 120 psql -w -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DATABASE_URL" \
	-v uid="$USER_ID" -v lo=0 -v hi="$((BENCH_RUNS + 11))" -f scripts/seed-favorites.sql
say "user $EMAIL ($USER_ID), favorites fav-0..$GET_ID"

# A compilation on the same two cores would skew every figure: wait for it to end (bounded).
BUSY_PATTERN='scripts/test\.sh|bin/rustc '
step "Waiting while a build (rustc) or scripts/test.sh runs (at most ${TEST_WAIT_SECONDS}s)"
wait_for_tests "$BUSY_PATTERN" "a build (rustc) or scripts/test.sh"

step "Cold starts: $((BENCH_RUNS + 1)) rounds of ${#FUNCTIONS[@]} functions and the baseline" "the function's log ends the output above"
for name in "$BASELINE" "${FUNCTIONS[@]}"; do case_line "$name"; done >"$DATA_DIR/cases.tsv"
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(date +%s)
runtime measure "$BENCH_RUNS" "$DATA_DIR/cases.tsv" \
	"email=$EMAIL" "token=$TOKEN" "get_id=$GET_ID" "update_id=$UPDATE_ID" >"$DATA_DIR/figures.tsv" ||
	die "the cold-start runs failed (see above)"
MEASURE_SECONDS=$(($(date +%s) - STARTED))
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
if [ -z "$TESTS_RUNNING_NOTE" ] && pgrep -f "$BUSY_PATTERN" >/dev/null; then
	TESTS_RUNNING_NOTE="a build (rustc) or scripts/test.sh was running when the measurements ended"
fi
cp "$DATA_DIR/cases.tsv.json" "$REPO_ROOT/.local/bench-coldstart.json"
step_done

# ---------------------------------------------------------------------------------------------
# report

declare -A INIT50 INIT90 INITMAX ANS50 ANS90 ANSMAX INV50 INV90
while IFS=$'\t' read -r name i50 i90 imax a50 a90 amax v50 v90 _; do
	INIT50[$name]=$i50 INIT90[$name]=$i90 INITMAX[$name]=$imax
	ANS50[$name]=$a50 ANS90[$name]=$a90 ANSMAX[$name]=$amax
	INV50[$name]=$v50 INV90[$name]=$v90
done <"$DATA_DIR/figures.tsv"

# what each function answered in the measured runs (from its case)
answered() { cases | awk -F'\t' -v n="$1" '$1 == n { print $3 }'; }

{
	echo "bench-coldstart: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(uname -r)," \
		"Postgres $(psql -w -X -At -d "$BENCH_DATABASE_URL" -c 'show server_version'), $BENCH_RUNS cold starts per function" \
		"(nearest-rank percentiles), BCRYPT_COST=$BENCH_BCRYPT_COST, load average $LOAD_BEFORE before and $LOAD_AFTER after" \
		"the ${MEASURE_SECONDS}s of cold starts"
	[ -z "$TESTS_RUNNING_NOTE" ] || echo "NOTE: $TESTS_RUNNING_NOTE"
	echo
	echo "| function | answer | size (MiB) | gzip -9 (MiB) | init p50 (ms) | init p90 (ms) | first answer p50 (ms) | first answer p90 (ms) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|"
	for name in "$BASELINE" "${FUNCTIONS[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(answered "$name")" \
			"$(mib "${SIZE[$name]}")" "$(mib "${GZIP[$name]}")" "${INIT50[$name]}" "${INIT90[$name]}" \
			"${ANS50[$name]}" "${ANS90[$name]}"
	done
	echo
	echo "Against the baseline ($BASELINE); the first invocation alone (first answer − init, per cold start); maxima:"
	echo
	echo "| function | bytes | gzip -9 bytes | size ÷ baseline | init p50 − baseline (ms) | first answer p50 − baseline (ms) | invocation p50 (ms) | invocation p90 (ms) | init max (ms) | first answer max (ms) |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for name in "$BASELINE" "${FUNCTIONS[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "${SIZE[$name]}" "${GZIP[$name]}" \
			"$(ratio "${SIZE[$name]}" "${SIZE[$BASELINE]}")" "$(minus "${INIT50[$name]}" "${INIT50[$BASELINE]}")" \
			"$(minus "${ANS50[$name]}" "${ANS50[$BASELINE]}")" "${INV50[$name]}" "${INV90[$name]}" \
			"${INITMAX[$name]}" "${ANSMAX[$name]}"
	done
} | tee "$BENCH_REPORT"
say "report written to $BENCH_REPORT; every figure in .local/bench-coldstart.json"

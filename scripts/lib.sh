# shellcheck shell=bash
# Shared helpers for the scripts in this directory. Source it, do not run it:
#
#     . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# Sourcing it: enables strict mode, changes to the repository root, sets the build/cache
# conventions (CARGO_TARGET_DIR, XDG_CACHE_HOME, .venv/bin on PATH) and installs one EXIT trap
# that runs every command registered with `add_cleanup`, newest first.
#
# Everything works without a terminal (CI=true, no prompts, no colours needed). Nothing here
# touches a database other than the ones a script creates itself.

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
	echo "scripts/lib.sh holds helpers for the other scripts; source it: . scripts/lib.sh" >&2
	exit 2
fi

set -Eeuo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO_ROOT"

# Build cache outside the clone, shared across CI runs; zig/pip caches inside the project.
: "${HOME:=$(getent passwd "$(id -u)" | cut -d: -f6)}"
export HOME
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/favorites/target}"
export XDG_CACHE_HOME="${XDG_CACHE_HOME:-$REPO_ROOT/.cache}"
export PATH="$REPO_ROOT/.venv/bin:$PATH"
export PIP_DISABLE_PIP_VERSION_CHECK=1
export DEBIAN_FRONTEND=noninteractive
# Never wait for a password prompt from psql/pg_isready.
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"

# Version installed into .venv when cargo-lambda is missing (the router format in the root
# Cargo.toml was checked against 1.9.x).
CARGO_LAMBDA_VERSION="${CARGO_LAMBDA_VERSION:-1.9.2}"

# Ports probed for already-running local services. Override to simulate their absence
# (e.g. PG_PROBE_PORT=1 scripts/test.sh forces a throwaway Postgres).
PG_PROBE_PORT="${PG_PROBE_PORT:-5432}"
REDIS_PROBE_PORT="${REDIS_PROBE_PORT:-6379}"

# ---------------------------------------------------------------------------------------------
# messages and steps

say() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	_LIB_DIED=1
	exit 1
}

# step NAME [HINT]: announce a step. If the script fails before the next step, the EXIT trap
# names this step (and the hint: how to fix it or reproduce it) in the last line of output.
# Each step's end says how long it took.
CURRENT_STEP=""
CURRENT_HINT=""
_STEP_NO=0
_STEP_STARTED=$SECONDS
step() {
	step_done
	_STEP_NO=$((_STEP_NO + 1))
	CURRENT_STEP=$1
	CURRENT_HINT=${2:-}
	_FAILED_CMD=""
	_STEP_STARTED=$SECONDS
	printf '\n==> [%d] %s\n' "$_STEP_NO" "$CURRENT_STEP" >&2
}
step_done() {
	[ -z "$CURRENT_STEP" ] || say "[$_STEP_NO] done in $((SECONDS - _STEP_STARTED)) s"
	CURRENT_STEP=""
	CURRENT_HINT=""
}

# ---------------------------------------------------------------------------------------------
# cleanup: one EXIT trap running a list of commands, newest first

_CLEANUPS=()
_LIB_DIED=0
_FAILED_CMD=""

add_cleanup() { _CLEANUPS+=("$1"); }

_lib_on_err() {
	# Remember the innermost failing command; reported by the EXIT trap.
	[ -n "$_FAILED_CMD" ] || _FAILED_CMD=$BASH_COMMAND
}

_lib_on_exit() {
	local rc=$?
	set +e +u
	trap - ERR
	if [ "$rc" -ne 0 ]; then
		if [ "$_LIB_DIED" -eq 0 ] && [ -n "$_FAILED_CMD" ]; then
			printf 'error: command failed (exit %d): %s\n' "$rc" "$_FAILED_CMD" >&2
		fi
		if [ -n "$CURRENT_STEP" ]; then
			case $rc in
			129 | 130 | 143)
				printf 'error: step [%d] "%s" INTERRUPTED by a signal (exit %d)\n' "$_STEP_NO" "$CURRENT_STEP" "$rc" >&2
				;;
			*)
				printf 'error: step [%d] "%s" FAILED (exit %d)\n' "$_STEP_NO" "$CURRENT_STEP" "$rc" >&2
				[ -z "$CURRENT_HINT" ] || printf 'hint: %s\n' "$CURRENT_HINT" >&2
				;;
			esac
		fi
	fi
	if [ "${#_CLEANUPS[@]}" -gt 0 ]; then
		say "cleaning up"
		local i
		for ((i = ${#_CLEANUPS[@]} - 1; i >= 0; i--)); do
			eval "${_CLEANUPS[i]}" || warn "cleanup command failed: ${_CLEANUPS[i]}"
		done
	fi
	exit "$rc"
}

trap _lib_on_err ERR
trap _lib_on_exit EXIT
# Make Ctrl-C / kill run the EXIT trap (and so the cleanups) with the conventional codes.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---------------------------------------------------------------------------------------------
# small utilities

is_root() { [ "$(id -u)" -eq 0 ]; }

# random_hex N: N random hex characters (N even).
random_hex() { od -An -N"$(($1 / 2))" -tx1 /dev/urandom | tr -d ' \n'; }

# apt_install PKG...: install Debian packages (apt-get update once per script run).
_APT_UPDATED=0
apt_install() {
	if ! command -v apt-get >/dev/null 2>&1; then
		die "missing packages: $*; this is not a Debian/Ubuntu machine, install them with your package manager"
	fi
	if ! is_root; then
		die "missing packages: $*; install them with: sudo apt-get update && sudo apt-get install -y $*"
	fi
	if [ "$_APT_UPDATED" -eq 0 ]; then
		say "apt-get update"
		apt-get update -q >&2 || die "apt-get update failed (network? proxy?)"
		_APT_UPDATED=1
	fi
	say "apt-get install -y $*"
	apt-get install -y -q --no-install-recommends "$@" >&2 || die "apt-get install -y $* failed"
}

# need_cmd CMD [PACKAGE]: make sure CMD is on PATH, installing PACKAGE (default CMD) if not.
need_cmd() {
	local cmd=$1 pkg=${2:-$1}
	command -v "$cmd" >/dev/null 2>&1 && return 0
	say "$cmd not found, installing Debian package $pkg"
	apt_install "$pkg"
	command -v "$cmd" >/dev/null 2>&1 || die "$cmd still not found after installing $pkg"
}

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# free_port: print a TCP port that is free on 127.0.0.1 right now, below the kernel's range
# of ephemeral ports (32768 and up), which an outgoing connection could take before we bind.
free_port() {
	local p i
	for i in $(seq 1 50); do
		p=$((20000 + RANDOM % 12000))
		port_open 127.0.0.1 "$p" || {
			echo "$p"
			return 0
		}
	done
	die "could not find a free TCP port on 127.0.0.1"
}

# redact_url URL: the URL with any password replaced by ***, for printing.
redact_url() { printf '%s' "$1" | sed -E 's#^([a-zA-Z0-9+.-]+://[^:/@]+):[^@/]*@#\1:***@#'; }

# url_with_db URL NAME: the Postgres URL with its database (path) replaced by NAME; keeps
# user, password, host, port and ?query.
url_with_db() { sed -E "s#^([a-z]+://[^/?]*)[^?]*#\1/$2#" <<<"$1"; }

# tail_log FILE [LINES]: print the last lines of a log file, framed, to stderr.
tail_log() {
	local file=$1 lines=${2:-40}
	if [ -s "$file" ]; then
		printf -- '----- last %d lines of %s -----\n' "$lines" "$file" >&2
		tail -n "$lines" "$file" >&2
		printf -- '----- end of %s -----\n' "$file" >&2
	else
		printf '(log %s is empty or missing)\n' "$file" >&2
	fi
}

# wait_http URL TIMEOUT_SECONDS [LOG_FILE] [PID]: wait until URL answers 200. Fails early if PID
# (the server process) dies; on failure prints the last HTTP status and the end of LOG_FILE.
wait_http() {
	local url=$1 timeout=$2 log=${3:-} pid=${4:-} deadline next_note code="(no answer)" got
	need_cmd curl
	deadline=$(($(date +%s) + timeout))
	next_note=$(($(date +%s) + 30))
	say "waiting up to ${timeout}s for $url to answer 200"
	while :; do
		got=$(curl -sS -o /dev/null -w '%{http_code}' --max-time 10 "$url" 2>/dev/null) || got=""
		if [ "$got" = "200" ]; then
			say "$url is up"
			return 0
		fi
		[ -z "$got" ] || [ "$got" = "000" ] || code="HTTP $got"
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			[ -z "$log" ] || tail_log "$log" 60
			die "the server behind $url exited before answering (last answer: $code); see ${log:-its output} above"
		fi
		if [ "$(date +%s)" -ge "$next_note" ]; then
			say "still waiting for $url (last answer: $code)"
			next_note=$(($(date +%s) + 30))
		fi
		if [ "$(date +%s)" -ge "$deadline" ]; then
			[ -z "$log" ] || tail_log "$log" 60
			die "$url did not answer 200 within ${timeout}s (last answer: $code)${log:+; full log: $log}"
		fi
		sleep 1
	done
}

# process_tree PID: PID and all its descendants, parents first (reads /proc; no procps needed).
process_tree() {
	local root=$1 f stat rest pid queue
	local -a fields
	local -A children=()
	for f in /proc/[0-9]*/stat; do
		stat=$(cat "$f" 2>/dev/null) || continue
		rest=${stat##*) }
		read -r -a fields <<<"$rest" # state ppid pgrp session ...
		pid=${f#/proc/}
		children[${fields[1]}]+=" ${pid%/stat}"
	done
	kill -0 "$root" 2>/dev/null || return 0
	queue=$root
	while [ -n "$queue" ]; do
		read -r pid queue <<<"$queue"
		printf '%s\n' "$pid"
		queue="$queue ${children[$pid]:-}"
		queue=${queue# }
	done
}

# stop_tree PID [NAME]: stop a background server and everything it spawned (cargo lambda watch
# starts each function in a session of its own, so killing a process group is not enough).
# SIGTERM the root first so it can shut its children down itself, then the rest of the tree.
stop_tree() {
	local root=$1 name=${2:-process $1} pids i
	pids=$(process_tree "$root")
	[ -n "$pids" ] || return 0
	say "stopping $name (pid $root and $(($(wc -l <<<"$pids") - 1)) descendants)"
	kill -TERM "$root" 2>/dev/null || true
	for i in $(seq 1 20); do
		kill -0 "$root" 2>/dev/null || break
		sleep 0.5
	done
	wait "$root" 2>/dev/null || true
	# shellcheck disable=SC2086 # one pid per word
	_term_then_kill "$name" $pids
}

# stop_by_env VAR=VALUE-PREFIX [NAME]: stop our processes whose environment contains an entry
# starting with VAR=VALUE-PREFIX (e.g. function processes orphaned by a crashed emulator,
# found by the runtime API address only they were given).
stop_by_env() {
	local marker=$1 name=${2:-processes with $1} f pid pids=""
	for f in /proc/[0-9]*/environ; do
		pid=${f#/proc/}
		pid=${pid%/environ}
		[ "$pid" != "$$" ] || continue
		if grep -qaF -- "$marker" "$f" 2>/dev/null; then pids+=" $pid"; fi
	done
	[ -n "$pids" ] || return 0
	say "stopping $name:$pids"
	# shellcheck disable=SC2086
	_term_then_kill "$name" $pids
}

# _term_then_kill NAME PID...: SIGTERM those still running, SIGKILL what is left after 10 s.
_term_then_kill() {
	local name=$1 pid alive i
	shift
	kill -TERM "$@" 2>/dev/null || true
	for i in $(seq 1 20); do
		alive=""
		for pid in "$@"; do
			if kill -0 "$pid" 2>/dev/null; then alive+=" $pid"; fi
		done
		[ -n "$alive" ] || return 0
		sleep 0.5
	done
	warn "$name: still running after SIGTERM, sending SIGKILL to:$alive"
	# shellcheck disable=SC2086
	kill -KILL $alive 2>/dev/null || true
}

# wait_for_tests PATTERN WHAT: wait while a process whose command line matches the extended
# regular expression PATTERN (e.g. 'scripts/test\.sh'; WHAT names it in messages) runs on this
# machine, since a concurrent build would skew a benchmark's figures. After TEST_WAIT_SECONDS
# (default 1200) go on anyway, with TESTS_RUNNING_NOTE set for the report.
TEST_WAIT_SECONDS="${TEST_WAIT_SECONDS:-1200}"
TESTS_RUNNING_NOTE=""
wait_for_tests() {
	local pattern=$1 what=$2 limit=$TEST_WAIT_SECONDS poll=15 waited=0 pids
	while pids=$(pgrep -f "$pattern" | grep -vx "$$" | tr '\n' ' ') && [ -n "$pids" ]; do
		if [ "$waited" -ge "$limit" ]; then
			warn "$what (pid $pids) still runs after ${limit}s; measuring anyway"
			TESTS_RUNNING_NOTE="$what was running during the measurements (waited ${limit}s)"
			return 0
		fi
		[ $((waited % 60)) -ne 0 ] || say "$what is running (pid $pids); waiting (${waited}s so far, at most ${limit}s)"
		sleep "$poll"
		waited=$((waited + poll))
	done
	[ "$waited" -eq 0 ] || say "$what finished; waited ${waited}s"
}

# ---------------------------------------------------------------------------------------------
# Python venv and cargo-lambda

ensure_venv() {
	if [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
		return 0
	fi
	say "creating the project venv .venv (python3 -m venv .venv)"
	need_cmd python3 python3
	if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
		say "python3 has no venv/ensurepip module, installing python3-venv"
		apt_install python3-venv
	fi
	rm -rf .venv
	python3 -m venv .venv || die "python3 -m venv .venv failed; on Debian: apt-get install -y python3-venv"
}

ensure_cargo_lambda() {
	ensure_venv
	if [ ! -x .venv/bin/cargo-lambda ]; then
		say "installing cargo-lambda $CARGO_LAMBDA_VERSION into .venv (pip; bundles zig)"
		.venv/bin/python -m pip install -q --progress-bar off "cargo-lambda==$CARGO_LAMBDA_VERSION" >&2 ||
			die "pip install cargo-lambda failed; retry with: .venv/bin/pip install cargo-lambda==$CARGO_LAMBDA_VERSION"
	fi
	command -v cargo >/dev/null 2>&1 || die "cargo not found; install Rust with rustup (https://rustup.rs)"
	cargo lambda --help >/dev/null 2>&1 ||
		die "'cargo lambda' does not run; reinstall with: rm -f .venv/bin/cargo-lambda && .venv/bin/pip install --force-reinstall cargo-lambda==$CARGO_LAMBDA_VERSION"
}

# ensure_sam_cli: the SAM CLI in .venv: `sam`, its translator (the stack's SAM transform) and
# AWS's runtime interface emulator (samcli/local/rapid/aws-lambda-rie-x86_64).
AWS_SAM_CLI_VERSION="${AWS_SAM_CLI_VERSION:-1.170.0}"
ensure_sam_cli() {
	ensure_venv
	[ ! -x .venv/bin/sam ] || return 0
	say "installing aws-sam-cli $AWS_SAM_CLI_VERSION into .venv (pip)"
	.venv/bin/python -m pip install -q --progress-bar off "aws-sam-cli==$AWS_SAM_CLI_VERSION" >&2 ||
		die "pip install aws-sam-cli failed; retry with: .venv/bin/pip install aws-sam-cli==$AWS_SAM_CLI_VERSION"
}

# ---------------------------------------------------------------------------------------------
# AWS APIs: a moto server (PyPI moto[server]) on 127.0.0.1 stands in for DynamoDB and Secrets
# Manager. The SDK finds it through AWS_ENDPOINT_URL; the credentials are moto's dummies.

MOTO_VERSION="${MOTO_VERSION:-5.1.22}"

ensure_moto_installed() {
	ensure_venv
	if [ ! -x .venv/bin/moto_server ]; then
		# Only the services we stand in for, and the server's own needs: moto[server] would pull
		# cfn-lint and aws-sam-translator too, at versions older than the SAM CLI's, and
		# downgrade them in this venv.
		say "installing moto $MOTO_VERSION (DynamoDB, Secrets Manager, IAM, STS; server) into .venv"
		.venv/bin/python -m pip install -q --progress-bar off "moto[dynamodb,secretsmanager,iam,sts]==$MOTO_VERSION" flask flask-cors >&2 ||
			die "pip install moto failed; retry with: .venv/bin/pip install 'moto[dynamodb,secretsmanager,iam,sts]==$MOTO_VERSION' flask flask-cors"
	fi
}

# start_moto LOG: start a moto server on a free port, stopped on exit; exports AWS_ENDPOINT_URL
# and the dummy credentials and region every AWS client here then uses.
start_moto() {
	local log=$1 port
	ensure_moto_installed
	port=$(free_port)
	say "starting moto_server on 127.0.0.1:$port (log: $log)"
	.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
	local pid=$!
	add_cleanup "stop_tree $pid 'moto_server'"
	export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
	export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing
	export AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
	wait_http "$AWS_ENDPOINT_URL/moto-api/" 60 "$log" "$pid"
	say "moto_server ready: AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL"
}

# start_stack_moto LOG: another moto server, for the stack: it enforces IAM after its first
# actions, in which `stack admin` makes the administrator; exports STACK_AWS_ENDPOINT_URL and
# its keys, STACK_AWS_ACCESS_KEY_ID and STACK_AWS_SECRET_ACCESS_KEY. Needs the debug build.
start_stack_moto() {
	local log=$1 port pid keys
	ensure_moto_installed
	port=$(free_port)
	say "starting moto_server enforcing IAM on 127.0.0.1:$port (log: $log)"
	INITIAL_NO_AUTH_ACTION_COUNT=3 MOTO_IAM_LOAD_MANAGED_POLICIES=true \
		.venv/bin/moto_server -H 127.0.0.1 -p "$port" >"$log" 2>&1 </dev/null &
	pid=$!
	add_cleanup "stop_tree $pid 'moto_server (IAM)'"
	export STACK_AWS_ENDPOINT_URL="http://127.0.0.1:$port"
	wait_http "$STACK_AWS_ENDPOINT_URL/moto-api/" 60 "$log" "$pid"
	keys=$("$CARGO_TARGET_DIR/debug/stack" admin "$STACK_AWS_ENDPOINT_URL") ||
		die "could not make the stack's administrator in moto ($STACK_AWS_ENDPOINT_URL, log $log)"
	eval "$keys"
	export STACK_AWS_ACCESS_KEY_ID STACK_AWS_SECRET_ACCESS_KEY
}

# start_stack LOG: the deployed shape (`stack serve`: template.yaml on the stand-ins that
# start_tls_postgres, start_tls_redis and start_stack_moto started) on STACK_PORT, else a free
# port, stopped on exit; waits for its health route and exports STACK_URL.
start_stack() {
	local log=$1 pid
	export STACK_PORT="${STACK_PORT:-$(free_port)}"
	say "deploying template.yaml onto the stand-ins: stack serve on 127.0.0.1:$STACK_PORT (log: $log)"
	"$CARGO_TARGET_DIR/debug/stack" serve >"$log" 2>&1 </dev/null &
	pid=$!
	add_cleanup "_stop_pid $pid 'the stack'"
	wait_http "http://127.0.0.1:$STACK_PORT/${STACK_STAGE:-v1}/health" 300 "$log" "$pid"
	STACK_URL=$(sed -n 's/^stack ready: //p' "$log")
	export STACK_URL
}

# ---------------------------------------------------------------------------------------------
# Postgres: TEST_DATABASE_URL is an admin/maintenance URL. Tests and scripts create their own
# databases from it (favorites_test_*, favorites_e2e_*) and drop them; nothing else is touched.

ensure_psql() { need_cmd psql postgresql-client; }

# pg_bin_dir: directory of the newest installed Postgres server binaries (Debian layout).
pg_bin_dir() {
	local initdb
	# shellcheck disable=SC2012 # paths are /usr/lib/postgresql/<version>/bin/initdb
	initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
	[ -n "$initdb" ] || return 1
	dirname "$initdb"
}

ensure_postgres() {
	if [ -n "${TEST_DATABASE_URL:-}" ]; then
		say "Postgres: using TEST_DATABASE_URL=$(redact_url "$TEST_DATABASE_URL")"
		ensure_psql
		psql -w -X -q -d "$TEST_DATABASE_URL" -c 'select 1' >/dev/null ||
			die "cannot connect to TEST_DATABASE_URL=$(redact_url "$TEST_DATABASE_URL"); fix the URL or unset it to let the script start a throwaway Postgres"
		return 0
	fi

	local local_url="postgresql://postgres@127.0.0.1:$PG_PROBE_PORT/postgres"
	if command -v pg_isready >/dev/null 2>&1 && command -v psql >/dev/null 2>&1 &&
		pg_isready -q -h 127.0.0.1 -p "$PG_PROBE_PORT" -t 3 2>/dev/null &&
		psql -w -X -q -d "$local_url" -c 'select 1' >/dev/null 2>&1; then
		export TEST_DATABASE_URL="$local_url"
		say "Postgres: using the running server, TEST_DATABASE_URL=$TEST_DATABASE_URL"
		return 0
	fi

	say "Postgres: no usable server on 127.0.0.1:$PG_PROBE_PORT, starting a throwaway cluster"
	local bin dir port
	bin=$(_pg_server_bin)
	_pg_cluster_dir favorites-pg
	dir=$PG_CLUSTER_DIR
	port=$(free_port)
	_pg_cluster "$bin" "$dir" "$port" "throwaway Postgres" "--auth=trust" \
		"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
	export TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/postgres"
	say "Postgres: throwaway cluster ready, TEST_DATABASE_URL=$TEST_DATABASE_URL"
	ensure_psql
}

# start_tls_postgres: a private Postgres cluster for the tests of production-style connections:
# TLS with a certificate from a CA made here, password (SCRAM) authentication over TCP, trust
# over its Unix socket for the tests' admin work. Stopped and deleted on exit. Exports
# TEST_TLS_PG_ADMIN_URL (socket, superuser), TEST_TLS_PG_PORT (on 127.0.0.1) and
# TEST_TLS_PG_CA (the CA's PEM). Extra subject alternative names for the server certificate
# (IP:<address>, DNS:<name>) may be given, for clients that reach it through a relay.
start_tls_postgres() {
	local bin dir port san
	san=$(IFS=,; echo "IP:127.0.0.1${*:+,$*}")
	bin=$(_pg_server_bin)
	_pg_cluster_dir favorites-tls-pg
	dir=$PG_CLUSTER_DIR
	port=$(free_port)

	_make_certs "$dir" "$san" "TLS Postgres"
	if is_root; then chown -R postgres:postgres "$dir"; fi
	chmod 755 "$dir" # the tests read the CA certificate

	_pg_cluster "$bin" "$dir" "$port" "TLS Postgres" "--auth-local=trust --auth-host=scram-sha-256" \
		"-c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key"
	export TEST_TLS_PG_ADMIN_URL="postgresql://postgres@localhost/postgres?host=$dir&port=$port"
	export TEST_TLS_PG_PORT=$port
	export TEST_TLS_PG_CA=$dir/ca.crt
	export TEST_TLS_PG_LOG=$dir/postgres.log
	export TEST_PG_BIN=$bin # the fault test runs a server of its own with these
	say "TLS Postgres ready on 127.0.0.1:$port (CA $TEST_TLS_PG_CA)"
}

# _make_certs DIR SAN NAME: in DIR, a CA (ca.crt) and a server certificate (server.crt,
# server.key) for the subjectAltName SAN, with openssl.
_make_certs() {
	local dir=$1 san=$2
	need_cmd openssl
	say "$3: a CA and a server certificate for $san (openssl)"
	(
		cd "$dir"
		openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=favorites test CA" \
			-keyout ca.key -out ca.crt
		openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr
		printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\n' "$san" >server.ext
		openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
			-extfile server.ext -out server.crt
		chmod 600 server.key
		chmod 644 ca.crt
	) >"$dir/openssl.log" 2>&1 || {
		tail_log "$dir/openssl.log"
		die "could not make the test certificates (see above)"
	}
}

# _pg_server_bin: the Postgres server binaries' directory, installing the package if needed.
_pg_server_bin() {
	local bin
	if ! bin=$(pg_bin_dir); then
		say "Postgres server binaries not found under /usr/lib/postgresql, installing package postgresql"
		apt_install postgresql
		bin=$(pg_bin_dir) || die "package postgresql installed but /usr/lib/postgresql/*/bin/initdb is still missing"
	fi
	if is_root; then
		# initdb and postgres refuse to run as root.
		id -u postgres >/dev/null 2>&1 ||
			die "OS user 'postgres' does not exist (it comes with the postgresql package); create it or run as a non-root user"
	fi
	echo "$bin"
}

# _pg_cluster_dir PREFIX: sets PG_CLUSTER_DIR to a new private directory for a cluster,
# deleted on exit (not a $(...) function: the cleanup must register in this shell).
_pg_cluster_dir() {
	PG_CLUSTER_DIR=$(mktemp -d "/tmp/$1.XXXXXX")
	add_cleanup "rm -rf '$PG_CLUSTER_DIR'"
	if is_root; then chown postgres:postgres "$PG_CLUSTER_DIR"; fi
	chmod 700 "$PG_CLUSTER_DIR"
}

# _pg_cluster BIN DIR PORT NAME INITDB_AUTH SERVER_OPTIONS: initdb DIR/data, start it on
# 127.0.0.1:PORT (socket in DIR), stopped on exit.
_pg_cluster() {
	local bin=$1 dir=$2 port=$3 name=$4 auth=$5 options=$6
	local -a as_pg=()
	if is_root; then as_pg=(runuser -u postgres --); fi
	say "$name: initdb $dir/data ($auth)"
	# shellcheck disable=SC2086 # $auth is a list of options
	"${as_pg[@]}" "$bin/initdb" -D "$dir/data" -U postgres $auth -E UTF8 --no-locale --no-sync \
		>"$dir/initdb.log" 2>&1 || {
		tail_log "$dir/initdb.log"
		die "initdb failed (see above)"
	}
	say "$name: starting $bin/postgres on 127.0.0.1:$port, log $dir/postgres.log"
	add_cleanup "_stop_throwaway_postgres '$bin' '$dir'"
	"${as_pg[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
		-o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=off $options" \
		start >"$dir/pg_ctl.log" 2>&1 || {
		tail_log "$dir/pg_ctl.log"
		tail_log "$dir/postgres.log"
		die "$name did not start (see above)"
	}
}

_stop_throwaway_postgres() {
	local bin=$1 dir=$2
	[ -f "$dir/data/postmaster.pid" ] || return 0
	say "stopping throwaway Postgres ($dir)"
	if is_root; then
		runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1
	else
		"$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 30 stop >/dev/null 2>&1
	fi || {
		local pid
		pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
		[ -z "$pid" ] || kill -KILL "$pid" 2>/dev/null || true
	}
}

# ---------------------------------------------------------------------------------------------
# Redis: tests use their own random key prefix / db and never FLUSHALL.

# redis_ping HOST PORT: true when a Redis server answers PING with PONG.
redis_ping() {
	# shellcheck disable=SC2016 # $1/$2/$line expand in the inner bash
	timeout 3 bash -c '
		exec 3<>"/dev/tcp/$1/$2" || exit 1
		printf "PING\r\n" >&3
		IFS= read -r -t 2 line <&3 || exit 1
		[[ $line == "+PONG"* ]]' _ "$1" "$2" 2>/dev/null
}

ensure_redis() {
	if [ -n "${TEST_REDIS_URL:-}" ]; then
		say "Redis: using TEST_REDIS_URL=$(redact_url "$TEST_REDIS_URL")"
		return 0
	fi
	if redis_ping 127.0.0.1 "$REDIS_PROBE_PORT"; then
		export TEST_REDIS_URL="redis://127.0.0.1:$REDIS_PROBE_PORT"
		say "Redis: using the running server, TEST_REDIS_URL=$TEST_REDIS_URL"
		return 0
	fi

	say "Redis: no server answering on 127.0.0.1:$REDIS_PROBE_PORT, starting a throwaway one"
	start_redis
	export TEST_REDIS_URL=$STARTED_REDIS_URL
}

# start_redis [TLS]: a private redis-server on a free port of 127.0.0.1 (no persistence),
# installing the package if needed; stopped and deleted on exit. Sets STARTED_REDIS_URL. With
# TLS, it speaks only TLS (the stack's ElastiCache) and TEST_TLS_REDIS_PORT and
# TEST_TLS_REDIS_CA are exported.
start_redis() {
	local server dir port pid i tls=${1:-}
	local -a options=()
	server=$(command -v redis-server 2>/dev/null || true)
	if [ -z "$server" ] || [ ! -x "$server" ]; then
		say "redis-server not found, installing package redis-server"
		apt_install redis-server
		server=$(command -v redis-server 2>/dev/null || true)
		[ -n "$server" ] && [ -x "$server" ] || die "package redis-server installed but redis-server is still not on PATH"
	fi
	dir=$(mktemp -d /tmp/favorites-redis.XXXXXX)
	add_cleanup "rm -rf '$dir'"
	port=$(free_port)
	options=(--port "$port")
	if [ -n "$tls" ]; then
		_make_certs "$dir" "IP:127.0.0.1" "TLS Redis"
		options=(--port 0 --tls-port "$port" --tls-cert-file "$dir/server.crt" --tls-key-file "$dir/server.key"
			--tls-ca-cert-file "$dir/ca.crt" --tls-auth-clients no)
	fi
	say "starting a private ${tls:+TLS }Redis on 127.0.0.1:$port, log $dir/redis.log"
	"$server" "${options[@]}" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$dir" \
		>"$dir/redis.log" 2>&1 </dev/null &
	pid=$!
	add_cleanup "_stop_pid $pid 'private Redis'"
	for i in $(seq 1 30); do
		if [ -n "$tls" ]; then port_open 127.0.0.1 "$port" && break; else redis_ping 127.0.0.1 "$port" && break; fi
		if ! kill -0 "$pid" 2>/dev/null || [ "$i" -eq 30 ]; then
			tail_log "$dir/redis.log"
			die "the private Redis on port $port did not start (see above)"
		fi
		sleep 0.5
	done
	STARTED_REDIS_URL="redis${tls:+s}://127.0.0.1:$port"
	[ -z "$tls" ] || export TEST_TLS_REDIS_PORT=$port TEST_TLS_REDIS_CA=$dir/ca.crt
	say "Redis: private server ready, $STARTED_REDIS_URL"
}

# _stop_pid PID NAME: SIGTERM a child process, SIGKILL after 10 s, reap it.
_stop_pid() {
	local pid=$1 name=${2:-process $1} i
	kill -0 "$pid" 2>/dev/null || return 0
	say "stopping $name (pid $pid)"
	kill -TERM "$pid" 2>/dev/null || true
	for i in $(seq 1 20); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.5
	done
	kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null || true
}

# start_emulator PROFILE LOG [VAR=VALUE...]: run the functions under `cargo lambda watch` on a
# free 127.0.0.1 port, PROFILE debug or release, with the given environment on top of ours;
# waits for /health (EMULATOR_START_TIMEOUT seconds, default 600), exports EMULATOR_URL and
# EMULATOR_PID, and stops everything on exit (stop_tree). In our process group, so that a CI
# runner killing the job stops it too; the functions it spawns run in sessions of their own,
# found by parentage and by the runtime API address only they were given.
# Build first (`cargo build [--release] --workspace`): the emulator then only checks freshness.
start_emulator() {
	local profile=$1 log=$2 port
	shift 2
	local -a flags=(--ignore-changes --color never -A 127.0.0.1)
	[ "$profile" != release ] || flags+=(--release)
	port=$(free_port)
	: >"$log"
	say "starting the functions ($profile): cargo lambda watch on 127.0.0.1:$port (log: $log)"
	env "$@" CARGO_TERM_COLOR=never cargo lambda watch "${flags[@]}" -P "$port" >"$log" 2>&1 </dev/null &
	EMULATOR_PID=$!
	EMULATOR_URL="http://127.0.0.1:$port"
	export EMULATOR_PID EMULATOR_URL
	add_cleanup "stop_tree $EMULATOR_PID 'cargo lambda watch'; stop_by_env 'AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:$port/' 'leftover function processes'"
	wait_http "$EMULATOR_URL/health" "${EMULATOR_START_TIMEOUT:-600}" "$log" "$EMULATOR_PID"
}

# release_build BIN...: the workspace in release (one step of the run), and a check that each
# named binary came out of it.
release_build() {
	step "Build: cargo build --release --workspace --locked" "fix the build errors above"
	cargo build --release --workspace --locked
	_check_release_bins "$@"
}

# release_build_packages PKG...: only these packages in release, in one cargo invocation, so
# that features are unified across them alone (not with the test crate's), as in a deployment
# build; each must have a binary of its own name.
release_build_packages() {
	local pkg
	local -a args=()
	for pkg in "$@"; do args+=(-p "$pkg"); done
	step "Build: cargo build --release --locked ${args[*]}" "fix the build errors above"
	cargo build --release --locked "${args[@]}"
	_check_release_bins "$@"
}

_check_release_bins() {
	local bin
	for bin in "$@"; do
		[ -x "$CARGO_TARGET_DIR/release/$bin" ] || die "$CARGO_TARGET_DIR/release/$bin is missing after the release build"
	done
}

# fresh_database PREFIX PROFILE: a new database PREFIX_<random> on TEST_DATABASE_URL's server,
# migrated with $CARGO_TARGET_DIR/PROFILE/migrate (its log to stderr) and dropped on exit;
# sets FRESH_DB_NAME and FRESH_DB_URL. The only way scripts here make a database.
fresh_database() {
	local prefix=$1 profile=$2 migrate
	migrate="$CARGO_TARGET_DIR/$profile/migrate"
	[ -x "$migrate" ] || die "$migrate is missing; the build step should have produced it"
	FRESH_DB_NAME="${prefix}_$(random_hex 12)"
	FRESH_DB_URL=$(url_with_db "$TEST_DATABASE_URL" "$FRESH_DB_NAME")
	say "creating database $FRESH_DB_NAME"
	psql -w -X -q -v ON_ERROR_STOP=1 -d "$TEST_DATABASE_URL" -c "create database \"$FRESH_DB_NAME\"" ||
		die "could not create database $FRESH_DB_NAME via TEST_DATABASE_URL=$(redact_url "$TEST_DATABASE_URL") (does that role have CREATEDB?)"
	add_cleanup "_drop_database '$FRESH_DB_NAME'"
	say "running migrations: DATABASE_URL=$(redact_url "$FRESH_DB_URL") $migrate"
	env -u AWS_LAMBDA_RUNTIME_API -u AWS_LAMBDA_FUNCTION_NAME DATABASE_URL="$FRESH_DB_URL" "$migrate" >&2 ||
		die "migrations failed on $FRESH_DB_NAME; reproduce with: DATABASE_URL=<db url> $migrate"
}

_drop_database() {
	local name=$1
	say "dropping database $name"
	psql -w -X -q -d "$TEST_DATABASE_URL" -c "drop database if exists \"$name\" with (force)" >/dev/null 2>&1 ||
		psql -w -X -q -d "$TEST_DATABASE_URL" -c "drop database if exists \"$name\"" >/dev/null ||
		warn "could not drop database $name; drop it by hand"
}

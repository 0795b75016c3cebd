#!/usr/bin/env bash
# make run: the whole API on one port (default 127.0.0.1:9000) under `cargo lambda watch`,
# reloading a function when its code changes. DEVELOPMENT setup: embedded SQLite database and a
# development JWT key, both in .local/; no Postgres, Redis or AWS needed.
#
# The environment is passed through to every function, so exporting e.g. DATABASE_URL or
# REDIS_URL before `make run` switches that part on. PORT=9001 make run picks another port.
# CACHE=redis make run switches the favorites cache on with a local Redis: the one answering
# on 127.0.0.1:6379, or a throwaway one started (and stopped with) this script.
# ENRICHMENT=local make run starts the fake enrichment service and points the list at it.
# Arguments are passed to `cargo lambda watch` (e.g. scripts/run.sh --release).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PORT="${PORT:-9000}"

step "Tools: project venv and cargo-lambda" "delete .venv and rerun to rebuild it"
ensure_venv
ensure_cargo_lambda

step "Port: 127.0.0.1:$PORT" "use another port: PORT=9001 make run"
if port_open 127.0.0.1 "$PORT"; then
	die "port $PORT on 127.0.0.1 is already in use (another 'make run'?); stop that process or use: PORT=9001 make run"
fi

if [ "${CACHE:-}" = redis ] && [ -z "${REDIS_URL:-}" ]; then
	step "Cache: a local Redis for REDIS_URL" "or set REDIS_URL yourself"
	ensure_redis
	export REDIS_URL="$TEST_REDIS_URL"
elif [ -n "${CACHE:-}" ] && [ "${CACHE:-}" != redis ]; then
	die "CACHE=$CACHE: the only cache is CACHE=redis"
fi

if [ "${ENRICHMENT:-}" = local ] && [ -z "${ENRICHMENT_URL:-}" ]; then
	step "Enrichment: the fake enrichment service (tests/src/bin/enrichment-server.rs)" "or set ENRICHMENT_URL yourself"
	cargo build -p e2e --bin enrichment-server
	enrichment_port=$(free_port)
	export ENRICHMENT_API_KEY="${ENRICHMENT_API_KEY:-local-enrichment-key}"
	"$CARGO_TARGET_DIR/debug/enrichment-server" "$enrichment_port" &
	add_cleanup "_stop_pid $! 'fake enrichment service'"
	export ENRICHMENT_URL="http://127.0.0.1:$enrichment_port"
	say "ENRICHMENT_URL=$ENRICHMENT_URL (change its behaviour: curl -X PUT $ENRICHMENT_URL/control -d '{\"mode\":\"status\",\"status\":503}')"
elif [ -n "${ENRICHMENT:-}" ] && [ "${ENRICHMENT:-}" != local ]; then
	die "ENRICHMENT=$ENRICHMENT: the only choice is ENRICHMENT=local"
fi

mkdir -p .local
export FAVORITES_DATA_DIR="${FAVORITES_DATA_DIR:-$REPO_ROOT/.local}"

step "Build: cargo build --workspace (so the first request to each route does not compile)" "fix the build errors above"
# `cargo lambda watch` starts each function lazily with `cargo run --bin <fn>`; building the
# workspace first (same target dir, profile and features) makes those runs instant.
if [[ " $* " == *" --release "* || " $* " == *" -r "* ]]; then
	cargo build --workspace --release
else
	cargo build --workspace
fi
step_done

overrides=""
for var in $(compgen -e | grep -E '^(DATABASE_URL|REDIS_URL|JWT_SECRET|BCRYPT_COST|ENRICHMENT_[A-Z_]*|AWS_ENDPOINT_URL[A-Z_]*|FAVORITES_[A-Z_]*)$' | sort || true); do
	value=$(redact_url "${!var}")
	case $var in JWT_SECRET | *_API_KEY) value="***" ;; esac
	overrides+=$'\n'"  |   $var=$value"
done

cat >&2 <<BANNER

  +------------------------------------------------------------------------------------+
  |  DEVELOPMENT SETUP - NOT FOR PRODUCTION                                            |
  |                                                                                    |
  |  Data:   embedded SQLite under $FAVORITES_DATA_DIR
  |  Auth:   a development JWT signing key generated into that directory               |
  |  Cache:  none unless REDIS_URL is set (CACHE=redis make run);  AWS: none            |
  |                                                                                    |
  |  API:    http://127.0.0.1:$PORT   (e.g. curl http://127.0.0.1:$PORT/health)
  |  Stop:   Ctrl-C                                                                    |
  +------------------------------------------------------------------------------------+
  |  Environment passed to the functions (overrides):${overrides:-$'\n  |   (none)'}
  +------------------------------------------------------------------------------------+

BANNER

say "cargo lambda watch -A 127.0.0.1 -P $PORT $*"
# Not exec'd: a throwaway Redis started above is stopped by the exit trap when this ends.
cargo lambda watch -A 127.0.0.1 -P "$PORT" "$@"

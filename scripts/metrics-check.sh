#!/usr/bin/env bash
# make metrics-check (make test runs it last): the custom metrics of template.yaml's dashboard and
# alarms are the ones the functions print.
#
#   1. A degraded run: the functions under their own `cargo lambda watch`, on the embedded
#      SQLite database, with a Redis URL and an enrichment URL where nothing listens. Signup,
#      login, writes and lists must all still succeed (the cache fails open, lists go out without
#      enrichment); they print the metrics the e2e run cannot (CacheFailOpen, EnrichmentLatency,
#      EnrichmentBreakerOpen). Its log must hold none of the secrets used or configured.
#      Stopping that emulator then checks graceful shutdown under it: every function instance
#      logs that it flushed and closed its pool within the time allowed.
#   2. scripts/check-metrics.py check: every Favorites metric the dashboard shows or an alarm
#      watches was printed by its function, in this run's log or in make test's e2e emulator's
#      log, and every printed metric is on the dashboard.
#
# Needs the log of make test's emulator (.local/e2e-emulator.log);
# run alone after a make test, or as part of it.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

LOG="$REPO_ROOT/.local/metrics-emulator.log"

step "Metrics: functions with Redis and enrichment down (own emulator, embedded database)" "see $LOG"
ensure_venv
ensure_cargo_lambda
need_cmd curl
.venv/bin/python -c 'import yaml' 2>/dev/null || .venv/bin/python -m pip install -q --progress-bar off pyyaml >&2 ||
	die "pip install pyyaml failed"
# The same build as make test's (a no-op after it); the emulator runs these binaries.
cargo build --workspace --locked
mkdir -p .local
data_dir=$(mktemp -d "$REPO_ROOT/.local/metrics-data.XXXXXX")
add_cleanup "rm -rf '$data_dir'"
# Ports nothing listens on: connections are refused at once.
JWT_SECRET=$(random_hex 48)
ENRICHMENT_API_KEY=$(random_hex 32)
REDIS_PASSWORD=$(random_hex 24)
export JWT_SECRET ENRICHMENT_API_KEY REDIS_PASSWORD
unset DATABASE_URL IDEMPOTENCY_TABLE LOGIN_THROTTLE_TABLE
start_emulator debug "$LOG" \
	FAVORITES_DATA_DIR="$data_dir" \
	BCRYPT_COST=4 \
	REDIS_URL="redis://:$REDIS_PASSWORD@127.0.0.1:$(free_port)" \
	ENRICHMENT_URL="http://127.0.0.1:$(free_port)" \
	ENRICHMENT_BREAKER_FAILURES=1 \
	LOGIN_MAX_FAILURES_PER_EMAIL=2
.venv/bin/python scripts/check-metrics.py drive "$EMULATOR_URL" "$LOG"

# Stopping the emulator sends its functions SIGTERM (they registered the shutdown extension,
# so it allows them 500 ms): each instance must flush, close its pool and say so in time.
step "Graceful shutdown under the emulator: SIGTERM reaches every function instance" "see $LOG"
stop_tree "$EMULATOR_PID" "cargo lambda watch"
started=$(grep -c 'starting lambda function instance' "$LOG" || true)
stopped=$(grep -c '"message":"shut down","closed":"database pool","in_time":true' "$LOG" || true)
[ "$started" -gt 0 ] && [ "$stopped" -eq "$started" ] ||
	die "$started function instances started but $stopped shut down gracefully (see $LOG)"
say "all $started function instances shut down gracefully"

step "Metrics: template.yaml's Favorites metrics against what the functions printed (scripts/check-metrics.py)" "fix template.yaml or shared/src/metrics.rs as listed above; the logs are in .local/"
.venv/bin/python scripts/check-metrics.py check .local/e2e-emulator.log "$LOG"
step_done

#!/usr/bin/env bash
# make bench-cache: list pages served from the Redis cache versus from Postgres alone.
#
#   1. release build of the workspace; a fresh Postgres database favorites_bench_<random>
#      (from TEST_DATABASE_URL, see ensure_postgres), migrated, dropped on exit
#   2. a private redis-server on a free port of 127.0.0.1 (no persistence), so that its
#      statistics count only this benchmark's traffic; stopped on exit
#   3. two emulators (`cargo lambda watch --release`), each on a free port of 127.0.0.1, with
#      the same database and JWT key: "uncached" without REDIS_URL (no cache at all) and
#      "cached" with REDIS_URL pointing at the private Redis and room for the whole list
#      (CACHE_MAX_ITEMS=5000, CACHE_MAX_BYTES=16 MiB)
#   4. one user signed up and logged in over HTTP, then 2 000 favorites seeded by SQL (one
#      INSERT ... generate_series) and the user's favorites_version bumped, as a write would
#   5. warm-up: each page size (limit=50, limit=1000) requested on each emulator (the cached
#      one fills its cache on the first request), then the cached answer compared with the
#      uncached one: same items, same next_cursor
#   6. round trips per cached page: CONFIG RESETSTAT, BENCH_RT_REQUESTS sequential requests
#      of the 50-item page, INFO commandstats; MONITOR at the same time tells the commands the
#      function sent (one client, top level) from those the Lua script ran inside Redis
#   7. load: `hey -z BENCH_SECONDS -c BENCH_CONCURRENCY` per (page size, mode), BENCH_RUNS
#      times, alternating which mode goes first; every answer must be 200
#   8. the same two configurations without the emulator: list-favorites processes, each on a
#      minimal runtime API (scripts/bench-list-runtime.py, as bench-list uses),
#      BENCH_NOHOP_REQUESTS sequential invocations per (page size, mode), alternating uncached
#      and cached request by request; the time runs from handing the event to the function
#      until the last byte of its streamed response is read. Twice: with the runtime API
#      acknowledging every TCP segment at once (BENCH_RUNTIME_QUICKACK=1: the function's own
#      time), and with the kernel's default delayed ACKs. The function's runtime client sends
#      with Nagle's algorithm on and writes a streamed response in several small pieces, so
#      against delayed ACKs a response can stall for about 40 ms; that stall, not the
#      function, dominates the figures through the emulator.
#   9. a Markdown report on stdout (also written to .local/bench-cache.md): medians of p50,
#      p99 and requests/s, the round trips, and whether the targets are met:
#        one Redis round trip per cached page; cached p99 < uncached p99 at both page sizes
#
# The measured part waits (up to 20 minutes) while a `scripts/test.sh` runs on the machine,
# so that a concurrent build does not skew the figures.
#
# Knobs: BENCH_SECONDS (20), BENCH_CONCURRENCY (4), BENCH_RUNS (3), BENCH_RT_REQUESTS (200),
# BENCH_NOHOP_REQUESTS (400), BENCH_FAVORITES (2000), TEST_DATABASE_URL / PG_PROBE_PORT (which
# Postgres, see scripts/lib.sh).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_SECONDS="${BENCH_SECONDS:-20}"
BENCH_CONCURRENCY="${BENCH_CONCURRENCY:-4}"
BENCH_RUNS="${BENCH_RUNS:-3}"
BENCH_RT_REQUESTS="${BENCH_RT_REQUESTS:-200}"
BENCH_NOHOP_REQUESTS="${BENCH_NOHOP_REQUESTS:-400}"
BENCH_FAVORITES="${BENCH_FAVORITES:-2000}"
BENCH_SIZES="50 1000"
BENCH_REPORT="$REPO_ROOT/.local/bench-cache.md"
LOG_UNCACHED="$REPO_ROOT/.local/bench-cache-uncached.log"
LOG_CACHED="$REPO_ROOT/.local/bench-cache-cached.log"

for knob in BENCH_SECONDS BENCH_CONCURRENCY BENCH_RUNS BENCH_RT_REQUESTS BENCH_NOHOP_REQUESTS BENCH_FAVORITES; do
	[[ ${!knob} =~ ^[1-9][0-9]*$ ]] || die "$knob must be a positive integer (got '${!knob}')"
done
[ "$BENCH_FAVORITES" -gt 1000 ] || die "BENCH_FAVORITES must exceed 1000 so both pages have a next page"
[ "$BENCH_FAVORITES" -le 5000 ] || die "BENCH_FAVORITES must be at most 5000 (CACHE_MAX_ITEMS) so the whole list is cached"

# The uncached emulator must not inherit a cache from the caller's environment.
unset REDIS_URL REDIS_TIMEOUT_MS CACHE_TTL_SECONDS CACHE_MAX_ITEMS CACHE_MAX_BYTES

# ---------------------------------------------------------------------------------------------
# helpers

# median of the arguments (odd count: middle one; even: lower middle)
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

# calc EXPR [FORMAT]: floating point arithmetic (awk), printed with %.6g unless a format is given
calc() { awk "BEGIN { printf \"${2:-%.6g}\", $1 }"; }

# group N: thousands separated by a space
group() { sed -E ':a; s/([0-9])([0-9]{3})($| |\.)/\1 \2\3/; ta' <<<"$1"; }

# psql on the bench database, bounded in time, failing on the first error
bpsql() {
	PGOPTIONS="-c statement_timeout=300s" timeout 330 psql -w -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DATABASE_URL" "$@"
}

# rcli ARGS...: redis-cli on the private server, bounded in time
rcli() { timeout 10 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" "$@"; }

# get_page BASE LIMIT FILE: GET /favorites?limit=LIMIT into FILE; checks the 200.
get_page() {
	local base=$1 limit=$2 file=$3 code
	code=$(curl -sS --max-time 900 -o "$file" -w '%{http_code}' \
		-H "authorization: Bearer $TOKEN" "$base/favorites?limit=$limit") ||
		die "GET $base/favorites?limit=$limit failed"
	[ "$code" = 200 ] || die "GET $base/favorites?limit=$limit answered HTTP $code: $(head -c 300 "$file")"
}

# same_page UNCACHED_FILE CACHED_FILE LIMIT: both bodies parse, have LIMIT items, the same
# items in the same order, and both have a next_cursor (the list is longer than the page).
same_page() {
	python3 - "$@" <<-'PY'
		import json, sys
		uncached_file, cached_file, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
		u = json.load(open(uncached_file, "rb"))
		c = json.load(open(cached_file, "rb"))
		problems = []
		if len(u["data"]) != limit:
		    problems.append(f"uncached page has {len(u['data'])} items")
		if len(c["data"]) != limit:
		    problems.append(f"cached page has {len(c['data'])} items")
		if u["data"] != c["data"]:
		    first = next((i for i, (a, b) in enumerate(zip(u["data"], c["data"])) if a != b), None)
		    problems.append(f"the items differ (first difference at index {first})")
		if u.get("next_cursor") is None or c.get("next_cursor") is None:
		    problems.append(f"next_cursor missing: uncached {u.get('next_cursor')!r}, cached {c.get('next_cursor')!r}")
		elif u["next_cursor"] != c["next_cursor"]:
		    problems.append(f"next_cursor differs: uncached {u['next_cursor']!r}, cached {c['next_cursor']!r}")
		if problems:
		    sys.exit(f"limit={limit}: cached and uncached pages differ: " + "; ".join(problems))
		print(f"limit={limit}: cached and uncached pages are identical ({limit} items, same next_cursor)", file=sys.stderr)
	PY
}

# parse_hey FILE: "p50_ms p99_ms requests_per_s responses" from hey's summary; fails unless
# every answer was a 200 and hey saw no error.
parse_hey() {
	python3 - "$1" <<-'PY'
		import re, sys
		text = open(sys.argv[1]).read()
		rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
		pct = {int(p): float(s) for p, s in re.findall(r"^\s*(\d+)%+ in ([\d.]+) secs", text, re.M)}
		codes = {int(c): int(n) for c, n in re.findall(r"^\s*\[(\d+)\]\s+(\d+) responses", text, re.M)}
		errors = re.search(r"Error distribution:(.*)", text, re.S)
		if errors:
		    sys.exit("hey saw errors:" + errors.group(1)[:1000])
		if not codes or set(codes) != {200}:
		    sys.exit(f"hey: not every answer was 200: {codes or 'no answers'}")
		if not rps or 50 not in pct or 99 not in pct:
		    sys.exit(f"hey: no Requests/sec or no 50%/99% latency in its summary ({sum(codes.values())} answers;"
		             " hey prints a 99% only from 100 answers on: raise BENCH_SECONDS)")
		print(f"{pct[50] * 1000:.2f} {pct[99] * 1000:.2f} {float(rps.group(1)):.1f} {codes[200]}")
	PY
}

# cmdstat NAME: calls of command NAME since the last CONFIG RESETSTAT (0 when absent)
cmdstat() {
	awk -F'[:,=]' -v name="cmdstat_$1" '$1 == name { print $3; found = 1 } END { if (!found) print 0 }' <<<"$COMMANDSTATS"
}

# start_nohop MODE ACKS [VAR=VALUE...]: a list-favorites process on its own minimal runtime
# API (scripts/bench-list-runtime.py), ACKS quick (BENCH_RUNTIME_QUICKACK=1) or delayed (the
# kernel's default), with the common environment plus the given variables;
# sets NOHOP_PORT[MODE,ACKS].
declare -A NOHOP_PORT
start_nohop() {
	local mode=$1 acks=$2 port rt_pid fn_pid i quick=0 name
	shift 2
	[ "$acks" != quick ] || quick=1
	name="$mode-$acks"
	port=$(free_port)
	BENCH_TOKEN="$TOKEN" BENCH_INVOKE_TIMEOUT=60 BENCH_RUNTIME_QUICKACK=$quick python3 scripts/bench-list-runtime.py "$port" \
		>"$DATA_DIR/runtime-$name.log" 2>&1 </dev/null &
	rt_pid=$!
	add_cleanup "_stop_pid $rt_pid 'bench runtime API ($name)'"
	for i in $(seq 1 50); do
		! port_open 127.0.0.1 "$port" || break
		kill -0 "$rt_pid" 2>/dev/null || die "the bench runtime API ($name) exited (see $DATA_DIR/runtime-$name.log)"
		[ "$i" -lt 50 ] || die "the bench runtime API ($name) did not start (see $DATA_DIR/runtime-$name.log)"
		sleep 0.2
	done
	env "${common_env[@]}" FAVORITES_DATA_DIR="$DATA_DIR/$mode" "$@" \
		AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$port" \
		AWS_LAMBDA_FUNCTION_NAME=list-favorites \
		AWS_LAMBDA_FUNCTION_VERSION=1 \
		AWS_LAMBDA_FUNCTION_MEMORY_SIZE=1024 \
		"$CARGO_TARGET_DIR/release/list-favorites" >"$DATA_DIR/nohop-$name.log" 2>&1 </dev/null &
	fn_pid=$!
	add_cleanup "_stop_pid $fn_pid 'no-hop list-favorites ($name)'"
	NOHOP_PORT[$mode,$acks]=$port
	say "no-hop $name: list-favorites pid $fn_pid on the runtime API 127.0.0.1:$port"
}

# nohop_measure ACKS COUNT LIMIT...: COUNT invocations per (limit, mode) of the two no-hop
# functions with ACKS, alternating uncached and cached one by one (which goes first alternates
# too), after one unmeasured invocation each; every answer must be a 200 with LIMIT items.
# Prints "mode limit p50_ms p99_ms mean_ms percent_at_least_35_ms" lines.
nohop_measure() {
	local acks=$1
	shift
	python3 - "${NOHOP_PORT[uncached,$acks]}" "${NOHOP_PORT[cached,$acks]}" "$@" <<-'PY'
		import json, math, sys, urllib.request
		ports = {"uncached": int(sys.argv[1]), "cached": int(sys.argv[2])}
		count, limits = int(sys.argv[3]), [int(a) for a in sys.argv[4:]]
		def invoke(mode, limit):
		    req = urllib.request.Request(f"http://127.0.0.1:{ports[mode]}/bench/invoke?timeout=60",
		                                 data=f"limit={limit}".encode(), method="POST")
		    with urllib.request.urlopen(req, timeout=90) as answer:
		        r = json.load(answer)
		    if not r.get("ok") or r.get("items") != limit:
		        sys.exit(f"no-hop {mode} limit={limit}: bad answer {r}")
		    return r["seconds"] * 1000
		def pct(sorted_ms, p):  # nearest rank
		    return sorted_ms[max(0, math.ceil(p / 100 * len(sorted_ms)) - 1)]
		for limit in limits:
		    for mode in ports:  # one unmeasured invocation each
		        invoke(mode, limit)
		    times = {mode: [] for mode in ports}
		    for i in range(count):
		        for mode in (("uncached", "cached") if i % 2 == 0 else ("cached", "uncached")):
		            times[mode].append(invoke(mode, limit))
		    for mode, ms in times.items():
		        ms.sort()
		        slow = 100 * sum(t >= 35 for t in ms) / len(ms)
		        print(mode, limit, f"{pct(ms, 50):.2f}", f"{pct(ms, 99):.2f}", f"{sum(ms) / len(ms):.2f}", f"{slow:.0f}")
	PY
}

# ---------------------------------------------------------------------------------------------

step "Tools: project venv, cargo-lambda, curl, python3, redis-server, redis-cli, hey" "delete .venv and rerun to rebuild it"
ensure_venv
ensure_cargo_lambda
need_cmd curl
need_cmd python3
need_cmd redis-server redis-server
need_cmd redis-cli redis-tools
need_cmd hey hey
mkdir -p .local
say "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "Postgres" "set TEST_DATABASE_URL to an admin URL of a reachable Postgres, or unset it to get a throwaway server"
ensure_postgres

release_build migrate list-favorites signup login

step "Database: favorites_bench_<random>, migrated" "does the TEST_DATABASE_URL role have CREATEDB?"
bench_database

step "Redis: a private redis-server on 127.0.0.1" "see the redis log named above"
DATA_DIR=$(mktemp -d "$REPO_ROOT/.local/bench-cache.XXXXXX")
add_cleanup "rm -rf '$DATA_DIR'"
REDIS_PORT=$(free_port)
say "starting redis-server on 127.0.0.1:$REDIS_PORT (no persistence), log $DATA_DIR/redis.log"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no --dir "$DATA_DIR" \
	>"$DATA_DIR/redis.log" 2>&1 </dev/null &
REDIS_PID=$!
add_cleanup "_stop_pid $REDIS_PID 'private redis-server'"
for i in $(seq 1 40); do
	[ "$(rcli ping 2>/dev/null)" != PONG ] || break
	if ! kill -0 "$REDIS_PID" 2>/dev/null || [ "$i" -eq 40 ]; then
		tail_log "$DATA_DIR/redis.log"
		die "the private redis-server on port $REDIS_PORT did not start (see above)"
	fi
	sleep 0.25
done
REDIS_VERSION=$(rcli info server | awk -F: '/^redis_version:/ { sub(/\r$/, "", $2); print $2 }')
say "redis-server $REDIS_VERSION ready on 127.0.0.1:$REDIS_PORT"

step "Emulators: uncached (no REDIS_URL) and cached (REDIS_URL), cargo lambda watch --release" \
	"see $LOG_UNCACHED and $LOG_CACHED"
JWT_SECRET_VALUE=$(random_hex 48)
# JWT_TTL_SECONDS: the token must outlive a wait for a running scripts/test.sh.
common_env=(
	DATABASE_URL="$BENCH_DATABASE_URL"
	JWT_SECRET="$JWT_SECRET_VALUE"
	JWT_TTL_SECONDS=86400
	BCRYPT_COST=4
	RUST_LOG=warn
)
mkdir -p "$DATA_DIR/uncached" "$DATA_DIR/cached"
start_emulator release "$LOG_UNCACHED" "${common_env[@]}" FAVORITES_DATA_DIR="$DATA_DIR/uncached"
URL_UNCACHED=$EMULATOR_URL
start_emulator release "$LOG_CACHED" "${common_env[@]}" FAVORITES_DATA_DIR="$DATA_DIR/cached" \
	REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CACHE_MAX_ITEMS=5000 CACHE_MAX_BYTES=16777216
URL_CACHED=$EMULATOR_URL
say "uncached: $URL_UNCACHED   cached: $URL_CACHED (Redis 127.0.0.1:$REDIS_PORT)"

step "User: sign up and log in over HTTP" "see $LOG_UNCACHED"
bench_user "$URL_UNCACHED"

step "Seed: $BENCH_FAVORITES favorites by SQL, then bump favorites_version" "see the psql error above"
bpsql -v uid="$BENCH_USER_ID" -v lo=1 -v hi="$BENCH_FAVORITES" -f "$REPO_ROOT/scripts/seed-favorites.sql"
bpsql -c 'vacuum analyze' >/dev/null
FAV_VERSION=$(bpsql -At -c "select favorites_version from users where id = '$BENCH_USER_ID'")
COUNT=$(bpsql -At -c "select count(*) from favorites where user_id = '$BENCH_USER_ID'")
[ "$COUNT" -eq "$BENCH_FAVORITES" ] || die "seeded $COUNT favorites, expected $BENCH_FAVORITES"
say "$COUNT favorites, favorites_version $FAV_VERSION"

step "Warm-up: each page on each emulator; cached pages must equal uncached ones" \
	"see $LOG_UNCACHED and $LOG_CACHED"
META_KEY="fav:{$BENCH_USER_ID}:meta"
declare -A BODY_BYTES
for limit in $BENCH_SIZES; do
	get_page "$URL_UNCACHED" "$limit" "$DATA_DIR/uncached-$limit.json"
	get_page "$URL_UNCACHED" "$limit" "$DATA_DIR/uncached-$limit.json"
	get_page "$URL_CACHED" "$limit" "$DATA_DIR/cached-fill-$limit.json" # a miss the first time: fills
	get_page "$URL_CACHED" "$limit" "$DATA_DIR/cached-$limit.json"      # served from the cache
	same_page "$DATA_DIR/uncached-$limit.json" "$DATA_DIR/cached-fill-$limit.json" "$limit"
	same_page "$DATA_DIR/uncached-$limit.json" "$DATA_DIR/cached-$limit.json" "$limit"
	BODY_BYTES[$limit]=$(wc -c <"$DATA_DIR/cached-$limit.json")
done
mapfile -t entry < <(rcli hmget "$META_KEY" v full n bytes)
entry_v=${entry[0]:-} entry_full=${entry[1]:-} entry_n=${entry[2]:-} entry_bytes=${entry[3]:-}
say "cache entry $META_KEY: v=$entry_v full=$entry_full n=$entry_n bytes=$entry_bytes"
if [ "$entry_v" != "$FAV_VERSION" ] || [ "$entry_full" != 1 ] || [ "$entry_n" != "$BENCH_FAVORITES" ]; then
	die "the cache entry is not the whole list at version $FAV_VERSION (v=$entry_v full=$entry_full n=$entry_n)"
fi

step "No-hop functions: list-favorites on minimal runtime APIs, uncached and cached, quick and delayed ACKs" \
	"see $DATA_DIR/nohop-*.log and $DATA_DIR/runtime-*.log"
for acks in quick delayed; do
	start_nohop uncached "$acks"
	start_nohop cached "$acks" REDIS_URL="redis://127.0.0.1:$REDIS_PORT" CACHE_MAX_ITEMS=5000 CACHE_MAX_BYTES=16777216
	# shellcheck disable=SC2086 # BENCH_SIZES is a list
	nohop_measure "$acks" 1 $BENCH_SIZES >/dev/null || die "the no-hop functions did not answer (see $DATA_DIR/nohop-*.log)"
done
step_done

step "Waiting while another scripts/test.sh runs (at most ${TEST_WAIT_SECONDS}s)"
wait_for_tests 'scripts/test\.sh' scripts/test.sh

step "Round trips: $BENCH_RT_REQUESTS sequential cached requests of limit=50, Redis INFO commandstats and MONITOR" \
	"see $LOG_CACHED and $DATA_DIR/monitor.log"
rcli config resetstat >/dev/null
timeout 600 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" monitor >"$DATA_DIR/monitor.log" 2>&1 </dev/null &
MONITOR_PID=$!
add_cleanup "_stop_pid $MONITOR_PID 'redis-cli monitor'"
for i in $(seq 1 40); do
	! grep -qx OK "$DATA_DIR/monitor.log" 2>/dev/null || break
	[ "$i" -lt 40 ] || die "redis-cli monitor did not start"
	sleep 0.25
done
for i in $(seq 1 "$BENCH_RT_REQUESTS"); do
	code=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' \
		-H "authorization: Bearer $TOKEN" "$URL_CACHED/favorites?limit=50") || die "cached request $i failed"
	[ "$code" = 200 ] || die "cached request $i answered HTTP $code"
done
# Stop MONITOR first so that it does not show our INFO.
sleep 0.5
_stop_pid "$MONITOR_PID" 'redis-cli monitor'
COMMANDSTATS=$(rcli info commandstats | tr -d '\r')
COMMANDSTATS_RT=$COMMANDSTATS
EVALSHA_CALLS=$(cmdstat evalsha)
EVAL_CALLS=$(cmdstat eval)
RT_PER_PAGE=$(calc "$EVALSHA_CALLS / $BENCH_RT_REQUESTS" '%.2f')
# MONITOR: lines "<time> [<db> <client address>] "CMD" ..." for commands sent by a client,
# "[<db> lua]" for the commands a script ran.
read -r MON_TOP MON_CLIENTS MON_SHAS MON_LUA < <(awk '
	/^[0-9.]+ \[[0-9]+ lua\]/ { lua++; next }
	/^[0-9.]+ \[[0-9]+ [0-9.:]+\]/ { top++; if (!($3 in clients)) { clients[$3] = 1; nc++ }; if (toupper($4) == "\"EVALSHA\"" && !($5 in shas)) { shas[$5] = 1; ns++ } }
	END { printf "%d %d %d %d\n", top, nc, ns, lua }' "$DATA_DIR/monitor.log")
MON_TOP_BY_CMD=$(awk '/^[0-9.]+ \[[0-9]+ [0-9.:]+\]/ { n[toupper($4)]++ } END { for (c in n) printf "%s %d, ", c, n[c] }' "$DATA_DIR/monitor.log" | tr -d '"' | sed 's/, $//')
MON_LUA_BY_CMD=$(awk '/^[0-9.]+ \[[0-9]+ lua\]/ { n[toupper($4)]++ } END { for (c in n) printf "%s %d, ", c, n[c] }' "$DATA_DIR/monitor.log" | tr -d '"' | sed 's/, $//')
say "EVALSHA $EVALSHA_CALLS, EVAL $EVAL_CALLS for $BENCH_RT_REQUESTS pages: $RT_PER_PAGE round trips per page"
say "MONITOR: top-level $MON_TOP ($MON_TOP_BY_CMD) from $MON_CLIENTS client(s), $MON_SHAS script(s); inside scripts $MON_LUA ($MON_LUA_BY_CMD)"
step_done

step "Load: hey -z ${BENCH_SECONDS}s -c $BENCH_CONCURRENCY, $BENCH_RUNS runs per (page size, mode)" \
	"see $LOG_UNCACHED, $LOG_CACHED and the hey outputs in $DATA_DIR"
declare -A P50 P99 RPS REQS EVALSHA_PER_REQ
LOAD_LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$BENCH_RUNS"); do
	if [ $((run % 2)) -eq 1 ]; then order="uncached cached"; else order="cached uncached"; fi
	for limit in $BENCH_SIZES; do
		for mode in $order; do
			if [ "$mode" = cached ]; then base=$URL_CACHED; else base=$URL_UNCACHED; fi
			out="$DATA_DIR/hey-$mode-$limit-$run.txt"
			[ "$mode" != cached ] || rcli config resetstat >/dev/null
			timeout $((BENCH_SECONDS + 120)) hey -z "${BENCH_SECONDS}s" -c "$BENCH_CONCURRENCY" -t 30 \
				-H "Authorization: Bearer $TOKEN" "$base/favorites?limit=$limit" >"$out" 2>&1 ||
				die "hey failed on $mode limit=$limit run $run (see $out)"
			read -r p50 p99 rps n < <(parse_hey "$out") || die "bad hey run: $mode limit=$limit run $run (see $out)"
			if [ "$mode" = cached ]; then
				COMMANDSTATS=$(rcli info commandstats | tr -d '\r')
				EVALSHA_PER_REQ[$limit]+="$(calc "$(cmdstat evalsha) / $n" '%.3f') "
			fi
			P50[$mode,$limit]+="$p50 "
			P99[$mode,$limit]+="$p99 "
			RPS[$mode,$limit]+="$rps "
			REQS[$mode,$limit]+="$n "
			say "run $run, limit=$limit, $mode: p50 ${p50} ms, p99 ${p99} ms, ${rps} req/s ($n answers, all 200)"
		done
	done
done
LOAD_LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
step_done

step "No hop: $BENCH_NOHOP_REQUESTS sequential invocations per (page size, mode), without the emulator" \
	"see $DATA_DIR/nohop-*.log and $DATA_DIR/runtime-*.log"
declare -A NH_P50 NH_P99 NH_MEAN NH_SLOW NOHOP_EVALSHA_PER_PAGE
for acks in quick delayed; do
	rcli config resetstat >/dev/null
	# shellcheck disable=SC2086 # BENCH_SIZES is a list
	out=$(nohop_measure "$acks" "$BENCH_NOHOP_REQUESTS" $BENCH_SIZES) || die "the no-hop measurement ($acks ACKs) failed"
	COMMANDSTATS=$(rcli info commandstats | tr -d '\r')
	# one unmeasured invocation per page size, then the measured ones
	NOHOP_EVALSHA_PER_PAGE[$acks]=$(calc "$(cmdstat evalsha) / ($(wc -w <<<"$BENCH_SIZES") * ($BENCH_NOHOP_REQUESTS + 1))" '%.3f')
	while read -r mode limit p50 p99 mean slow; do
		NH_P50[$acks,$mode,$limit]=$p50
		NH_P99[$acks,$mode,$limit]=$p99
		NH_MEAN[$acks,$mode,$limit]=$mean
		NH_SLOW[$acks,$mode,$limit]=$slow
		say "no hop, $acks ACKs, limit=$limit, $mode: p50 $p50 ms, p99 $p99 ms, mean $mean ms, ${slow}% >= 35 ms"
	done <<<"$out"
	say "no hop, $acks ACKs: EVALSHA per cached invocation ${NOHOP_EVALSHA_PER_PAGE[$acks]}"
done
CACHE_WARNINGS=$(cat "$LOG_CACHED" "$DATA_DIR"/nohop-cached-*.log | grep -c 'favorites cache failed' || true)
step_done

# ---------------------------------------------------------------------------------------------
# report

declare -A MP50 MP99 MRPS
for limit in $BENCH_SIZES; do
	for mode in uncached cached; do
		# shellcheck disable=SC2086 # space-separated lists of numbers
		MP50[$mode,$limit]=$(median ${P50[$mode,$limit]})
		# shellcheck disable=SC2086
		MP99[$mode,$limit]=$(median ${P99[$mode,$limit]})
		# shellcheck disable=SC2086
		MRPS[$mode,$limit]=$(median ${RPS[$mode,$limit]})
	done
done

{
	echo "bench-cache: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)," \
		"Postgres $(bpsql -At -c 'show server_version' | cut -d' ' -f1), Redis $REDIS_VERSION; load average $LOAD_LOADAVG_START at the start of the load runs, $LOAD_LOADAVG_END at the end"
	[ -z "$TESTS_RUNNING_NOTE" ] || echo "NOTE: $TESTS_RUNNING_NOTE"
	echo
	echo "One user with $(group "$BENCH_FAVORITES") favorites; GET /favorites?limit=N with a Bearer token; \`hey -z ${BENCH_SECONDS}s -c $BENCH_CONCURRENCY\`," \
		"$BENCH_RUNS runs per row (alternating which mode goes first), medians; every answer 200."
	echo
	echo "| page size | mode | body (KiB) | p50 (ms) | p99 (ms) | req/s |"
	echo "|---:|---|---:|---:|---:|---:|"
	for limit in $BENCH_SIZES; do
		for mode in uncached cached; do
			if [ "$mode" = cached ]; then label="cached (Redis hit)"; else label="uncached (Postgres)"; fi
			printf '| %s | %s | %s | %s | %s | %s |\n' "$(group "$limit")" "$label" \
				"$(calc "${BODY_BYTES[$limit]} / 1024" '%.1f')" \
				"$(calc "${MP50[$mode,$limit]}" '%.2f')" "$(calc "${MP99[$mode,$limit]}" '%.2f')" \
				"$(group "$(calc "${MRPS[$mode,$limit]}" '%.0f')")"
		done
	done
	echo
	echo "| page size | p50 cached ÷ uncached | p99 cached ÷ uncached | req/s cached ÷ uncached |"
	echo "|---:|---:|---:|---:|"
	for limit in $BENCH_SIZES; do
		printf '| %s | %s | %s | %s |\n' "$(group "$limit")" \
			"$(calc "${MP50[cached,$limit]} / ${MP50[uncached,$limit]}" '%.2f')" \
			"$(calc "${MP99[cached,$limit]} / ${MP99[uncached,$limit]}" '%.2f')" \
			"$(calc "${MRPS[cached,$limit]} / ${MRPS[uncached,$limit]}" '%.2f')"
	done
	echo
	echo "Without the emulator (the same binary on a minimal runtime API, $BENCH_NOHOP_REQUESTS sequential invocations per row," \
		"uncached and cached alternating; from handing over the event to the last byte of the streamed response;" \
		"quick ACKs: the runtime API acknowledges every segment at once, delayed: the kernel's default):"
	echo
	echo "| page size | mode | ACKs | p50 (ms) | p99 (ms) | mean (ms) | ≥ 35 ms |"
	echo "|---:|---|---|---:|---:|---:|---:|"
	for acks in quick delayed; do
		for limit in $BENCH_SIZES; do
			for mode in uncached cached; do
				if [ "$mode" = cached ]; then label="cached (Redis hit)"; else label="uncached (Postgres)"; fi
				printf '| %s | %s | %s | %s | %s | %s | %s%% |\n' "$(group "$limit")" "$label" "$acks" \
					"${NH_P50[$acks,$mode,$limit]}" "${NH_P99[$acks,$mode,$limit]}" "${NH_MEAN[$acks,$mode,$limit]}" \
					"${NH_SLOW[$acks,$mode,$limit]}"
			done
		done
	done
	echo
	echo "| page size | ACKs | p50 cached ÷ uncached | p99 cached ÷ uncached | mean cached ÷ uncached |"
	echo "|---:|---|---:|---:|---:|"
	for acks in quick delayed; do
		for limit in $BENCH_SIZES; do
			printf '| %s | %s | %s | %s | %s |\n' "$(group "$limit")" "$acks" \
				"$(calc "${NH_P50[$acks,cached,$limit]} / ${NH_P50[$acks,uncached,$limit]}" '%.2f')" \
				"$(calc "${NH_P99[$acks,cached,$limit]} / ${NH_P99[$acks,uncached,$limit]}" '%.2f')" \
				"$(calc "${NH_MEAN[$acks,cached,$limit]} / ${NH_MEAN[$acks,uncached,$limit]}" '%.2f')"
		done
	done
	echo
	echo "EVALSHA per cached no-hop invocation: ${NOHOP_EVALSHA_PER_PAGE[quick]} (quick ACKs), ${NOHOP_EVALSHA_PER_PAGE[delayed]} (delayed)"
	echo
	echo "Every run through the emulator (p50 ms / p99 ms / req/s):"
	echo
	for limit in $BENCH_SIZES; do
		for mode in uncached cached; do
			read -r -a a <<<"${P50[$mode,$limit]}"
			read -r -a b <<<"${P99[$mode,$limit]}"
			read -r -a c <<<"${RPS[$mode,$limit]}"
			runs=""
			for i in "${!a[@]}"; do runs+="${a[i]} / ${b[i]} / ${c[i]}; "; done
			extra=""
			[ "$mode" != cached ] || extra=" — EVALSHA per answer: ${EVALSHA_PER_REQ[$limit]% }"
			echo "- limit=$limit, $mode: ${runs%; }$extra"
		done
	done
	echo
	echo "Round trips per cached page ($BENCH_RT_REQUESTS sequential requests of limit=50 after CONFIG RESETSTAT):"
	echo
	echo "- EVALSHA: $EVALSHA_CALLS calls = **$RT_PER_PAGE per page**; EVAL: $EVAL_CALLS (the script was loaded during the warm-up)"
	echo "- sent by the function (MONITOR, top level): $MON_TOP commands ($MON_TOP_BY_CMD) over $MON_CLIENTS connection(s), $MON_SHAS distinct script(s)"
	echo "- run inside the Lua script, which INFO commandstats counts too: $MON_LUA_BY_CMD"
	echo "- INFO commandstats, every line:"
	echo
	grep '^cmdstat_' <<<"$COMMANDSTATS_RT" | sed 's/^/      /'
	echo
	echo "  (config|resetstat and monitor are redis-cli's own; INFO does not count itself)"
	echo
	echo "Cache failures logged by the cached function during the run: $CACHE_WARNINGS"
	echo
	others=$((MON_TOP - EVALSHA_CALLS))
	if [ "$EVALSHA_CALLS" -eq "$BENCH_RT_REQUESTS" ] && [ "$EVAL_CALLS" -eq 0 ] && [ "$others" -eq 0 ] && [ "$MON_TOP" -eq "$BENCH_RT_REQUESTS" ]; then
		verdict=met
	else
		verdict="NOT met"
	fi
	echo "- one round trip per cached page: **$verdict** ($RT_PER_PAGE EVALSHA per page, $others other top-level commands)"
	for limit in $BENCH_SIZES; do
		if awk "BEGIN { exit !(${MP99[cached,$limit]} < ${MP99[uncached,$limit]}) }"; then verdict=met; else verdict="NOT met"; fi
		echo "- cached p99 < uncached p99 at limit=$limit, through the emulator (hey): **$verdict** ($(calc "${MP99[cached,$limit]}" '%.2f') ms vs $(calc "${MP99[uncached,$limit]}" '%.2f') ms)"
	done
	for acks in quick delayed; do
		for limit in $BENCH_SIZES; do
			if awk "BEGIN { exit !(${NH_P99[$acks,cached,$limit]} < ${NH_P99[$acks,uncached,$limit]}) }"; then verdict=met; else verdict="NOT met"; fi
			echo "- cached p99 < uncached p99 at limit=$limit, without the emulator, $acks ACKs: **$verdict** (${NH_P99[$acks,cached,$limit]} ms vs ${NH_P99[$acks,uncached,$limit]} ms)"
		done
	done
} | tee "$BENCH_REPORT"
say "report written to $BENCH_REPORT"

#!/usr/bin/env bash
# make bench-list: memory and throughput of the streamed list (GET /favorites?limit=all).
#
#   1. release build of the workspace; a fresh Postgres database favorites_bench_<random>
#      (from TEST_DATABASE_URL, see ensure_postgres), migrated, dropped on exit
#   2. the functions under the Lambda runtime emulator (`cargo lambda watch --release`) on a
#      free port of 127.0.0.1; one user signed up and logged in over HTTP
#   3. for N = 1 000, 100 000, 1 000 000 favorites of that user (seeded cumulatively, one
#      INSERT ... generate_series per step, then VACUUM ANALYZE), each measured RUNS times:
#        - floor: Postgres emitting the same rows, `COPY (<the listing select>) TO STDOUT`
#          through psql into /dev/null (the select is read from LIST_SELECT in
#          shared/src/adapters/sql/postgres.rs, so it cannot drift from the code)
#        - the list: curl GET /favorites?limit=all through the emulator, body to /dev/null
#        - the list-favorites process's peak RSS: /proc/PID/clear_refs reset (5) before the
#          request, VmHWM from /proc/PID/status after
#        - the same function binary without the emulator's relay hop: a second process on a
#          minimal runtime API (scripts/bench-list-runtime.py) that reads the stream itself
#      plus one unmeasured run per N that checks the body is complete and has N items.
#   4. a Markdown report on stdout (also written to .local/bench-list.md): medians of the
#      times, maxima of the RSS, and whether the targets are met:
#        peak RSS at 1 000 000 <= 1.25 x peak RSS at 1 000; list items/s >= 0.5 x COPY rows/s
#
# Knobs: BENCH_SIZES (default "1000 100000 1000000"), BENCH_RUNS (default 3),
# TEST_DATABASE_URL / PG_PROBE_PORT (which Postgres, see scripts/lib.sh).

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

BENCH_SIZES="${BENCH_SIZES:-1000 100000 1000000}"
BENCH_RUNS="${BENCH_RUNS:-3}"
BENCH_LOG="$REPO_ROOT/.local/bench-list-emulator.log"
BENCH_REPORT="$REPO_ROOT/.local/bench-list.md"
# Upper bound of any one request or query (seconds); 1 000 000 items take well under a minute.
BENCH_TIMEOUT="${BENCH_TIMEOUT:-900}"

# ---------------------------------------------------------------------------------------------
# helpers

now_ns() { date +%s%N; }

# median of the arguments (odd count: middle one; even: lower middle)
median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }
maxof() { printf '%s\n' "$@" | sort -g | tail -n 1; }

# calc EXPR: floating point arithmetic (awk), printed with %.6g unless a format is given
calc() { awk "BEGIN { printf \"${2:-%.6g}\", $1 }"; }

# psql on the bench database, bounded in time, failing on the first error
bpsql() {
	PGOPTIONS="-c statement_timeout=${BENCH_TIMEOUT}s" \
		timeout "$((BENCH_TIMEOUT + 30))" psql -w -X -q -v ON_ERROR_STOP=1 -d "$BENCH_DATABASE_URL" "$@"
}

# rss_reset PID / rss_peak_kib PID: reset the peak RSS (VmHWM) to the current RSS, read it
rss_reset() { echo 5 >"/proc/$1/clear_refs"; }
rss_peak_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# The list-favorites process the emulator started for this run: our runtime API address in
# its environment, the release binary as its executable.
find_list_pid() {
	local f pid exe
	for f in /proc/[0-9]*/environ; do
		pid=${f#/proc/}
		pid=${pid%/environ}
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
		[[ $exe == */release/list-favorites ]] || continue
		if grep -qaF "AWS_LAMBDA_RUNTIME_API=http://127.0.0.1:$EMU_PORT/" "$f" 2>/dev/null; then
			echo "$pid"
			return 0
		fi
	done
	return 1
}

# The emulator process itself (cargo-lambda), for its own peak RSS.
find_emulator_pid() {
	local pid exe
	for pid in $(process_tree "$EMU_PID"); do
		exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || continue
		if [[ $exe == */cargo-lambda ]]; then
			echo "$pid"
			return 0
		fi
	done
	return 1
}

# The select the list function runs (LIST_SELECT), for this user, in the list's order.
listing_select() {
	local src=shared/src/adapters/sql/postgres.rs sql
	sql=$(awk '/const LIST_SELECT: &str = r#"/ { on = 1; next } on && /"#;/ { sub(/"#;.*/, ""); print; exit } on { print }' "$src")
	[ -n "$sql" ] || die "could not read LIST_SELECT from $src (renamed?); update listing_select in $0"
	[[ $sql == *'$1'* ]] || die "LIST_SELECT in $src no longer has the \$1 user parameter; update listing_select in $0"
	sql=${sql//\$1/\'$BENCH_USER_ID\'::uuid}
	printf '%s\n order by created_at desc, id desc offset 0 limit all' "$sql"
}

# seed_to N: top the user's favorites up to N rows (ids fav-1..fav-N, fav-1 the newest).
seed_to() {
	local from=$1 to=$2
	say "seeding favorites $((from + 1))..$to"
	bpsql -v uid="$BENCH_USER_ID" -v lo="$((from + 1))" -v hi="$to" -f "$REPO_ROOT/scripts/seed-favorites.sql"
	bpsql -c 'vacuum analyze favorites'
	# Flush the seeding's dirty pages now rather than during the measurements.
	bpsql -c 'checkpoint' 2>/dev/null || warn "checkpoint refused (not a superuser?); the first runs may compete with the checkpointer"
}

# copy_once: seconds to COPY the listing select to psql's stdout (discarded); checks the count.
copy_once() {
	local n=$1 start end rows
	start=$(now_ns)
	rows=$(bpsql -c "copy ($LISTING_SQL) to stdout" | wc -l)
	end=$(now_ns)
	[ "$rows" -eq "$n" ] || die "COPY emitted $rows rows, expected $n"
	calc "($end - $start) / 1e9"
}

# list_once: seconds for GET /favorites?limit=all through the emulator; checks 200 and the tail.
list_once() {
	local out code secs size
	out=$(curl -sS --max-time "$BENCH_TIMEOUT" -o "$LIST_TAIL_FILE.body" \
		-w '%{http_code} %{time_total} %{size_download}' \
		-H "authorization: Bearer $TOKEN" "$BASE/favorites?limit=all" 2>&1) ||
		die "GET /favorites?limit=all failed: $out"
	read -r code secs size <<<"$out"
	[ "$code" = 200 ] || die "GET /favorites?limit=all answered HTTP $code"
	[ "$(tail -c 21 "$LIST_TAIL_FILE.body")" = '],"next_cursor":null}' ] ||
		die "the list body does not end with ],\"next_cursor\":null} (cut short?)"
	echo "$secs $size"
}

# nohop_once: seconds for the same request answered by a second function process through the
# minimal runtime API (no emulator relay); checks status, completeness and item count.
nohop_once() {
	local n=$1 timeout=${2:-$BENCH_TIMEOUT} out
	kill -0 "$NOHOP_PID" 2>/dev/null || die "the no-hop list-favorites process exited (see $DATA_DIR/nohop.log)"
	out=$(curl -sS --max-time "$((timeout + 30))" -X POST --data-binary 'limit=all' \
		"http://127.0.0.1:$RT_PORT/bench/invoke?timeout=$timeout") || die "the bench runtime API did not answer"
	python3 -c '
import json, sys
r = json.loads(sys.argv[1]); n = int(sys.argv[2])
if not (r.get("ok") and r.get("complete") and r.get("items") == n):
    sys.exit(f"no-hop list run failed: {r}")
print(r["seconds"], r["bytes"])' "$out" "$n"
}

# verify_list N: one unmeasured run that parses the whole body and counts the items.
verify_list() {
	local n=$1
	curl -sS --max-time "$BENCH_TIMEOUT" -H "authorization: Bearer $TOKEN" "$BASE/favorites?limit=all" |
		python3 -c '
import json, sys
n = int(sys.argv[1])
if n <= 100_000:
    doc = json.load(sys.stdin.buffer)
    data = doc["data"]
    ok = len(data) == n and doc["next_cursor"] is None and data[0]["id"] == "fav-1" and data[-1]["id"] == f"fav-{n}"
    ok = ok and all(a["created_at"] > b["created_at"] for a, b in zip(data, data[1:]))
    ok = ok and {d["type"] for d in data} == {"chart", "insight", "audience"}
    how = "parsed as JSON, ids and order checked"
    count = len(data)
else:
    mark = b"\"created_at\":"; count = 0; carry = b""; head = sys.stdin.buffer.read(9); tail = b""
    for block in iter(lambda: sys.stdin.buffer.read(1 << 20), b""):
        window = carry + block
        count += window.count(mark)
        carry = window[-(len(mark) - 1):]
        tail = (tail + block)[-64:]
    ok = head == b"{\"data\":[" and tail.endswith(b"],\"next_cursor\":null}") and count == n
    how = "streamed: head, tail and item count checked"
if not ok:
    sys.exit(f"the list body for N={n} is wrong ({how}; items: {count})")
print(f"N={n}: {count} items, {how}", file=sys.stderr)' "$n"
}

# ---------------------------------------------------------------------------------------------

step "Tools: project venv, cargo-lambda, curl, python3" "delete .venv and rerun to rebuild it"
ensure_venv
ensure_cargo_lambda
need_cmd curl
need_cmd python3
[ -w /proc/self/clear_refs ] || die "/proc/PID/clear_refs is not writable here (needed to reset peak RSS); run on Linux >= 4.0"
mkdir -p .local
say "CARGO_TARGET_DIR=$CARGO_TARGET_DIR"

step "Postgres" "set TEST_DATABASE_URL to an admin URL of a reachable Postgres, or unset it to get a throwaway server"
ensure_postgres

release_build migrate list-favorites

step "Database: favorites_bench_<random>, migrated" "does the TEST_DATABASE_URL role have CREATEDB?"
bench_database

step "Emulator: cargo lambda watch --release on 127.0.0.1" "see $BENCH_LOG"
DATA_DIR=$(mktemp -d "$REPO_ROOT/.local/bench-data.XXXXXX")
add_cleanup "rm -rf '$DATA_DIR'"
LIST_TAIL_FILE="$DATA_DIR/list"
JWT_SECRET_VALUE=$(random_hex 48)
start_emulator release "$BENCH_LOG" \
	DATABASE_URL="$BENCH_DATABASE_URL" \
	JWT_SECRET="$JWT_SECRET_VALUE" \
	BCRYPT_COST=4 \
	FAVORITES_DATA_DIR="$DATA_DIR" \
	RUST_LOG=warn
BASE=$EMULATOR_URL
EMU_PORT=${BASE##*:}
EMU_PID=$EMULATOR_PID

step "User: sign up and log in over HTTP" "see $BENCH_LOG"
bench_user "$BASE"
LISTING_SQL=$(listing_select)

step "Warm-up: start list-favorites under the emulator" "see $BENCH_LOG"
code=$(curl -sS --max-time 300 -o /dev/null -w '%{http_code}' -H "authorization: Bearer $TOKEN" "$BASE/favorites?limit=1") ||
	die "the warm-up request failed"
[ "$code" = 200 ] || die "the warm-up request answered HTTP $code"
LIST_PID=$(find_list_pid) || die "no list-favorites process with AWS_LAMBDA_RUNTIME_API=$BASE/... found after the warm-up"
EMULATOR_RSS_PID=$(find_emulator_pid) || EMULATOR_RSS_PID=""
say "list-favorites under the emulator: pid $LIST_PID; emulator: pid ${EMULATOR_RSS_PID:-?}"

step "No-hop function: list-favorites on a minimal runtime API" "see $DATA_DIR/nohop.log"
RT_PORT=$(free_port)
BENCH_TOKEN="$TOKEN" BENCH_INVOKE_TIMEOUT="$BENCH_TIMEOUT" python3 scripts/bench-list-runtime.py "$RT_PORT" \
	>"$DATA_DIR/runtime.log" 2>&1 </dev/null &
RT_PID=$!
add_cleanup "_stop_pid $RT_PID 'bench runtime API'"
for i in $(seq 1 50); do
	port_open 127.0.0.1 "$RT_PORT" && break
	kill -0 "$RT_PID" 2>/dev/null || die "the bench runtime API exited (see $DATA_DIR/runtime.log)"
	[ "$i" -lt 50 ] || die "the bench runtime API did not start (see $DATA_DIR/runtime.log)"
	sleep 0.2
done
env \
	DATABASE_URL="$BENCH_DATABASE_URL" \
	JWT_SECRET="$JWT_SECRET_VALUE" \
	FAVORITES_DATA_DIR="$DATA_DIR" \
	RUST_LOG=warn \
	AWS_LAMBDA_RUNTIME_API="http://127.0.0.1:$RT_PORT" \
	AWS_LAMBDA_FUNCTION_NAME=list-favorites \
	AWS_LAMBDA_FUNCTION_VERSION=1 \
	AWS_LAMBDA_FUNCTION_MEMORY_SIZE=4096 \
	"$CARGO_TARGET_DIR/release/list-favorites" >"$DATA_DIR/nohop.log" 2>&1 </dev/null &
NOHOP_PID=$!
add_cleanup "_stop_pid $NOHOP_PID 'no-hop list-favorites'"
out=$(nohop_once 0 60) || {
	tail_log "$DATA_DIR/nohop.log"
	die "the no-hop function did not answer"
}

# ---------------------------------------------------------------------------------------------
# measurements

declare -A PLAN COPY_RATE LIST_RATE NOHOP_RATE LIST_RSS NOHOP_RSS EMU_RSS BODY_BYTES COPY_S LIST_S NOHOP_S
seeded=0
for n in $BENCH_SIZES; do
	step "N = $n: seed, then COPY / list / no-hop list x $BENCH_RUNS" "see $BENCH_LOG and $DATA_DIR/nohop.log"
	[ "$n" -gt "$seeded" ] || die "BENCH_SIZES must increase (got $n after $seeded)"
	seed_to "$seeded" "$n"
	seeded=$n

	verify_list "$n"
	PLAN[$n]=$(bpsql -At -c "explain $LISTING_SQL" | awk 'NR == 1' | sed -E 's/ +\(cost=.*//; s/^ *(-> *)?//')
	copy_once "$n" >/dev/null # warm the cache for every reader alike

	copy_times=() list_times=() nohop_times=() list_rss=() nohop_rss=() emu_rss=()
	for run in $(seq 1 "$BENCH_RUNS"); do
		copy_times+=("$(copy_once "$n")")

		rss_reset "$LIST_PID"
		[ -z "$EMULATOR_RSS_PID" ] || rss_reset "$EMULATOR_RSS_PID"
		out=$(list_once)
		read -r secs size <<<"$out"
		list_times+=("$secs")
		list_rss+=("$(rss_peak_kib "$LIST_PID")")
		[ -z "$EMULATOR_RSS_PID" ] || emu_rss+=("$(rss_peak_kib "$EMULATOR_RSS_PID")")
		BODY_BYTES[$n]=$size

		rss_reset "$NOHOP_PID"
		out=$(nohop_once "$n")
		read -r secs _ <<<"$out"
		nohop_times+=("$secs")
		nohop_rss+=("$(rss_peak_kib "$NOHOP_PID")")
		say "N=$n run $run: COPY ${copy_times[-1]}s, list ${list_times[-1]}s (RSS ${list_rss[-1]} KiB), no-hop ${nohop_times[-1]}s (RSS ${nohop_rss[-1]} KiB)"
	done
	kill -0 "$LIST_PID" 2>/dev/null || die "the list-favorites process $LIST_PID is gone (restarted?); its RSS figures would be wrong"

	COPY_S[$n]=$(median "${copy_times[@]}")
	LIST_S[$n]=$(median "${list_times[@]}")
	NOHOP_S[$n]=$(median "${nohop_times[@]}")
	COPY_RATE[$n]=$(calc "$n / ${COPY_S[$n]}" '%.0f')
	LIST_RATE[$n]=$(calc "$n / ${LIST_S[$n]}" '%.0f')
	NOHOP_RATE[$n]=$(calc "$n / ${NOHOP_S[$n]}" '%.0f')
	LIST_RSS[$n]=$(maxof "${list_rss[@]}")
	NOHOP_RSS[$n]=$(maxof "${nohop_rss[@]}")
	EMU_RSS[$n]=$([ "${#emu_rss[@]}" -eq 0 ] && echo "" || maxof "${emu_rss[@]}")
done
step_done

# ---------------------------------------------------------------------------------------------
# report

sizes=($BENCH_SIZES)
first=${sizes[0]}
last=${sizes[-1]}
group() { sed -E ':a; s/([0-9])([0-9]{3})($| )/\1 \2\3/; ta' <<<"$1"; }
mib() { calc "$1 / 1024" '%.1f'; }

{
	echo "bench-list: $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)," \
		"$(psql -w -X -At -d "$BENCH_DATABASE_URL" -c 'show server_version') Postgres, runs per figure: $BENCH_RUNS"
	echo
	echo "| N | COPY rows/s | list items/s | list ÷ COPY | peak RSS (MiB) | RSS ÷ RSS at $(group "$first") |"
	echo "|---:|---:|---:|---:|---:|---:|"
	for n in "${sizes[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s |\n' "$(group "$n")" "$(group "${COPY_RATE[$n]}")" "$(group "${LIST_RATE[$n]}")" \
			"$(calc "${LIST_RATE[$n]} / ${COPY_RATE[$n]}" '%.2f')" "$(mib "${LIST_RSS[$n]}")" \
			"$(calc "${LIST_RSS[$n]} / ${LIST_RSS[$first]}" '%.2f')"
	done
	echo
	echo "Details (medians of the times, maxima of the RSS; the no-hop run is the same binary on a minimal runtime API instead of the emulator):"
	echo
	echo "| N | body (MiB) | COPY (s) | list via emulator (s) | list MiB/s | no-hop list (s) | no-hop items/s | no-hop ÷ COPY | no-hop peak RSS (MiB) | emulator peak RSS (MiB) |"
	echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for n in "${sizes[@]}"; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$(group "$n")" \
			"$(calc "${BODY_BYTES[$n]} / 1048576" '%.1f')" "$(calc "${COPY_S[$n]}" '%.3f')" "$(calc "${LIST_S[$n]}" '%.3f')" \
			"$(calc "${BODY_BYTES[$n]} / 1048576 / ${LIST_S[$n]}" '%.1f')" "$(calc "${NOHOP_S[$n]}" '%.3f')" \
			"$(group "${NOHOP_RATE[$n]}")" "$(calc "${NOHOP_RATE[$n]} / ${COPY_RATE[$n]}" '%.2f')" \
			"$(mib "${NOHOP_RSS[$n]}")" "$([ -n "${EMU_RSS[$n]}" ] && mib "${EMU_RSS[$n]}" || echo "?")"
	done
	echo
	for n in "${sizes[@]}"; do echo "COPY plan at $(group "$n"): ${PLAN[$n]}"; done
	echo
	rss_ratio=$(calc "${LIST_RSS[$last]} / ${LIST_RSS[$first]}" '%.2f')
	rate_ratio=$(calc "${LIST_RATE[$last]} / ${COPY_RATE[$last]}" '%.2f')
	min_rate_ratio=$(for n in "${sizes[@]}"; do calc "${LIST_RATE[$n]} / ${COPY_RATE[$n]}" '%.4f'; echo; done | sort -g | head -n 1)
	if awk "BEGIN { exit !($rss_ratio <= 1.25) }"; then verdict=met; else verdict=MISSED; fi
	echo "- memory target (peak RSS at $(group "$last") <= 1.25 x at $(group "$first")): **$verdict**, ratio $rss_ratio"
	if awk "BEGIN { exit !($min_rate_ratio >= 0.5) }"; then verdict=met; else verdict=MISSED; fi
	echo "- throughput target (list items/s >= 0.5 x COPY rows/s, every N): **$verdict**, lowest ratio $(calc "$min_rate_ratio" '%.2f'), at $(group "$last"): $rate_ratio"
} | tee "$BENCH_REPORT"
say "report written to $BENCH_REPORT"

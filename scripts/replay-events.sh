#!/usr/bin/env bash
# make replay-events: every API Gateway sample event (events/<function>/<case>-<status>.json)
# sent to its function through the Lambda runtime emulator with `cargo lambda invoke`, the way
# a developer debugs one function; the answer's statusCode must be the status in the file name.
# shared/tests/events.rs does the same in process; this replays the JSON through the runtime
# API and lambda_http's event parsing, as Lambda does.
#
# It runs its own emulator rather than using make test's e2e one: the events carry tokens
# signed with events/fixture.json's key for the fixture user, and their outcomes (201 for a new
# signup, 409 for the fixture email, 201 for the first add of fixture-chart) need a database
# that holds that user and nothing the e2e tests left behind. So: a fresh database
# favorites_events_<random>, migrated, the fixture user signed up through the emulator and
# given the fixture id, and `cargo lambda watch` with the fixture key; all dropped on exit.
#
#   scripts/replay-events.sh                     (make test runs it after the tests)
#   scripts/replay-events.sh events/login/*.json (some events only)
#
# Needs Postgres: TEST_DATABASE_URL, else the one on 127.0.0.1:5432, else a throwaway one.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FIXTURE=events/fixture.json
LOG="$REPO_ROOT/.local/replay-emulator.log"

fixture() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$FIXTURE" "$1"; }

step "Replay events: tools, Postgres, debug build" "delete .venv and rerun to rebuild it"
ensure_venv
ensure_cargo_lambda
need_cmd curl
ensure_postgres
# The same build as make test's (a no-op after it); the emulator runs these binaries.
cargo build --workspace --locked

step "Replay events: database with the fixture user, emulator with the fixture key" "see $LOG"
mkdir -p .local
fresh_database favorites_events debug
db_name=$FRESH_DB_NAME
db_url=$FRESH_DB_URL

data_dir=$(mktemp -d "$REPO_ROOT/.local/replay-data.XXXXXX")
add_cleanup "rm -rf '$data_dir'"
# The events expect neither the cache nor enrichment: settings exported in the caller's shell
# must not switch them on.
unset REDIS_URL ENRICHMENT_URL ENRICHMENT_API_KEY
# REST API (v1) events carry the stage in requestContext.path, as deployed (template.yaml).
start_emulator debug "$LOG" \
	DATABASE_URL="$db_url" \
	JWT_SECRET="$(fixture jwt_secret)" \
	BCRYPT_COST=4 \
	FAVORITES_DATA_DIR="$data_dir" \
	AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH=true
port=${EMULATOR_URL##*:}

# The fixture user: signed up through the API under a throwaway email (so the password hash is
# the application's own), then copied to the fixture id and email.
temp_email="replay-$(random_hex 8)@example.com"
credentials=$(python3 -c 'import json, sys; print(json.dumps({"email": sys.argv[1], "password": sys.argv[2]}))' \
	"$temp_email" "$(fixture password)")
code=$(curl -sS --max-time 120 -o /dev/null -w '%{http_code}' -X POST "$EMULATOR_URL/signup" \
	-H 'content-type: application/json' -d "$credentials") || die "POST /signup failed (see $LOG)"
[ "$code" = 201 ] || die "POST /signup of the fixture user answered HTTP $code (see $LOG)"
if ! psql -w -X -q -v ON_ERROR_STOP=1 -d "$db_url" \
	-v id="$(fixture user_id)" -v email="$(fixture email)" -v temp="$temp_email" >/dev/null <<'SQL'; then
insert into users (id, email, password_hash) select :'id', :'email', password_hash from users where email = :'temp';
delete from users where email = :'temp';
SQL
	die "could not create the fixture user in $db_name"
fi
say "fixture user $(fixture email) ($(fixture user_id)) in $db_name"

step "Replay events: cargo lambda invoke of each events/*/*.json, status as named" "reproduce one with: cargo lambda watch (make run), then cargo lambda invoke --data-file <event> <function>"
if [ "$#" -gt 0 ]; then
	events=("$@")
else
	mapfile -t events < <(find events -mindepth 2 -maxdepth 2 -name '*.json' | sort)
fi
[ "${#events[@]}" -gt 0 ] || die "no events found under events/"
out=$(mktemp)
headers=$(mktemp)
add_cleanup "rm -f '$out' '$headers'"

# answer_status MODE FILE [STATUS HEADERS]: the status of a function's answer, and for an error
# its JSON:API body's status too; prints "<status>" or "<status> <what is wrong>". Every answer
# must carry exactly one X-Request-ID header.
answer_status() {
	python3 - "$@" <<'PY'
import base64, json, sys
mode, path = sys.argv[1], sys.argv[2]
raw = open(path, "rb").read()
if mode == "buffered":
    # The API Gateway proxy response `cargo lambda invoke --output-format json` prints.
    answer = json.loads(raw)
    status = int(answer["statusCode"])
    body = answer.get("body") or ""
    body = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
    headers = {k.lower(): v for k, v in (answer.get("multiValueHeaders") or {}).items()}
    request_ids = headers.get("x-request-id") or []
else:
    # Streamed: the emulator answers the invoke request the way a function URL does, with the
    # status and headers of the stream's metadata prelude, and the body.
    status, body = int(sys.argv[3]), raw
    lines = open(sys.argv[4], encoding="latin-1").read().splitlines()
    request_ids = [l.split(":", 1)[1].strip() for l in lines if l.lower().startswith("x-request-id:")]
problem = ""
if len(request_ids) != 1:
    problem = f"{len(request_ids)} X-Request-ID headers instead of one"
elif status >= 400:
    try:
        if json.loads(body)["errors"][0]["status"] != str(status):
            problem = "JSON:API error status differs"
    except Exception:
        problem = "body is not a JSON:API error document"
print(f"{status} {problem}".strip())
PY
}

failures=0
for event in "${events[@]}"; do
	function=$(basename "$(dirname "$event")")
	expected=$(basename "$event" .json)
	expected=${expected##*-}
	if grep -q run_streaming "functions/$function/src/main.rs" 2>/dev/null; then
		# `cargo lambda invoke` cannot show a streamed answer's status: it prints the body of a
		# 2xx and fails on any other status ("invalid error payload missing field errorType"),
		# taking the emulator's HTTP status for a function error. So send the same invoke
		# request it sends, and read the status from the HTTP answer.
		code=$(curl -sS --max-time 120 -o "$out" -D "$headers" -w '%{http_code}' -X POST \
			"http://127.0.0.1:$port/2015-03-31/functions/$function/invocations" \
			-H 'content-type: application/json' --data-binary "@$event") || code=000
		if ! grep -qi '^lambda-runtime-function-response-mode: *streaming' "$headers"; then
			got="$code the answer was not streamed"
		else
			got=$(answer_status streamed "$out" "$code" "$headers")
		fi
	elif cargo lambda invoke --invoke-address 127.0.0.1 --invoke-port "$port" --output-format json \
		--data-file "$event" "$function" >"$out" 2>&1; then
		got=$(answer_status buffered "$out" 2>&1) || got="unreadable answer"
	else
		got="cargo lambda invoke failed"
	fi
	if [ "$got" = "$expected" ]; then
		printf 'ok   %-48s %s\n' "$event" "$got" >&2
	else
		printf 'FAIL %-48s expected %s, got %s: %s\n' "$event" "$expected" "$got" "$(head -c 400 "$out")" >&2
		failures=$((failures + 1))
	fi
done
[ "$failures" -eq 0 ] || die "$failures of ${#events[@]} events did not get the status their name promises (emulator log: $LOG)"
say "all ${#events[@]} events got the status their name promises"
step_done

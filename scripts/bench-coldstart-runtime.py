#!/usr/bin/env python3
"""Cold starts for scripts/bench-coldstart.sh: a minimal Lambda Runtime API that starts the functions.

Lambda starts a function's process, the runtime client in it asks the runtime API for the
next invocation (GET .../invocation/next) once its initialisation is done, and posts the
response back. This program plays the Lambda side of that on 127.0.0.1, one process at a
time: it spawns the function binary with exactly the environment it is given plus
AWS_LAMBDA_RUNTIME_API, hands it one event, reads the whole response (buffered, or streamed in
chunks), then kills the process. Every cold start gets a runtime API of its own on a new port,
so that a request the previous, killed process left in flight cannot take the next one's
event. Per cold start it records, from just before the spawn:

  init    until the function's first GET .../invocation/next (what Lambda's INIT phase covers)
  answer  until the last byte of the response to that first invocation has been read

Standard library only; the functions' output goes to one log file per function.

    bench-coldstart-runtime.py invoke CASE [VAR=VALUE...]
        one cold start; prints {"status", "body", "init_ms", "answer_ms"} as JSON
    bench-coldstart-runtime.py measure RUNS CASES_FILE [VAR=VALUE...]
        RUNS + 1 rounds (the first unmeasured) of one cold start per case, the cases in a new
        random order each round so that drift on the machine hits every function alike;
        prints "name" and p50, p90 and max (ms, nearest rank) of init, answer and invocation
        (answer - init: the first invocation alone) per case, tab-separated, and writes every
        figure to CASES_FILE.json

A CASE is one line of tab-separated fields (CASES_FILE holds one per line):

    name  binary  env_file  log_file  expect  event  [patch]

env_file holds the function's whole environment, one VAR=VALUE per line. expect is the
statusCode the answer must carry, or - for a function that answers a plain JSON document
(migrate). event is a JSON file (an API Gateway event of events/) or {}; patch, a JSON object
merged into it: a "body" object is merged into the event's JSON body, "headers" and
"queryStringParameters" into both their single- and multi-value forms. Then every {NAME} in
the event is replaced by the VALUE of a VAR=VALUE argument, and {run} by the round number
(0 is the unmeasured first round).

The runtime API acknowledges every TCP segment at once and sends without Nagle's algorithm
(scripts/runtime_api.py), so that no delayed-ACK stall is counted as the function's time;
BENCH_RUNTIME_QUICKACK=0 keeps the kernel's defaults.

Endpoints served: GET /2018-06-01/runtime/invocation/next, POST
/2018-06-01/runtime/invocation/<id>/response|error, POST /2018-06-01/runtime/init/error.
"""

import base64
import json
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import ThreadingHTTPServer

from runtime_api import PREFIX, RuntimeApiHandler

QUICKACK = os.environ.get("BENCH_RUNTIME_QUICKACK", "1") == "1"
# Lambda's own bound on INIT is 10 s; an answer gets 30 s (a bcrypt at cost 12 takes 0.3 s).
INIT_TIMEOUT = float(os.environ.get("BENCH_INIT_TIMEOUT", "10"))
ANSWER_TIMEOUT = float(os.environ.get("BENCH_ANSWER_TIMEOUT", "30"))


class Invocation:
    """One cold start: the event to hand over and what the function did with it."""

    def __init__(self, event: bytes):
        self.event = event
        self.request_id = str(uuid.uuid4())
        self.handed = False
        self.next_at: float | None = None
        self.done_at: float | None = None
        self.response = b""
        self.error: str | None = None
        self.finished = threading.Event()  # answered, or failed
        self.over = threading.Event()  # the process is gone: parked requests give up


class Runtime(ThreadingHTTPServer):
    """The runtime API of one cold start, on a free port of 127.0.0.1."""

    daemon_threads = True

    def __init__(self, inv: "Invocation"):
        super().__init__(("127.0.0.1", 0), Handler)
        self.inv = inv
        self.address = f"127.0.0.1:{self.server_address[1]}"


class Handler(RuntimeApiHandler):
    disable_nagle_algorithm = QUICKACK  # and quick ACKs: see scripts/runtime_api.py
    server: Runtime

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except OSError:  # the function was killed while we talked to it
            self.close_connection = True

    def do_GET(self):
        now = time.perf_counter()
        if self.path == "/2020-01-01/extension/event/next":
            # The function's shutdown extension waits for SHUTDOWN; none comes before the kill.
            self.server.inv.over.wait(ANSWER_TIMEOUT)
            self.close_connection = True
            return
        if self.path != f"{PREFIX}/invocation/next":
            self.reply(404, b'{"error":"not found"}')
            return
        inv = self.server.inv
        if inv.handed:
            # The function asks for its next invocation: there is none, it is about to be
            # killed. Park the request until then, like Lambda freezing the sandbox.
            inv.over.wait(ANSWER_TIMEOUT)
            self.close_connection = True
            return
        inv.handed = True
        inv.next_at = now
        self.reply(
            200,
            inv.event,
            {
                "lambda-runtime-aws-request-id": inv.request_id,
                "lambda-runtime-deadline-ms": str(int(time.time() * 1000) + int(ANSWER_TIMEOUT * 1000)),
                "lambda-runtime-invoked-function-arn": "arn:aws:lambda:us-east-1:123456789012:function:bench",
                "lambda-runtime-trace-id": "Root=1-00000000-000000000000000000000000;Sampled=0",
            },
        )

    def do_POST(self):
        inv = self.server.inv
        path = self.path
        parts: list[bytes] = []
        try:
            self.read_body(parts.append)
            body, error = b"".join(parts), None
        except (OSError, ValueError) as e:
            body, error = b"", f"reading the request: {e}"
        now = time.perf_counter()
        if path == "/2020-01-01/extension/register":
            # As Lambda answers the function's graceful-shutdown extension (shared/src/shutdown.rs).
            body = json.dumps({"functionName": "bench", "functionVersion": "$LATEST", "handler": "bootstrap"})
            self.reply(200, body.encode(), {"lambda-extension-identifier": str(uuid.uuid4())})
            return
        if not inv.finished.is_set():
            if path == f"{PREFIX}/init/error":
                inv.error = "init error: " + body.decode("utf-8", "replace")[:2000]
            elif path == f"{PREFIX}/invocation/{inv.request_id}/error":
                inv.error = "function error: " + body.decode("utf-8", "replace")[:2000]
            elif path == f"{PREFIX}/invocation/{inv.request_id}/response":
                inv.error = error
                inv.response = body
                inv.done_at = now
            else:
                self.reply(404, b'{"error":"not found"}')
                return
        self.reply(202, b'{"status":"OK"}')
        inv.finished.set()


# ---------------------------------------------------------------------------------------------
# cases and events


def merge(base: dict, patch: dict) -> dict:
    out = dict(base)
    for k, v in patch.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def build_event(source: str, patch: dict) -> str:
    event = {} if source == "{}" else json.load(open(source, encoding="utf-8"))
    patch = dict(patch)
    if isinstance(patch.get("body"), dict):
        current = json.loads(event.get("body") or "{}")
        event["body"] = json.dumps(merge(current, patch.pop("body")))
    for single, multi in (("headers", "multiValueHeaders"), ("queryStringParameters", "multiValueQueryStringParameters")):
        if single in patch:
            values = merge(event.get(single) or {}, patch.pop(single))
            event[single] = values
            event[multi] = {k: [v] for k, v in values.items()}
    return json.dumps(merge(event, patch))


class Case:
    def __init__(self, line: str):
        fields = line.rstrip("\n").split("\t")
        if len(fields) not in (6, 7):
            sys.exit(f"a case has 6 or 7 tab-separated fields, got {len(fields)}: {line!r}")
        self.name, self.binary, env_file, self.log, self.expect, event = fields[:6]
        self.event = build_event(event, json.loads(fields[6]) if len(fields) == 7 else {})
        self.env = {}
        for env_line in open(env_file, encoding="utf-8").read().splitlines():
            name, sep, value = env_line.partition("=")
            if not sep or not name:
                sys.exit(f"{env_file}: not VAR=VALUE: {env_line!r}")
            self.env[name] = value


def substitute(text: str, values: dict) -> str:
    for name, value in values.items():
        text = text.replace("{" + name + "}", value)
    return text


def answer_of(response: bytes) -> tuple[int | None, bytes]:
    """(statusCode, body) of a buffered API Gateway response or of a streamed one (a JSON
    prelude, 8 NUL bytes, then the body); (None, response) for a plain JSON document."""
    prelude, sep, streamed = response.partition(b"\0" * 8)
    try:
        doc = json.loads(prelude)
    except ValueError:
        return None, response
    if not isinstance(doc, dict) or "statusCode" not in doc:
        return None, response
    if sep:
        return doc["statusCode"], streamed
    body = (doc.get("body") or "").encode()
    if doc.get("isBase64Encoded"):
        body = base64.b64decode(body)
    return doc["statusCode"], body


def tail(path: str, lines: int = 30) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return "(no log)"


def cold_start(case: Case, values: dict) -> dict:
    """Spawns the function, hands it the case's event, kills it once it has answered."""
    inv = Invocation(substitute(case.event, values).encode())
    runtime = Runtime(inv)
    # shutdown() below waits for the serving loop to look at its flag: look often.
    threading.Thread(target=runtime.serve_forever, args=(0.02,), daemon=True).start()
    env = {**case.env, "AWS_LAMBDA_RUNTIME_API": runtime.address}
    problem = None
    with open(case.log, "ab") as log:
        started = time.perf_counter()
        proc = subprocess.Popen([case.binary], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            while not inv.finished.wait(0.005):
                waited = time.perf_counter() - started
                if proc.poll() is not None:
                    problem = f"exited with status {proc.returncode} before answering"
                elif inv.next_at is None and waited > INIT_TIMEOUT:
                    problem = f"did not ask for an invocation within {INIT_TIMEOUT:.0f}s"
                elif waited > INIT_TIMEOUT + ANSWER_TIMEOUT:
                    problem = f"did not answer within {ANSWER_TIMEOUT:.0f}s"
                if problem:
                    break
        finally:
            proc.kill()
            proc.wait(10)
            inv.over.set()
            runtime.shutdown()
            runtime.server_close()
    problem = problem or inv.error
    status, body = answer_of(inv.response) if problem is None else (None, b"")
    if problem is None and case.expect != str(status if status is not None else "-"):
        problem = f"answered status {status}, expected {case.expect}: {body[:300]!r}"
    if problem:
        sys.exit(f"{case.name} (round {values.get('run', '-')}): {problem}\n--- last lines of {case.log} ---\n{tail(case.log)}")
    return {
        "status": status,
        "body": body.decode("utf-8", "replace"),
        "init_ms": (inv.next_at - started) * 1000,
        "answer_ms": (inv.done_at - started) * 1000,
    }


def nearest_rank(values: list, p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def main() -> None:
    # A TERM from the script's cleanup or `timeout` still kills the function being measured.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if len(sys.argv) < 3 or sys.argv[1] not in ("invoke", "measure"):
        sys.exit(__doc__)
    if sys.argv[1] == "invoke":
        values = dict(arg.split("=", 1) for arg in sys.argv[3:])
        print(json.dumps(cold_start(Case(sys.argv[2]), {**values, "run": "0"})))
        return
    runs, cases_file = int(sys.argv[2]), sys.argv[3]
    values = dict(arg.split("=", 1) for arg in sys.argv[4:])
    cases = [Case(line) for line in open(cases_file, encoding="utf-8") if line.strip()]
    figures = {case.name: {"init_ms": [], "answer_ms": [], "invocation_ms": []} for case in cases}
    order = list(cases)
    for run in range(runs + 1):
        random.shuffle(order)
        for case in order:
            result = cold_start(case, {**values, "run": str(run)})
            if run > 0:
                figures[case.name]["init_ms"].append(result["init_ms"])
                figures[case.name]["answer_ms"].append(result["answer_ms"])
                figures[case.name]["invocation_ms"].append(result["answer_ms"] - result["init_ms"])
        print(f"round {run}/{runs} done{' (unmeasured)' if run == 0 else ''}", file=sys.stderr, flush=True)
    with open(cases_file + ".json", "w", encoding="utf-8") as f:
        json.dump(figures, f, indent=1)
    for case in cases:
        row = [case.name]
        for key in ("init_ms", "answer_ms", "invocation_ms"):
            ms = figures[case.name][key]
            row += [f"{nearest_rank(ms, 50):.1f}", f"{nearest_rank(ms, 90):.1f}", f"{max(ms):.1f}"]
        print("\t".join(row))


if __name__ == "__main__":
    main()

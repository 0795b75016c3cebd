#!/usr/bin/env python3
"""A minimal Lambda Runtime API for scripts/bench-list.sh: the list function without the emulator.

Under `cargo lambda watch` every byte of a streamed response makes an extra HTTP hop: the
function POSTs it to the emulator's runtime API, which relays it to the HTTP client. To
measure what that hop costs, bench-list.sh also starts a second list-favorites process with
AWS_LAMBDA_RUNTIME_API pointing here. This server hands it one API Gateway v2 event per
`POST /bench/invoke[?timeout=SECONDS]` (body: the query string, default limit=all; the same event shape the emulator sends), reads the streamed response
(chunked, discarding it while counting bytes and items) and answers the control request with
JSON: {"ok", "seconds", "bytes", "items", "complete", "error"}.

`seconds` runs from handing the event to the function until the last chunk of its response
has been read. Bound to 127.0.0.1 only. Standard library only.

    BENCH_TOKEN=<jwt> bench-list-runtime.py PORT

With BENCH_RUNTIME_QUICKACK=1 (scripts/bench-cache.sh) this server acknowledges every TCP
segment at once (TCP_QUICKACK before each read) and sends without Nagle's algorithm
(TCP_NODELAY). The function's runtime client sends with Nagle's algorithm on and writes a
streamed response in several small pieces, so against a receiver that delays its ACKs (Linux
by default, up to 40 ms) a piece can wait for the ACK of the previous one; with quick ACKs
`seconds` is the function's own time, without those stalls.

Runtime API endpoints served: GET /2018-06-01/runtime/invocation/next,
POST /2018-06-01/runtime/invocation/<id>/response|error, POST /2018-06-01/runtime/init/error;
and of the Extensions API, as Lambda answers the function's graceful-shutdown extension
(shared/src/shutdown.rs): POST /2020-01-01/extension/register, and
GET /2020-01-01/extension/event/next, which never answers (no events are subscribed).
"""

import json
import os
import queue
import sys
import threading
import time
import uuid
from http.server import ThreadingHTTPServer

from runtime_api import PREFIX, RuntimeApiHandler

QUICKACK = os.environ.get("BENCH_RUNTIME_QUICKACK") == "1"
ITEM_MARK = b'"created_at":'
JSON_END = b'],"next_cursor":null}'

events: "queue.Queue[tuple[str, bytes]]" = queue.Queue()
results: dict = {}
results_lock = threading.Condition()
init_errors: list = []


def v2_event(token: str, raw_query: str) -> bytes:
    params = dict(p.split("=", 1) for p in raw_query.split("&") if "=" in p)
    now = time.time()
    return json.dumps(
        {
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/favorites",
            "rawQueryString": raw_query,
            "headers": {
                "authorization": f"Bearer {token}",
                "host": "127.0.0.1",
                "user-agent": "bench-list-runtime",
                "accept": "*/*",
            },
            "queryStringParameters": params,
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "bench",
                "domainName": "127.0.0.1",
                "domainPrefix": "bench",
                "http": {
                    "method": "GET",
                    "path": "/favorites",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1",
                    "userAgent": "bench-list-runtime",
                },
                "requestId": str(uuid.uuid4()),
                "routeKey": "$default",
                "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            },
            "isBase64Encoded": False,
        }
    ).encode()


class Handler(RuntimeApiHandler):
    disable_nagle_algorithm = QUICKACK  # and quick ACKs: see scripts/runtime_api.py

    def read_counted_body(self) -> tuple[int, int, bytes, bytes, dict]:
        """Reads a chunked or sized request body; returns (bytes, items, head, tail, trailers)."""
        total = items = 0
        head = b""
        tail = b""
        carry = b""

        def take(data: bytes) -> None:
            nonlocal total, items, head, tail, carry
            total += len(data)
            if len(head) < 512:
                head += data[: 512 - len(head)]
            window = carry + data
            items += window.count(ITEM_MARK)
            # a mark may straddle two chunks: keep its possible start (shorter than a mark,
            # so no mark is ever counted twice)
            carry = window[-(len(ITEM_MARK) - 1) :]
            tail = (tail + data)[-256:]

        trailers = self.read_body(take)
        return total, items, head, tail, trailers

    def do_GET(self):
        if self.path == "/2020-01-01/extension/event/next":
            threading.Event().wait()  # a daemon thread: it ends with the server
        if self.path == f"{PREFIX}/invocation/next":
            request_id, event = events.get()
            with results_lock:
                results[request_id] = {"started": time.perf_counter()}
            self.reply(
                200,
                event,
                {
                    "lambda-runtime-aws-request-id": request_id,
                    # the same far-future-enough deadline for every invocation: 15 minutes
                    "lambda-runtime-deadline-ms": str(int(time.time() * 1000) + 900_000),
                    "lambda-runtime-invoked-function-arn": "arn:aws:lambda:us-east-1:123456789012:function:list-favorites",
                },
            )
            return
        self.reply(404, b'{"error":"not found"}')

    def do_POST(self):
        path = self.path
        if path == "/2020-01-01/extension/register":
            body = json.dumps({"functionName": "list-favorites", "functionVersion": "$LATEST", "handler": "bootstrap"})
            self.reply(200, body.encode(), {"lambda-extension-identifier": str(uuid.uuid4())})
            return
        if path.split("?", 1)[0] == "/bench/invoke":
            n = int(self.headers.get("content-length", "0"))
            query = self.rfile.read(n).decode() if n else "limit=all"
            timeout = float(os.environ.get("BENCH_INVOKE_TIMEOUT", "900"))
            if "?timeout=" in path:
                timeout = float(path.split("?timeout=", 1)[1])
            request_id = str(uuid.uuid4())
            events.put((request_id, v2_event(os.environ["BENCH_TOKEN"], query)))
            deadline = time.monotonic() + timeout
            with results_lock:
                while "done" not in results.get(request_id, {}):
                    left = deadline - time.monotonic()
                    if left <= 0 or init_errors:
                        break
                    results_lock.wait(min(left, 1.0))
                result = results.pop(request_id, {})
            if "done" not in result:
                body = {"ok": False, "error": "; ".join(init_errors) or f"no response within {timeout:.0f}s"}
            else:
                body = result["done"]
            self.reply(200, json.dumps(body).encode())
            return
        if path == f"{PREFIX}/init/error":
            _, _, head, _, _ = self.read_counted_body()
            init_errors.append("init error: " + head.decode("utf-8", "replace"))
            with results_lock:
                results_lock.notify_all()
            self.reply(202, b'{"status":"OK"}')
            return
        if path.startswith(f"{PREFIX}/invocation/") and path.endswith(("/response", "/error")):
            request_id = path[len(f"{PREFIX}/invocation/") :].rsplit("/", 1)[0]
            try:
                total, items, head, tail, trailers = self.read_counted_body()
                error = None
            except Exception as e:  # noqa: BLE001 - reported to the control request
                total, items, head, tail, trailers, error = 0, 0, b"", b"", {}, f"reading the response: {e}"
            finished = time.perf_counter()
            if path.endswith("/error"):
                error = "function error: " + head.decode("utf-8", "replace")
            elif trailers.get("lambda-runtime-function-error-type"):
                error = "stream error trailer: " + trailers.get("lambda-runtime-function-error-type", "")
            # streamed response: JSON prelude {"statusCode":...}, 8 NUL bytes, then the body
            status = None
            if head.startswith(b"{"):
                try:
                    status = json.loads(head.split(b"\0" * 8, 1)[0]).get("statusCode")
                except ValueError:
                    pass
            with results_lock:
                started = results.get(request_id, {}).get("started", finished)
                results[request_id] = {
                    "done": {
                        "ok": error is None and status == 200,
                        "status": status,
                        "seconds": finished - started,
                        "bytes": total,
                        "items": items,
                        "complete": tail.endswith(JSON_END),
                        "error": error,
                    }
                }
                results_lock.notify_all()
            self.reply(202, b'{"status":"OK"}')
            return
        self.reply(404, b'{"error":"not found"}')


def main() -> None:
    port = int(sys.argv[1])
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"bench runtime API on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

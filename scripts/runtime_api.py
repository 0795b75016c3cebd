"""What the benchmarks' minimal Lambda Runtime APIs share (scripts/bench-list-runtime.py and
scripts/bench-coldstart-runtime.py import it): an HTTP/1.1 request handler that answers with
JSON and reads a function's request bodies, sized or chunked (a streamed response arrives
chunked, with trailers). Standard library only.

One switch, `disable_nagle_algorithm` on the subclass: when true the handler sends without
Nagle's algorithm (TCP_NODELAY) and acknowledges every segment it receives at once
(TCP_QUICKACK before each read). The functions' runtime client sends with Nagle's algorithm on
and writes a streamed response in several small pieces, so against a receiver that delays its
ACKs (Linux by default, up to 40 ms) a piece can wait for the ACK of the previous one; with the
switch on, what is measured is the function's own time, without those stalls.
"""

import socket
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler

PREFIX = "/2018-06-01/runtime"


class RuntimeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = False

    def log_message(self, *args):  # quiet
        pass

    def quickack(self) -> None:
        """With the switch on, ACK what arrives next at once (Linux resets this after a while)."""
        if self.disable_nagle_algorithm:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)

    def handle_one_request(self) -> None:
        self.quickack()
        super().handle_one_request()

    def reply(self, status: int, body: bytes, headers: dict | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def read_body(self, take: Callable[[bytes], None]) -> dict:
        """Reads the request body, sized or chunked, handing each piece to `take` as it
        arrives; returns the trailers (lower-case names)."""
        trailers: dict = {}
        if self.headers.get("transfer-encoding", "").lower() != "chunked":
            n = int(self.headers.get("content-length", "0"))
            if n:
                take(self.rfile.read(n))
            return trailers
        rfile = self.rfile
        while True:
            self.quickack()
            line = rfile.readline(1024)
            if not line:
                raise ConnectionError("connection closed inside a chunked body")
            size = int(line.split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while True:
                    t = rfile.readline(65536)
                    if t in (b"\r\n", b"\n", b""):
                        return trailers
                    k, _, v = t.decode("latin-1").partition(":")
                    trailers[k.strip().lower()] = v.strip()
            remaining = size
            while remaining:
                self.quickack()
                data = rfile.read(min(remaining, 1 << 20))
                if not data:
                    raise ConnectionError("connection closed inside a chunk")
                remaining -= len(data)
                take(data)
            rfile.readline(16)

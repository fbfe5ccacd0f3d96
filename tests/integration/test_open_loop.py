"""tools/open_loop.py (the soak's load generator) against a real HTTP server on loopback."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import open_loop  # tools/ is not a package

STALL_AT, STALL_SECONDS = 50, 0.2


class Handler(BaseHTTPRequestHandler):
    """Answers every POST; the STALL_AT-th one after STALL_SECONDS, every 10th with a 500."""

    protocol_version = "HTTP/1.1"  # keep-alive, as the generator expects
    disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK wait between them
    served = 0
    lock = threading.Lock()  # a thread per connection

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        with Handler.lock:
            Handler.served += 1
            number = Handler.served
        if number == STALL_AT:
            time.sleep(STALL_SECONDS)
        body = b'{"ok": true}'
        self.send_response(500 if number % 10 == 0 else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    Handler.served = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # a thread per connection (keep-alive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/predict"
    server.shutdown()


def test_a_stall_counts_for_every_request_due_during_it(url: str) -> None:
    result = open_loop.run(url, b'{"x": 1}', rate=200, seconds=1.0, connections=1, warmup=0.0)
    assert result["requests"] == 200 and result["errors"] == 20  # every request answered; the 500s counted
    assert 195 <= result["rps"] <= 205  # the schedule held: the stalled requests went out late, not never
    # ~40 requests were due during the 200 ms stall: measured from their due times, they waited too (a closed
    # loop would see one slow request, and its p90 would be well under a millisecond)
    assert result["max_ms"] >= STALL_SECONDS * 1000
    assert result["p90_ms"] >= 50


def test_the_warm_up_is_sent_but_not_measured(url: str) -> None:
    result = open_loop.run(url, b'{"x": 1}', rate=200, seconds=0.5, connections=2, warmup=0.5)
    assert Handler.served == 200 and result["requests"] == 100  # the stall fell in the warm-up
    assert result["max_ms"] < STALL_SECONDS * 1000

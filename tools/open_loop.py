"""An open-loop HTTP/1.1 load generator: POSTs at a constant rate, latency measured from the intended send time.

wrk paces a connection with whole-millisecond pauses after each response (closed loop): at a few thousand
requests per second that means dozens of connections firing in bursts on millisecond ticks, and a stall of the
service delays the next requests instead of showing in their latency (coordinated omission). Here request `i` is
due at `start + i / rate`; it goes out on the first idle one of `connections` keep-alive connections (a spin loop
on a core of its own, so sub-millisecond schedules hold), and its latency runs from when it was due, so time a
request spent waiting for a free connection counts (as wrk2's corrected histogram does). Used by
`make bench-soak` (tools/bench_soak.py); `python tools/open_loop.py URL BODY RATE SECONDS` prints JSON.
"""

from __future__ import annotations

import argparse
import gc
import json
import selectors
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SPIN_SECONDS = 0.002  # closer than this to the next due time, poll without sleeping (epoll sleeps whole ms)


def request_bytes(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    parts = urlsplit(url)
    lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
             f"Content-Length: {len(body)}", *(f"{k}: {v}" for k, v in headers.items())]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def response_end(buffer: bytes) -> tuple[int, int] | None:
    """(status, end of the first complete response in `buffer`), None while incomplete."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    head = buffer[:head_end].decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in head[1:] if line.lower().startswith("content-length:")), 0)
    end = head_end + 4 + length
    return (int(head[0].split()[1]), end) if len(buffer) >= end else None


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q / 100 * len(sorted_values)))] if sorted_values else 0.0


def run(url: str, body: bytes, rate: float, seconds: float, connections: int = 8, warmup: float = 1.0,
        headers: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
    """Send `rate` requests per second for `warmup` + `seconds`; latency percentiles (ms) from the due times of the
    requests after the warm-up (the rate reaching a server that was idle), and the non-2xx answers of all."""
    parts = urlsplit(url)
    payload = request_bytes(url, body, headers or {})
    selector = selectors.DefaultSelector()
    idle: deque[socket.socket] = deque()
    due_of: dict[socket.socket, float] = {}
    buffers: dict[socket.socket, bytes] = {}
    for _ in range(connections):
        sock = socket.create_connection((parts.hostname, parts.port or 80))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        idle.append(sock)
    latencies: list[float] = []
    period, sent, answered, errors = 1.0 / rate, 0, 0, 0
    start = time.perf_counter()
    measured_from = start + warmup
    total = int(rate * (warmup + seconds))
    while answered < total:
        now = time.perf_counter()
        while sent < total and idle and start + sent * period <= now:
            sock = idle.popleft()
            due_of[sock] = start + sent * period
            sent += 1
            sock.sendall(payload)  # small: fits the socket buffer at once
        wait = start + sent * period - time.perf_counter() if sent < total and idle else 0.1
        for key, _ in selector.select(timeout=0 if wait < SPIN_SECONDS else wait - SPIN_SECONDS):
            sock = key.fileobj  # type: ignore[assignment]
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError(f"{url}: the server closed a connection")
            buffers[sock] = buffer = buffers.get(sock, b"") + chunk
            found = response_end(buffer)
            if found:
                status, end = found
                buffers[sock] = buffer[end:]
                due = due_of.pop(sock)
                answered += 1
                errors += not 200 <= status < 300  # non-2xx, warm-up included (a dropped connection stops the run)
                if due >= measured_from:
                    latencies.append((time.perf_counter() - due) * 1000)
                idle.append(sock)
    elapsed = time.perf_counter() - measured_from
    for key in list(selector.get_map().values()):
        key.fileobj.close()  # type: ignore[union-attr]
    latencies.sort()
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(percentile(latencies, 50), 3),
        "p90_ms": round(percentile(latencies, 90), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(latencies[-1], 3) if latencies else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("body", type=Path, help="file with the JSON body of every request")
    parser.add_argument("rate", type=float, help="requests per second")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds at the rate before measuring")
    args = parser.parse_args()
    gc.disable()  # a collection in the generator would show as the service's latency
    print(json.dumps(run(args.url, args.body.read_bytes(), args.rate, args.seconds, args.connections, args.warmup)))


if __name__ == "__main__":
    main()

"""A model API on 127.0.0.1 for the tests and the benchmark: it answers after a delay,
says 429 when more than ``limit`` requests arrived within the last second, and 503 to the
first request of the prompts listed in ``fail_first``. It keeps every request's time."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class FakeAPI:
    """The server's state: its rules and what it saw."""

    def __init__(
        self,
        *,
        delay: float = 0.005,
        limit: int | None = None,
        fail_first: frozenset[str] = frozenset(),
    ) -> None:
        self.delay, self.limit, self.fail_first = delay, limit, set(fail_first)
        self.lock = threading.Lock()
        self.times: list[float] = []  # every request's arrival (monotonic)
        self.prompts: list[str] = []  # and its prompt
        self.answered: list[float] = []  # arrivals of the requests answered 200
        self.codes: dict[int, int] = {}
        self.in_flight = 0
        self.most_in_flight = 0  # the most requests being answered at once
        self.url = ""

    def arrive(self, prompt: str) -> int:
        """Record a request; the status to answer."""
        now = time.monotonic()
        with self.lock:
            self.times.append(now)
            self.prompts.append(prompt)
            recent = len(self.times) - bisect.bisect_left(self.times, now - 1.0)
            if self.limit is not None and recent > self.limit:
                code = 429
            elif prompt in self.fail_first:
                self.fail_first.discard(prompt)
                code = 503
            else:
                code = 200
                self.answered.append(now)
            self.codes[code] = self.codes.get(code, 0) + 1
        return code

    @property
    def requests(self) -> int:
        """Requests received so far."""
        with self.lock:
            return len(self.times)

    def busiest_second(self, times: list[float] | None = None) -> int:
        """The most requests that arrived within any one second."""
        times = sorted(self.times if times is None else times)
        return max(
            (bisect.bisect_right(times, t + 1.0 - 1e-9) - i for i, t in enumerate(times)),
            default=0,
        )

    def times_of(self, prefix: str) -> list[float]:
        """Arrivals of the requests whose prompt starts with ``prefix``."""
        with self.lock:
            pairs = zip(self.times, self.prompts, strict=True)
            return [t for t, p in pairs if p.startswith(prefix)]

    def rate(self, times: list[float] | None = None) -> float:
        """Requests per second between the first and the last."""
        times = sorted(self.times if times is None else times)
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])


def _handler(api: FakeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            prompt = parse_qs(urlparse(self.path).query).get("prompt", [""])[0]
            code = api.arrive(prompt)
            if code == 200:
                with api.lock:
                    api.in_flight += 1
                    api.most_in_flight = max(api.most_in_flight, api.in_flight)
                time.sleep(api.delay)
                with api.lock:
                    api.in_flight -= 1
            body = f"answer:{prompt}".encode() if code == 200 else b"busy"
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve(api: FakeAPI) -> Iterator[FakeAPI]:
    """Serve ``api`` on an ephemeral port of 127.0.0.1 in a thread; stopped on exit."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    server.request_queue_size = 256
    api.url = f"http://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

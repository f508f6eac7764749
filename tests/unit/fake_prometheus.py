"""A stand-in for Prometheus' /api/v1/query_range on loopback: canned series, filtered to the asked range."""

from __future__ import annotations

import bisect
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Points = list[tuple[float, float]]
Canned = dict[str, list[tuple[dict[str, str], Points]]]  # query -> (labels, points)


def handler_for(canned: Canned) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urllib.parse.urlparse(self.path)
            params = dict(urllib.parse.parse_qsl(url.query))
            query = params.get("query", "")
            if url.path != "/api/v1/query_range" or query not in canned:
                self._answer(400, {"status": "error", "errorType": "bad_data", "error": f"unknown query {query}"})
                return
            start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
            result = []
            for labels, points in canned[query]:
                # Like Prometheus: one point per step, the latest sample at or before it (5 min lookback).
                times = [time for time, _ in points]
                grid, values = start, []
                while grid <= end + 1e-9:
                    latest = bisect.bisect_right(times, grid) - 1
                    if latest >= 0 and times[latest] > grid - 300:
                        values.append([grid, str(points[latest][1])])
                    grid += step
                if values:
                    result.append({"metric": labels, "values": values})
            self._answer(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

        def _answer(self, code: int, body: dict[str, object]) -> None:
            payload = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@contextmanager
def fake_prometheus(canned: Canned) -> Iterator[str]:
    """Serve `canned` on 127.0.0.1; yields the URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_for(canned))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)

"""A small client for Prometheus' HTTP API (/api/v1/query_range), with errors a person can read."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_URL = "http://localhost:9090"
TIMEOUT_SECONDS = 30.0
MAX_POINTS = 10_000  # Prometheus refuses a range query of more than 11,000 points per series


class ReportError(RuntimeError):
    """Something the person running the report must fix: one line, no traceback."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (unix time, value), oldest first


class PrometheusClient:
    def __init__(self, url: str = DEFAULT_URL, timeout: float = TIMEOUT_SECONDS) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def query_range(self, query: str, start: float, end: float, step: float) -> list[Series]:
        params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        data = self._get("/api/v1/query_range", params)
        if data.get("resultType") != "matrix":
            raise ReportError(f"Prometheus at {self.url} answered {query!r} with a {data.get('resultType')}, "
                              "not a range")
        return [Series({k: str(v) for k, v in item.get("metric", {}).items()},
                       [(float(t), float(v)) for t, v in item.get("values", [])])
                for item in data.get("result", [])]

    def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        request_url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(request_url, timeout=self.timeout) as response:
                body = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:  # Prometheus explains a bad query in the body of a 400/422
            body = _json_or_none(exc.read())
            if body is None:
                raise ReportError(f"Prometheus at {self.url} answered HTTP {exc.code} ({exc.reason})") from None
        except urllib.error.URLError as exc:
            raise ReportError(f"cannot reach Prometheus at {self.url}: {_reason(exc.reason)} "
                              "(is it running? set the address with --prometheus URL)") from None
        except TimeoutError:
            raise ReportError(f"Prometheus at {self.url} did not answer within {self.timeout:g} s") from None
        except (ValueError, OSError) as exc:
            raise ReportError(f"Prometheus at {self.url} gave an answer that is not its API's: {exc}") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            error = body.get("error", "no reason given") if isinstance(body, dict) else body
            raise ReportError(f"Prometheus at {self.url} refused the query: {error}")
        data = body.get("data")
        return data if isinstance(data, dict) else {}


def _json_or_none(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode())
    except ValueError:
        return None


def _reason(reason: object) -> str:
    return reason.strerror if isinstance(reason, OSError) and reason.strerror else str(reason)

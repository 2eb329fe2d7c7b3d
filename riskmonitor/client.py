"""The API's client (apicalls.py): every endpoint called, and the text of apireturns.txt rendered from
the answers. It speaks HTTP only, so it runs against any replica, anywhere."""

import datetime as dt
import http.client
import json
import time
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The API cannot be reached or refused a call; the message is one line for the operator."""


def call(base: str, path: str, body: dict | None = None, timeout: float = 60,
         token: str | None = None) -> tuple[int, str, bytes, float]:
    """(status, content type, body, seconds) of one call; 4xx/5xx and network failures raise ApiError."""
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:  # the API's API_TOKEN
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(  # noqa: S310 (main() accepts http and https URLs only)
        base + path, data=data, method="GET" if body is None else "POST", headers=headers)
    started = time.perf_counter()
    try:
        with urllib.request.build_opener(_TokenStaysHome).open(request, timeout=timeout) as response:
            return response.status, response.headers.get_content_type(), response.read(), time.perf_counter() - started
    except urllib.error.HTTPError as exc:
        raise ApiError(f"{request.method} {path} answered {exc.code}: {_error_message(exc)}") from None
    except urllib.error.URLError as exc:
        reason = getattr(exc.reason, "strerror", None) or exc.reason
        raise ApiError(f"cannot reach the API at {base}: {reason}") from None
    except (OSError, http.client.HTTPException) as exc:  # reset, timed out or cut off mid-answer
        raise ApiError(f"{request.method} {path} failed: {exc or type(exc).__name__}") from None


class _TokenStaysHome(urllib.request.HTTPRedirectHandler):
    """Follow a redirect, but send the bearer token only to the origin (scheme, host, port) it was given for:
    an API or a proxy that redirects elsewhere never learns it."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(newurl) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _origin(url: str) -> tuple:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or {"http": 80, "https": 443}.get(parts.scheme)


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The API's {"error": ...} message, or the HTTP reason when the answer is not the API's JSON."""
    try:
        return str(json.loads(exc.read())["error"])
    except (ValueError, KeyError, TypeError, OSError):
        return str(exc.reason)


def call_json(base: str, path: str, body: dict | None = None, timeout: float = 60, token: str | None = None) -> dict:
    """The JSON answer of one endpoint."""
    status, content_type, data, _ = call(base, path, body, timeout, token)
    try:
        return json.loads(data)
    except ValueError:
        raise ApiError(f"{path} answered {status} with {content_type}, not JSON") from None


def gather(base: str, file_name: str, timeout: float, token: str | None = None) -> dict:
    """Call every endpoint; the answers by endpoint."""
    results = {"health": call_json(base, "/health", timeout=timeout)}  # first: fails fast when the API is down
    results["prediction"] = call_json(base, "/prediction", {"file_name": file_name}, timeout, token)
    for name in ("scoring", "summarystats", "diagnostics"):
        results[name] = call_json(base, "/" + name, timeout=timeout, token=token)
    results["runs"] = call_json(base, "/runs?limit=10", timeout=timeout, token=token)
    status, content_type, data, _ = call(base, "/", timeout=timeout, token=token)
    results["dashboard"] = f"{status} {content_type}, {len(data):,} bytes"
    try:
        status, content_type, data, _ = call(base, "/report", timeout=timeout, token=token)
        results["report"] = f"{content_type}, {len(data):,} bytes"
    except ApiError as exc:  # 404 before the first report is an answer, not a failure
        if " answered 404" not in str(exc):
            raise
        results["report"] = "none yet"
    return results


def table(header: list[str], rows: list[list], right: set[int] | None = None) -> list[str]:
    """Aligned text columns: numbers (or the columns in `right`) to the right, text to the left."""
    if not rows:
        return ["(none)"]
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    numeric = [i in right if right is not None else all(isinstance(row[i], int | float | None) for row in rows)
               for i in range(len(header))]

    def line(values):
        return "  ".join(v.rjust(w) if n else v.ljust(w) for v, w, n in zip(values, widths, numeric, strict=True)).rstrip()

    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in cells)]


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}"
    return "-" if value is None else str(value)


def section(title: str, lines: list[str]) -> list[str]:
    return ["", title, "=" * len(title), *lines]


def render(base: str, file_name: str, results: dict) -> str:
    """The text of apireturns.txt."""
    health, predicted = results["health"], results["prediction"]
    labels, probabilities = predicted["data"], predicted["probabilities"]
    exits = sum(labels)
    diag = results["diagnostics"]
    lines = [f"API returns of {base}", f"written {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M:%S} UTC",
             f"health: {health['status']}, database {health['database']}" + _health_details(health),
             f"dashboard (/): {results['dashboard']}; latest report (/report): {results['report']}"]
    lines += section(f"Predictions for {file_name} (model {predicted['model']})", [
        f"{len(labels):,} rows: {exits:,} predicted to exit ({exits / max(len(labels), 1):.1%}), "
        f"mean churn probability {sum(probabilities) / max(len(probabilities), 1):.4f}; every row is listed at the end"])
    lines += section("F1 score of the production model (/scoring)",
                     [f"model {results['scoring']['model']}: F1 {results['scoring']['data']:.4f} on the held-out test data"])
    lines += section("Summary statistics of the production model's training data (/summarystats)",
                     table(["feature", "mean", "median", "std"], results["summarystats"]["data"]))
    lines += section("Missing data (/diagnostics)",
                     table(["feature", "missing"], [[f, f"{share:.2%}"] for f, share in diag["missing_data"]], right={1}))
    lines += section("Execution time in seconds (/diagnostics)", table(["step", "seconds"], diag["execution_time"]))
    lines += section("Outdated packages (/diagnostics)", table(["package", "installed", "latest"], diag["outdated_packages"]))
    runs = [[r["started_at"][:19].replace("T", " "), r["hex"], r["status"], _short(r["message"])]
            for r in results["runs"]["data"]]
    lines += section("Recent runs (/runs)", table(["started (UTC)", "run", "status", "message"], runs))
    rows = [[i, label, p] for i, (label, p) in enumerate(zip(labels, probabilities, strict=True), start=1)]
    lines += section(f"Predictions row by row ({file_name})", table(["row", "prediction", "probability"], rows))
    return "\n".join(lines) + "\n"


def _health_details(health: dict) -> str:
    model, last = health.get("model"), health.get("last_run")
    details = f"; production model {model['hex']} deployed {model['deployed_at'][:16]}" if model else "; no model deployed"
    return details + (f"; last run {last['hex']} {last['status']}" if last else "")


def _short(text: str | None, width: int = 90) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"

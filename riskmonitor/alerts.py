"""Tell a person: one JSON message (a Slack-compatible `text` and the decision record) POSTed to
ALERT_WEBHOOK_URL when a tick fails, finds drift, deploys a model, or cannot write its report.

Never fails or stalls the caller: a short timeout, one retry, the whole delivery bounded, and every
attempt recorded in alert_attempts with the webhook's host only (its URL may carry a secret).
"""

import json
import logging
import threading
import time
import urllib.parse

import sqlalchemy as sa

from riskmonitor.config import Config
from riskmonitor.store import db

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 3.0  # per attempt: a webhook that answers at all answers well within this
ATTEMPTS = 2  # one retry: a blip passes, a dead endpoint does not hold the tick


def send(config: Config, engine: sa.Engine, run_hex: str | None, event: str, text: str, decision=None) -> list[dict]:
    """POST {"text", "event", "run", "decision"} when a webhook is configured; the attempts made."""
    url = config.alert_webhook_url
    if not url:
        return []
    host = webhook_host(url)
    if host is None:
        attempts = [_attempt(1, db.now(), 0.0, None, "ALERT_WEBHOOK_URL is not an http(s) URL")]
    else:
        body = {"text": text, "event": event, "run": run_hex, "decision": decision.as_json() if decision else None}
        attempts = _deliver_bounded(url, json.dumps(body).encode())
    _record(engine, run_hex, event, host or "-", attempts)
    return attempts


def webhook_host(url: str) -> str | None:
    """host[:port] of an http(s) URL, the only part of it ever stored or logged; None if it is not one."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return parts.hostname + (f":{port}" if port else "")


def _deliver_bounded(url: str, body: bytes) -> list[dict]:
    """The attempts, in a thread joined with a deadline: a stuck DNS lookup or a server that drips
    its answer byte by byte cannot hold the caller past ATTEMPTS timeouts and a second."""
    attempts: list[dict] = []
    worker = threading.Thread(target=_deliver, args=(url, body, attempts), name="alert", daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(ATTEMPTS * TIMEOUT_SECONDS + 1)
    done = list(attempts)
    if worker.is_alive():  # left to finish or die with the process; what it does later is not recorded
        done.append(_attempt(len(done) + 1, db.now(), time.monotonic() - started, None, "gave up: no answer in time"))
    return done


def _deliver(url: str, body: bytes, attempts: list[dict]) -> None:
    for number in range(1, ATTEMPTS + 1):
        sent_at, started = db.now(), time.monotonic()
        status, error = _post(url, body)
        attempts.append(_attempt(number, sent_at, time.monotonic() - started, status, error))
        if error is None:
            return


def _post(url: str, body: bytes) -> tuple[int | None, str | None]:
    """(HTTP status, None) on a 2xx answer, else (status or None, why it failed). A redirect is a failed
    attempt, never followed: a 3xx is not delivery, and the body must not go where the URL did not say.
    Credentials in the URL (https://user:password@host/...) are sent as HTTP Basic authentication."""
    import base64
    import urllib.error  # the HTTP client (20 ms) only when an alert goes out: a quiet tick never loads it
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": "risk-monitor-alerts"}
    if parts.username is not None:
        secret = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
        url = urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(url, data=body, method="POST", headers=headers)  # noqa: S310 - http(s) only (webhook_host)

    class NoRedirect(urllib.request.HTTPRedirectHandler):  # a 3xx stays an answer: urllib raises it as HTTPError
        def redirect_request(self, *args):
            return None

    try:
        with urllib.request.build_opener(NoRedirect).open(request, timeout=TIMEOUT_SECONDS) as response:
            response.read(65536)
            return response.status, None if 200 <= response.status < 300 else f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:  # 3xx/4xx/5xx: an answer, recorded as such
        exc.close()
        return exc.code, f"HTTP {exc.code}" + (" (a redirect, not followed)" if 300 <= exc.code < 400 else "")
    except (urllib.error.URLError, OSError, ValueError) as exc:  # refused, unresolvable, timed out, bad answer
        reason = getattr(exc, "reason", exc)
        return None, f"{type(reason).__name__}: {reason}"[:500]


def _attempt(number: int, sent_at, duration: float, status: int | None, error: str | None) -> dict:
    return {"attempt": number, "sent_at": sent_at, "duration": duration, "status_code": status, "error": error}


def _record(engine: sa.Engine, run_hex: str | None, event: str, host: str, attempts: list[dict]) -> None:
    for a in attempts:
        if a["error"]:
            log.warning("alert %s to %s: attempt %d failed: %s", event, host, a["attempt"], a["error"])
    try:
        with engine.begin() as conn:
            conn.execute(db.alert_attempts.insert(), [{**a, "hex": run_hex, "event": event, "host": host} for a in attempts])
    except sa.exc.SQLAlchemyError as exc:  # the database may be why the tick failed: the alert is sent anyway
        log.warning("alert %s: its attempts could not be recorded: %s", event, db.describe_error(exc))

"""gunicorn's settings for the web process (gunicorn reads ./gunicorn.conf.py from the directory it starts in,
as the Procfile starts it). The errors gunicorn answers itself, before the app sees the request (414 request
line too long, 431 header fields too large, 400 a malformed request), are JSON {"error": ...} like every
answer of the app, instead of gunicorn's HTML page; /openapi.json documents them."""

import json

from gunicorn import util


def json_error(sock, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's answer, as JSON."""
    body = json.dumps({"error": f"{reason.lower()}: {mesg}" if mesg else reason.lower()}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


util.write_error = json_error  # the workers call it as util.write_error

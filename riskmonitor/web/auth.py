"""API_TOKEN: when it is set, every endpoint but /health needs `Authorization: Bearer <token>`;
what a browser opens (the dashboard, its plots, the report) also takes HTTP Basic with the
token as the password, so that the browser asks for it. Unset: the API is open."""

import base64
import binascii
import hmac

from flask import current_app, jsonify, request

OPEN_ENDPOINTS = {"api.health"}  # load balancers and uptime checks probe it without a secret
BROWSER_ENDPOINTS = {"dashboard.index", "dashboard.chart", "api.report"}
REALM = "Churn risk monitor"


def presented_token() -> str | None:
    """The token the request carries: a Bearer token, or (where a browser opens it) a Basic password."""
    scheme, _, credentials = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() == "bearer":
        return credentials.strip()
    if scheme.lower() == "basic" and request.endpoint in BROWSER_ENDPOINTS:
        try:
            decoded = base64.b64decode(credentials.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):  # malformed credentials are no credentials
            return None
        return decoded.partition(":")[2]  # any user name: the token is the password
    return None


def require_token():
    """before_request: None to go on, or the 401 answer."""
    token = current_app.extensions["drat"]["api_token"]
    if token is None or request.endpoint in OPEN_ENDPOINTS:
        return None
    given = presented_token()
    if given is not None and hmac.compare_digest(given.encode(), token.encode()):  # constant time
        return None
    return unauthorized()


def unauthorized():
    """401 with the challenge a client (Bearer) or a browser (Basic) answers."""
    browser = request.endpoint in BROWSER_ENDPOINTS
    response = jsonify(error="authentication required: send the API token as 'Authorization: Bearer <token>'"
                             + (" or as the password of HTTP Basic" if browser else ""))
    response.status_code = 401
    response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}", charset="UTF-8"' if browser else "Bearer"
    return response

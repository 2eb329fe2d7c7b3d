"""A schemathesis check for tests/fuzz_api.py (loaded through SCHEMATHESIS_HOOKS): no answer shows a
server path or a traceback."""

import os

import schemathesis


@schemathesis.check
def no_server_details(ctx, response, case):
    """Fail when an answer names a server directory (FUZZ_SERVER_PATHS) or carries a traceback."""
    text = response.content.decode("utf-8", "replace")
    for path in filter(None, os.environ.get("FUZZ_SERVER_PATHS", "").split(os.pathsep)):
        if path in text:
            raise AssertionError(f"the answer shows a server path ({path})")
    for marker in ("Traceback (most recent call last)", 'File "/'):
        if marker in text:
            raise AssertionError("the answer carries a traceback")

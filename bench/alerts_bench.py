"""What an alert costs the tick: alerts.send against a local webhook that answers 200, answers 500,
or never answers, with the default timeout (3 s) and one retry.

    python bench/alerts_bench.py
"""

import http.server
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from riskmonitor import alerts  # noqa: E402 - after the project is on the path
from riskmonitor.config import load_config  # noqa: E402
from riskmonitor.store import db  # noqa: E402


def serve(answer: str, release: threading.Event) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            if answer == "never":
                release.wait(60)
                return
            self.send_response(200 if answer == "200" else 500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    import dataclasses

    with tempfile.TemporaryDirectory() as folder:
        config = load_config(PROJECT_DIR, database_url=f"sqlite:///{folder}/bench.db")
        engine = db.make_engine(config.database_url)
        db.ensure_schema(engine)
        results = {}
        for answer in ("200", "500", "never"):
            release = threading.Event()
            server = serve(answer, release)
            url = f"http://127.0.0.1:{server.server_port}/hook"
            started = time.perf_counter()
            attempts = alerts.send(dataclasses.replace(config, alert_webhook_url=url), engine, None, "bench", "text")
            results[answer] = {"seconds": round(time.perf_counter() - started, 3), "attempts": len(attempts)}
            release.set()
            server.shutdown()
            server.server_close()
        engine.dispose()
    print(json.dumps({"timeout_seconds": alerts.TIMEOUT_SECONDS, **results}))


if __name__ == "__main__":
    main()

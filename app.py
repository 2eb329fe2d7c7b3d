"""The API and dashboard: predictions from the production model, and the monitoring history
the ticks write to the database.

    python app.py [--host 127.0.0.1] [--port 8000] [--project-dir DIR]   # development server
    gunicorn "app:create_app()"                                         # production (Procfile)

The app is riskmonitor.web's: create_app in riskmonitor.web.app, the routes in riskmonitor.web.api
and riskmonitor.web.dashboard.
"""

import argparse
import os
import sys
from pathlib import Path

from riskmonitor.config import PROJECT_DIR, run_script, setup_logging
from riskmonitor.web.app import create_app

__all__ = ["create_app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Run the development server (use gunicorn in production)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--project-dir", type=Path, default=PROJECT_DIR, help="project with config.json")
    args = parser.parse_args(argv)
    setup_logging()
    create_app(args.project_dir).run(host=args.host, port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))


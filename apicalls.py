"""Call every endpoint of a running API and write apireturns.txt (its path comes from config.json).

    python apicalls.py                          # API_URL, or http://127.0.0.1:8000
    python apicalls.py --url http://host:8000

The client is riskmonitor.client's; this command reads the configuration and writes the file.
"""

import argparse
import os
import sys

from riskmonitor.client import DEFAULT_URL, ApiError, gather, render
from riskmonitor.config import PROJECT_DIR, env_setting, load_config, run_script
from riskmonitor.store.storage import replace_atomically


def main(argv: list[str] | None = None) -> int:
    """Call the API and write apireturns.txt; a one-line error and exit 1 when that fails."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=os.environ.get("API_URL", DEFAULT_URL), help="API base URL (env API_URL)")
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for each answer")
    parser.add_argument("--project-dir", default=PROJECT_DIR, help="project whose config.json names apireturns.txt")
    args = parser.parse_args(argv)
    base = args.url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        parser.error(f"--url must start with http:// or https://, not {args.url!r}")
    config = load_config(args.project_dir)
    file_name = config.testdata_csv.relative_to(config.project_dir).as_posix()
    try:
        token = env_setting(config.project_dir, "API_TOKEN")  # as the API reads it: environment, else .env
        text = render(base, file_name, gather(base, file_name, args.timeout, token))
    except ApiError as exc:
        print(f"apicalls: {exc}", file=sys.stderr)
        return 1
    replace_atomically(config.apireturns_path, lambda handle: handle.write(text.encode()))
    print(f"apicalls: wrote {config.apireturns_path}")
    return 0


if __name__ == "__main__":
    sys.exit(run_script(main))

